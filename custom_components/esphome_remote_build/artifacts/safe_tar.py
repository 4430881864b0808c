"""Streaming, bounded reading of an untrusted gzip tarball.

The artifacts tarball comes from a build server over the network, so nothing in it is
trusted: every member must be a plain regular file with a harmless relative path, and the
amount of data the archive may make us decompress is capped *before* it is read (a few
kilobytes of gzip can expand to gigabytes).  Python's ``tarfile`` alone does not bound the
bytes it pulls through the decompressor, so the gzip layer is ours and counted.

The reader streams (``r|``): it never seeks and never builds a member table.

``tarfile`` also reads some data *while parsing a header*, before it returns the member we
would check: the name in a GNU long-name/long-link header (``L``/``K``), the records of a
pax header (``x``/``g``/``X``) and a GNU sparse map (``S`` extension blocks, or the map at
the start of a pax "1.0" sparse member).  A header may claim hundreds of megabytes for
these, zeros that gzip squeezes into a few hundred kilobytes, and tarfile holds them whole
(twice, while joining).  So header parsing goes through :class:`_GuardedTarInfo`, which
refuses an extension header by its declared size before tarfile reads a byte of it, and
refuses sparse members before their map is read (they would be refused as members anyway).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
import gzip
import hashlib
import io
from pathlib import Path
import re
import tarfile
from typing import BinaryIO, Final, NoReturn, Protocol
import zlib

from .errors import ArtifactsError, InvalidArtifactsError, UnsafeTarballError

MIB: Final = 1024 * 1024
#: Block size for every copy: memory stays flat whatever the image size.
COPY_BLOCK: Final = 64 * 1024
_BLOCK: Final = tarfile.BLOCKSIZE
#: Data of all the extension headers in front of one member, and of all global headers.
#: The longest path we accept (_MAX_PATH_LENGTH characters, at most 4 KiB in UTF-8) fits
#: in one pax or GNU long-name header with room for the short numeric records tarfile
#: adds (mtime, size, uid, ...).  The build server's tarfile writes a pax header only for
#: a long or non-ASCII path or a fractional mtime: a few hundred bytes.
_MAX_EXTENSION_BYTES: Final = 8 * 1024
#: Extension headers in a row; tarfile recurses once per header.  Python's tarfile writes
#: one per member (plus a global one up front), GNU tar two (long name and long link).
_MAX_EXTENSION_HEADERS: Final = 4
_EXTENSION_HEADERS: Final = {
    tarfile.GNUTYPE_LONGNAME: "GNU long name",
    tarfile.GNUTYPE_LONGLINK: "GNU long link name",
    tarfile.XHDTYPE: "pax extended",
    tarfile.XGLTYPE: "pax global",
    tarfile.SOLARIS_XHDTYPE: "Solaris extended",
}
# Decompressed bytes a well-formed member may need beyond its data: its header and
# extension headers, their data, and padding to the 512-byte block.
_HEADER_ALLOWANCE: Final = (_MAX_EXTENSION_HEADERS + 1) * 2 * _BLOCK + _MAX_EXTENSION_BYTES
# End-of-archive blocks plus tarfile's record padding.
_TRAILER_ALLOWANCE: Final = 64 * 1024
_MAX_PATH_LENGTH: Final = 1024
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
# Anything gzip, zlib or tarfile raise for data that is not a well-formed gzip tarball.
_CORRUPT_DATA_ERRORS: Final = (tarfile.TarError, OSError, EOFError, zlib.error)


@dataclass(frozen=True, slots=True)
class TarLimits:
    """Caps on what one tarball may make us read."""

    max_member_size: int = 256 * MIB
    max_total_size: int = 256 * MIB
    max_members: int = 1000

    @property
    def max_stream_bytes(self) -> int:
        """Decompressed bytes an archive within these limits can legitimately need."""
        return self.max_total_size + self.max_members * _HEADER_ALLOWANCE + _TRAILER_ALLOWANCE


DEFAULT_LIMITS: Final = TarLimits()


@dataclass(frozen=True, slots=True)
class Member:
    """A member that passed every safety check; ``path`` is its archive path.

    Its data can only be read while it is the current member of :meth:`TarballPass.members`
    (the archive is a stream); reading it later fails as corrupt data.
    """

    path: str
    basename: str
    size: int
    info: tarfile.TarInfo = field(repr=False, compare=False)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@contextmanager
def _corrupt_data_is_invalid(what: str) -> Iterator[None]:
    """Turn low-level decoding errors into one readable :class:`InvalidArtifactsError`."""
    try:
        yield
    except _CORRUPT_DATA_ERRORS as err:
        raise InvalidArtifactsError(f"artifacts tarball is corrupt ({what}): {err}") from err


class _CountingReader(io.RawIOBase):
    """Decompressed bytes, refused past a hard total (the decompression-bomb backstop).

    Declared member sizes are checked before their data is read; this cap also covers what
    declared sizes do not: pax/GNU extension headers, padding and data after the archive.
    """

    def __init__(self, source: _Readable, limit: int) -> None:
        super().__init__()
        self._source = source
        self._limit = limit
        self._total = 0

    def read(self, size: int = -1, /) -> bytes:
        # Never let a caller ask the decompressor for "everything" or a huge block at once.
        data = self._source.read(COPY_BLOCK if size < 0 else min(size, COPY_BLOCK))
        self._total += len(data)
        if self._total > self._limit:
            raise UnsafeTarballError(
                f"artifacts tarball decompresses to more than {self._limit} bytes"
            )
        return data


class _HashingReader:
    """The raw (compressed) file, hashed as the pass reads it: no extra read for the digest.

    The pass reads the gzip stream to its end (checksum and trailer included), so the
    digest covers the whole file; were anything left unread the digest would not match,
    which fails closed.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.digest = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self.digest.update(data)
        return data


class _GuardedTarInfo(tarfile.TarInfo):
    """tarfile's header parsing, with the data it reads on its own sized up first.

    ``_proc_member`` is the hook tarfile's source offers subclasses: it runs once per
    header, right after the 512-byte block is parsed and before anything after it is read.
    It is private API, so tests/artifacts/test_tarball_headers.py measures peak memory: a
    tarfile that stopped calling it would fail them rather than quietly read 250 MiB.
    """

    __slots__ = ()

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        assert isinstance(archive, _GuardedTarFile)
        archive.account_header(self)
        # Private, so typeshed does not declare it.
        member: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]
        return member

    def _proc_sparse(self, archive: tarfile.TarFile) -> NoReturn:
        """Refuse a GNU sparse member before reading its map: unbounded extension blocks."""
        raise _sparse_refused(self.name)

    def _proc_gnusparse_10(
        self, member: tarfile.TarInfo, pax_headers: object, archive: tarfile.TarFile
    ) -> NoReturn:
        """Refuse a pax 1.0 sparse member before reading the map at the start of its data."""
        raise _sparse_refused(member.name)


class _GuardedTarFile(tarfile.TarFile):
    """A stream reader whose headers are parsed by :class:`_GuardedTarInfo`.

    It keeps the extension headers' accounting: the headers since the last member, and the
    global headers, which stay in force for the rest of the archive.
    """

    tarinfo = _GuardedTarInfo
    # Class defaults: TarFile.__init__ parses the first header before it returns.
    _run_headers = 0
    _run_bytes = 0
    _global_bytes = 0

    def account_header(self, info: tarfile.TarInfo) -> None:
        """Count one header; refuse extension headers past their limits before they are read."""
        label = _EXTENSION_HEADERS.get(info.type)
        if label is None:
            self._run_headers = self._run_bytes = 0
            return
        self._run_headers += 1
        if self._run_headers > _MAX_EXTENSION_HEADERS:
            raise UnsafeTarballError(
                f"more than {_MAX_EXTENSION_HEADERS} extension headers before one member"
            )
        self._run_bytes += info.size
        if info.size < 0 or self._run_bytes > _MAX_EXTENSION_BYTES:
            raise UnsafeTarballError(
                f"a {label} header declares {info.size} bytes, over the "
                f"{_MAX_EXTENSION_BYTES} byte limit for the extension headers of one member"
            )
        if info.type == tarfile.XGLTYPE:
            self._global_bytes += info.size
            if self._global_bytes > _MAX_EXTENSION_BYTES:
                raise UnsafeTarballError(
                    f"pax global headers declare {self._global_bytes} bytes in all, over the "
                    f"{_MAX_EXTENSION_BYTES} byte limit"
                )


def _sparse_refused(name: str) -> UnsafeTarballError:
    return UnsafeTarballError(f"member {name!r} is a sparse file, not a regular file")


def _member_kind(info: tarfile.TarInfo) -> str:
    """Name a non-regular member type for error messages."""
    kinds = (
        (info.isdir, "directory"),
        (info.issym, "symbolic link"),
        (info.islnk, "hard link"),
        (info.ischr, "character device"),
        (info.isblk, "block device"),
        (info.isfifo, "FIFO"),
        (info.issparse, "sparse file"),
    )
    return next((kind for test, kind in kinds if test()), f"member of type {info.type!r}")


def _checked_path(name: str) -> str:
    """Refuse any archive path that could point anywhere but a plain relative location."""
    unsafe = (
        not name
        or len(name) > _MAX_PATH_LENGTH
        or "\x00" in name
        or "\\" in name
        or name.startswith("/")
        or _WINDOWS_DRIVE.match(name) is not None
        or any(part in ("", ".", "..") for part in name.split("/"))
    )
    if unsafe:
        raise UnsafeTarballError(f"member {name!r} has an unsafe path")
    return name


def bounded_chunks(source: _Readable, declared: int, label: str) -> Iterator[bytes]:
    """Yield a member's data in blocks, insisting on exactly ``declared`` bytes."""
    seen = 0
    while True:
        with _corrupt_data_is_invalid(label):
            chunk = source.read(COPY_BLOCK)
        if not chunk:
            break
        seen += len(chunk)
        if seen > declared:
            raise UnsafeTarballError(f"member {label!r} yields more than its {declared} bytes")
        yield chunk
    if seen != declared:
        raise InvalidArtifactsError(f"member {label!r} is truncated ({seen} of {declared} bytes)")


@contextmanager
def open_tarball(tarball: Path, limits: TarLimits = DEFAULT_LIMITS) -> Iterator[TarballPass]:
    """Open one streaming pass over a gzip tarball."""
    with ExitStack() as stack:
        try:
            raw = _HashingReader(stack.enter_context(tarball.open("rb")))
        except OSError as err:
            raise ArtifactsError(f"cannot open artifacts tarball: {err}") from err
        # A streaming read never seeks, so the reader offers read() only (the stub also
        # asks for seek, which GzipFile needs just for rewind()).
        gz = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))  # type: ignore[call-overload]
        stream = _CountingReader(gz, limits.max_stream_bytes)
        with _corrupt_data_is_invalid("header"):
            tar = stack.enter_context(_GuardedTarFile.open(fileobj=stream, mode="r|"))
        yield TarballPass(tar, stream, limits, raw)


class TarballPass:
    """One streaming pass over an open tarball, with every member checked before use."""

    def __init__(
        self, tar: tarfile.TarFile, stream: _Readable, limits: TarLimits, raw: _HashingReader
    ) -> None:
        self._tar = tar
        self._stream = stream
        self._limits = limits
        self._raw = raw

    def file_sha256(self) -> str:
        """SHA-256 of the tarball file (call after :meth:`members` is exhausted)."""
        return self._raw.digest.hexdigest()

    def members(self) -> Iterator[Member]:
        """Yield each member after checking it; then verify the stream up to its end."""
        count = 0
        total = 0
        while True:
            with _corrupt_data_is_invalid("header"):
                info = self._tar.next()
            if info is None:
                break
            count += 1
            if count > self._limits.max_members:
                raise UnsafeTarballError(
                    f"artifacts tarball has more than {self._limits.max_members} members"
                )
            member = self._check(info)
            total += member.size
            if total > self._limits.max_total_size:
                raise UnsafeTarballError(
                    f"members up to {member.path!r} declare {total} bytes, over the "
                    f"{self._limits.max_total_size} byte limit"
                )
            yield member
        # Reading to the end makes gzip check its CRC and length trailer.
        with _corrupt_data_is_invalid("end of archive"):
            while self._stream.read(COPY_BLOCK):
                pass

    def read_bytes(self, member: Member, max_size: int) -> bytes:
        """Read a small member (metadata) whole, refusing it if it is over ``max_size``."""
        if member.size > max_size:
            raise InvalidArtifactsError(
                f"{member.path} is {member.size} bytes, over the {max_size} byte limit"
            )
        return b"".join(self._chunks(member))

    def copy_to(self, member: Member, dst: BinaryIO) -> str:
        """Stream the member into ``dst``; return its SHA-256 (hex)."""
        digest = hashlib.sha256()
        for chunk in self._chunks(member):
            digest.update(chunk)
            try:
                dst.write(chunk)
            except OSError as err:
                raise ArtifactsError(f"cannot write {member.basename}: {err}") from err
        return digest.hexdigest()

    def _check(self, info: tarfile.TarInfo) -> Member:
        if not info.isreg() or info.issparse():
            raise UnsafeTarballError(
                f"member {info.name!r} is a {_member_kind(info)}, not a regular file"
            )
        path = _checked_path(info.name)
        if not 0 <= info.size <= self._limits.max_member_size:
            raise UnsafeTarballError(
                f"member {path!r} declares {info.size} bytes, over the "
                f"{self._limits.max_member_size} byte limit"
            )
        return Member(path=path, basename=path.rsplit("/", 1)[-1], size=info.size, info=info)

    def _chunks(self, member: Member) -> Iterator[bytes]:
        with _corrupt_data_is_invalid(member.path):
            source = self._tar.extractfile(member.info)
        # members() only yields regular files, for which extractfile always has a reader.
        assert source is not None
        yield from bounded_chunks(source, member.size, member.path)
