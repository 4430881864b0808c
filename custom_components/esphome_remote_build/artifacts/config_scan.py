"""Find every local file an ESPHome device configuration needs, as ESPHome's bundler does.

ESPHome's ``esphome bundle`` re-parses the YAML with its own loader, then walks the
*validated* configuration (docs/protocol.md §5.5a).  Home Assistant cannot import ESPHome, so
this module reads the YAML node tree (see :mod:`.yaml_nodes`) and follows the same rules:

* ``!include`` (scalar or ``{file: ..., vars: ...}`` form, wherever it appears, including
  ``packages:``), resolved against the including file's folder, recursively.  ``$var``,
  ``${var}`` and Jinja parts of the path become wildcards and every match ships, because the
  build server may substitute differently (ESPHome does the same);
* ``!include_dir_list`` / ``_merge_list`` / ``_named`` / ``_merge_named``: every visible
  ``*.yaml`` below the folder;
* ``!secret KEY``: looked up in the ``secrets.yaml`` beside the file, else in the
  configuration folder (ESPHome's order); the key must be defined.  Only the keys used are
  shipped, per secrets file;
* string values with a known file extension (fonts, images, certificates, C/C++, web
  assets), resolved against the configuration folder like ESPHome's ``cv.file_``.  Strings
  that name no existing file are ignored: they may not be paths at all;
* ``esphome: includes:`` / ``includes_c:`` entries (files or folders) and local
  ``external_components`` sources (folders).

Deliberate differences from ESPHome: a reference that leaves the configuration folder
(``..``, an absolute path, a symbolic link) is an error rather than a warning; hidden files,
``__pycache__`` and secrets files are never copied from folders; a secrets file is never
shipped unfiltered.  Limitation shared with ESPHome's discovery: ``!secret`` keys used only
inside remote (git) packages are unknown here, so they are not shipped.

Links.  A secrets file holds every device's secrets (and Home Assistant's, one folder up),
so it is recognised by what it *is*, not by the name it is reached under:

* a symbolic link is followed only when its target resolves inside the configuration
  folder; a link leading elsewhere is an error.  Links to folders met while collecting a
  folder's files are not descended into;
* a file is a *secrets file* when its identity (device and inode, after following links)
  is that of a ``secrets.yaml`` or ``secrets.yml`` anywhere below the configuration folder
  or in its parent folder (Home Assistant's own).  ESPHome itself only reads the
  ``secrets.yaml`` beside each YAML file and the configuration folder's; the wider net is
  deliberate.  The folder is walked once per bundle to find them;
* a secrets file ships only as the filtered ``secrets.yaml`` that ``!secret`` needs.  Any
  other path that is one (a symbolic link to it, a hard link to it, a name a secrets link
  points at, the configuration itself) is refused with a :class:`BundleError` naming that
  path, before the file is read.  Hard links to ordinary files are fine.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
import glob
import os
from pathlib import Path, PurePosixPath
import posixpath
import re
import stat
from typing import Final

from .errors import BundleError
from .safe_tar import MIB
from .yaml_nodes import (
    MAP_TAG,
    STR_TAG,
    Mapping,
    Node,
    Scalar,
    Sequence,
    compose_documents,
    mapping_subset,
)

MAX_BUNDLE_BYTES: Final = 128 * MIB
MAX_YAML_BYTES: Final = 8 * MIB
MAX_FILES: Final = 10_000
SECRETS_FILE: Final = "secrets.yaml"
KNOWN_EXTENSIONS: Final = frozenset(
    {
        *(".ttf", ".otf", ".woff", ".woff2", ".pcf", ".bdf"),
        *(".png", ".jpg", ".jpeg", ".bmp", ".gif", ".svg", ".ico", ".webp"),
        *(".pem", ".crt", ".key", ".der", ".p12", ".pfx"),
        *(".h", ".hpp", ".c", ".cpp", ".ino"),
        *(".css", ".js", ".html"),
    }
)
NON_PATH_PREFIXES: Final = ("http://", "https://", "ftp://", "mdi:", "<")

_SECRETS_NAMES: Final = frozenset({SECRETS_FILE, "secrets.yml"})
_INCLUDE_DIR_TAGS: Final = frozenset(
    {
        "!include_dir_list",
        "!include_dir_merge_list",
        "!include_dir_named",
        "!include_dir_merge_named",
    }
)
_SUBSTITUTION = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*?\}\}|\{%.*?%\}")
_WILDCARD_RUN = re.compile(r"\*{2,}")
_NOTHING_LITERAL = re.compile(r"[*./]*")

type _Target = tuple[str, Path]


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file to ship: ``arcname`` is its POSIX path relative to the configuration folder.

    ``identity`` (device, inode) is the file the scan checked; the writer ships that file
    or nothing, whatever ``path`` leads to by then.
    """

    arcname: str
    path: Path
    size: int
    identity: tuple[int, int]


@dataclass(frozen=True, slots=True)
class ConfigScan:
    """Everything a bundle needs.

    ``files`` starts with the configuration and lists every file in discovery order, the
    secrets files included; ``secrets`` maps each secrets file to its filtered content;
    ``yaml_files`` names the files that were read as YAML (the secrets files among them).
    """

    root: Path
    files: list[SourceFile]
    secrets: dict[str, bytes]
    yaml_files: frozenset[str] = frozenset()


@dataclass(slots=True)
class _SecretsFile:
    """A secrets file in use: its text, the keys it defines, the keys the YAML uses."""

    text: str
    keys: frozenset[str]
    used: set[str] = field(default_factory=set)


def scan_config(
    config_dir: Path, yaml_name: str, *, max_bytes: int = MAX_BUNDLE_BYTES
) -> ConfigScan:
    """Discover the files ``yaml_name`` (a file directly in ``config_dir``) needs."""
    unsafe_name = (
        not yaml_name
        or len(yaml_name) > 255
        or any(char in yaml_name for char in "/\\\x00")
        or yaml_name.startswith(".")
        or yaml_name in _SECRETS_NAMES
        or PurePosixPath(yaml_name).suffix not in (".yaml", ".yml")
    )
    if unsafe_name:
        raise BundleError(f"{yaml_name!r} is not a plain .yaml file name")
    return _Scanner(config_dir, max_bytes).scan(yaml_name)


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__pycache__"


def _get(mapping: Mapping, key: str) -> Node | None:
    return next(
        (value for k, value in mapping.pairs if isinstance(k, Scalar) and k.value == key), None
    )


def _text(node: Node | None) -> str | None:
    """Return the value of a plain string scalar, else ``None``."""
    return node.value if isinstance(node, Scalar) and node.tag == STR_TAG else None


class _Scanner:
    """Collects the files of one configuration; every path goes through :meth:`_locate`."""

    def __init__(self, config_dir: Path, max_bytes: int) -> None:
        try:
            self._root = config_dir.resolve(strict=True)
        except OSError as err:
            raise BundleError(f"configuration folder {config_dir} is not readable: {err}") from err
        self._given = Path(posixpath.normpath(config_dir.absolute()))
        self._max_bytes = max_bytes
        self._total = 0
        self._yaml: dict[str, SourceFile] = {}
        self._others: dict[str, SourceFile] = {}
        self._secrets: dict[str, _SecretsFile] = {}
        self._secrets_identities = self._find_secrets_identities()

    def _find_secrets_identities(self) -> frozenset[tuple[int, int]]:
        """Identify every secrets file, so that no link can pass one off as another file.

        The whole tree is walked (hidden folders too): a hard link may point at a secrets
        file anywhere, and only an inode comparison recognises it.
        """
        candidates = [
            parent / name
            for parent in {self._given.parent, self._root.parent}
            for name in sorted(_SECRETS_NAMES)
        ]
        for dirpath, _, filenames in os.walk(self._root):
            candidates.extend(Path(dirpath, name) for name in filenames if name in _SECRETS_NAMES)
        identities: set[tuple[int, int]] = set()
        for candidate in candidates:
            try:
                info = candidate.stat()
            except OSError:
                continue  # absent, or a dangling link: nothing there to leak
            identities.add((info.st_dev, info.st_ino))
        return frozenset(identities)

    def scan(self, yaml_name: str) -> ConfigScan:
        """Load the configuration, then its includes depth-first in document order."""
        stack: list[Iterator[_Target]] = [
            iter(self.load_yaml(*self._locate("", yaml_name, "configuration")))
        ]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
            else:
                stack.append(iter(self.load_yaml(*target)))
        others = [source for arc, source in self._others.items() if arc not in self._yaml]
        return ConfigScan(
            root=self._root,
            files=[*self._yaml.values(), *others],
            secrets={
                arc: mapping_subset(secrets.text, secrets.used).encode()
                for arc, secrets in self._secrets.items()
            },
            yaml_files=frozenset(self._yaml),
        )

    def load_yaml(self, arc: str, real: Path) -> list[_Target]:
        """Parse one YAML file (once); return the includes it defers, in document order."""
        if arc in self._yaml:
            return []
        walk = _FileWalk(self, arc)
        for document in compose_documents(self._read_text(arc, real, self._yaml), arc):
            walk.document(document)
        return walk.deferred

    def include_targets(self, base_dir: str, ref: str, what: str) -> list[_Target]:
        """Resolve an ``!include`` path; a templated one to every file it may select."""
        if _SUBSTITUTION.search(ref):
            targets = self._glob(base_dir, ref, what)
            if not targets:
                raise BundleError(f"{what}: no file matches {ref!r}")
        else:
            targets = [self._locate(base_dir, ref, what)]
        for arc, real in targets:
            if posixpath.basename(arc) in _SECRETS_NAMES:
                raise BundleError(f"{what}: refusing to ship {arc} unfiltered")
            if not real.is_file():
                raise BundleError(f"{what}: {arc} is not an existing file")
        return targets

    def load_folder(self, base_dir: str, ref: str, what: str) -> list[_Target]:
        """Load every ``*.yaml`` below an ``!include_dir_*`` folder right away, as ESPHome does."""
        deferred: list[_Target] = []
        for arc, real in self._folder_files(*self._locate(base_dir, ref, what), what):
            if arc.endswith(".yaml"):
                deferred.extend(self.load_yaml(arc, real))
        return deferred

    def use_secret(self, file_arc: str, key: str) -> None:
        """Record a ``!secret``; ESPHome reads the secrets file beside the YAML file first."""
        what = f"!secret {key!r} in {file_arc}"
        beside = posixpath.join(posixpath.dirname(file_arc), SECRETS_FILE)
        for candidate in dict.fromkeys((beside, SECRETS_FILE)):
            arc, real = self._locate("", candidate, what)
            if real.is_file():
                break
        else:
            raise BundleError(f"{what}: no {SECRETS_FILE} found")
        secrets = self._secrets.get(arc) or self._load_secrets(arc, real)
        if key not in secrets.keys:
            raise BundleError(f"{what}: the key is not defined in {arc}")
        secrets.used.add(key)

    def _load_secrets(self, arc: str, real: Path) -> _SecretsFile:
        text = self._read_text(arc, real, self._yaml, secrets=True)
        documents = compose_documents(text, arc)
        root = documents[0] if documents else Mapping(MAP_TAG)
        if len(documents) > 1 or not isinstance(root, Mapping):
            raise BundleError(f"{arc} is not a YAML mapping")
        keys = frozenset(name.value for name, _ in root.pairs if isinstance(name, Scalar))
        secrets = self._secrets[arc] = _SecretsFile(text=text, keys=keys)
        return secrets

    def add_reference(self, value: str) -> None:
        """Ship the file a string value names, if it plausibly is a local file path."""
        if len(value) < 2 or "\n" in value or value.startswith(NON_PATH_PREFIXES):
            return
        if PurePosixPath(value).suffix.lower() not in KNOWN_EXTENSIONS:
            return
        what = f"file reference {value!r}"
        if _SUBSTITUTION.search(value):
            targets = self._glob("", value, what)
        elif posixpath.isabs(value) and not Path(value).is_file():
            return  # an absolute string naming no file is not a reference (e.g. a URL path)
        else:
            targets = [self._locate("", value, what)]
        for arc, real in targets:
            if real.is_file():
                self._add_other(arc, real)

    def add_code_include(self, value: str) -> None:
        """Ship an ``esphome: includes:`` entry: a file or a whole folder."""
        if value.startswith("<"):
            return  # a system header
        what = f"esphome include {value!r}"
        arc, real = self._locate("", value, what)
        if real.is_dir():
            for file_arc, file_real in self._folder_files(arc, real, what):
                self._add_other(file_arc, file_real)
        else:
            self._add_other(arc, real)

    def add_component_folder(self, value: str) -> None:
        """Ship a local ``external_components`` source folder."""
        what = f"external component source {value!r}"
        for arc, real in self._folder_files(*self._locate("", value, what), what):
            self._add_other(arc, real)

    def _locate(self, base_dir: str, ref: str, what: str) -> _Target:
        """Map a reference to its archive path and real path, refusing any escape."""
        if not ref or "\x00" in ref:
            raise BundleError(f"{what}: invalid path {ref!r}")
        if posixpath.isabs(ref):
            arc = self._relative_absolute(posixpath.normpath(ref))
            if arc is None:
                raise BundleError(f"{what}: {ref!r} is outside the configuration folder")
        else:
            arc = posixpath.normpath(posixpath.join(base_dir, ref))
            if arc == ".." or arc.startswith("../"):
                raise BundleError(f"{what}: {ref!r} points outside the configuration folder")
        real = (self._root / arc).resolve()
        if not real.is_relative_to(self._root):
            raise BundleError(
                f"{what}: {ref!r} leads outside the configuration folder via a symbolic link"
            )
        return arc, real

    def _relative_absolute(self, path: str) -> str | None:
        for root in (self._given, self._root):
            candidate = PurePosixPath(path)
            if candidate.is_relative_to(root):
                return candidate.relative_to(root).as_posix()
        return None

    def _glob(self, base_dir: str, ref: str, what: str) -> list[_Target]:
        """Every existing file a substitution-templated path could name."""
        pattern = "*".join(glob.escape(part) for part in _SUBSTITUTION.split(ref))
        pattern = _WILDCARD_RUN.sub("*", pattern)
        if _NOTHING_LITERAL.fullmatch(pattern):
            raise BundleError(f"{what}: {ref!r} is too dynamic to bundle")
        # glob.glob, unlike Path.glob, skips hidden files for wildcards, as ESPHome does.
        matches = sorted(glob.glob(pattern, root_dir=self._root / base_dir))  # noqa: PTH207
        targets = [self._locate(base_dir, match, what) for match in matches]
        return [(arc, real) for arc, real in targets if real.is_file()]

    def _folder_files(self, arc: str, real: Path, what: str) -> list[_Target]:
        """Visible files below a folder, sorted, secrets files left out."""
        if not real.is_dir():
            raise BundleError(f"{what}: {arc} is not a folder")
        found: list[_Target] = []
        for dirpath, dirnames, filenames in os.walk(real):
            dirnames[:] = sorted(name for name in dirnames if _visible(name))
            inside = Path(dirpath).relative_to(real).as_posix()
            found.extend(
                self._locate(arc, posixpath.join(inside, name), what)
                for name in sorted(filenames)
                if _visible(name) and name not in _SECRETS_NAMES
            )
        return found

    def _add_other(self, arc: str, real: Path) -> None:
        if arc not in self._yaml and arc not in self._others:
            self._register(arc, real, self._others)

    def _register(
        self, arc: str, real: Path, table: dict[str, SourceFile], *, secrets: bool = False
    ) -> SourceFile:
        """Account for one file (count and size caps) after checking it may ship.

        Only a file loaded for ``!secret`` (``secrets``, shipped filtered) may be a secrets
        file.  The check comes before the file is read, so a secrets file passed off as a
        configuration cannot even reach a YAML error message.
        """
        try:
            info = real.stat()
        except OSError as err:
            raise BundleError(f"{arc} cannot be read: {err}") from err
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{arc} is not a regular file")
        identity = (info.st_dev, info.st_ino)
        if not secrets and (identity in self._secrets_identities or real.name in _SECRETS_NAMES):
            raise BundleError(
                f"{arc} is, or links to, a secrets file; refusing to ship it "
                "(secrets ship only filtered, for !secret)"
            )
        if len(self._yaml) + len(self._others) >= MAX_FILES:
            raise BundleError(f"the configuration needs more than {MAX_FILES} files")
        self._total += info.st_size
        if self._total > self._max_bytes:
            raise BundleError(f"the configuration's files exceed {self._max_bytes} bytes")
        source = SourceFile(arcname=arc, path=real, size=info.st_size, identity=identity)
        table[arc] = source
        return source

    def _read_text(
        self, arc: str, real: Path, table: dict[str, SourceFile], *, secrets: bool = False
    ) -> str:
        source = self._register(arc, real, table, secrets=secrets)
        if source.size > MAX_YAML_BYTES:
            raise BundleError(f"{arc} is larger than {MAX_YAML_BYTES} bytes")
        try:
            return real.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise BundleError(f"{arc} cannot be read: {err}") from err


class _FileWalk:
    """One YAML file's walk: records secrets and references, collects deferred includes."""

    def __init__(self, scanner: _Scanner, arc: str) -> None:
        self._scanner = scanner
        self._arc = arc
        self._dir = posixpath.dirname(arc)
        self._seen: set[int] = set()
        self.deferred: list[_Target] = []

    def document(self, root: Node) -> None:
        """Walk one document; its top-level keys may name code includes and components."""
        if isinstance(root, Mapping):
            self._top_level(root)
        self._walk(root)

    def _top_level(self, root: Mapping) -> None:
        esphome = _get(root, "esphome")
        if isinstance(esphome, Mapping):
            for key in ("includes", "includes_c"):
                entries = _get(esphome, key)
                for entry in entries.items if isinstance(entries, Sequence) else ():
                    if (value := _text(entry)) is not None:
                        self._scanner.add_code_include(value)
        components = _get(root, "external_components")
        for entry in components.items if isinstance(components, Sequence) else ():
            source = _get(entry, "source") if isinstance(entry, Mapping) else None
            if isinstance(source, Mapping):
                local = _text(_get(source, "type")) == "local"
                path = _text(_get(source, "path")) if local else None
            else:
                path = _text(source)
                path = None if path is None or "://" in path else path
            if path is not None:
                self._scanner.add_component_folder(path)

    def _walk(self, node: Node) -> None:
        if id(node) in self._seen:
            return
        self._seen.add(id(node))
        if node.tag == "!include":
            self._include(node)
        elif node.tag in _INCLUDE_DIR_TAGS:
            self.deferred.extend(
                self._scanner.load_folder(self._dir, self._scalar(node), self._what(node))
            )
        elif node.tag == "!secret":
            self._scanner.use_secret(self._arc, self._scalar(node))
        elif isinstance(node, Scalar):
            if node.tag == STR_TAG:
                self._scanner.add_reference(node.value)
        elif isinstance(node, Sequence):
            for item in node.items:
                self._walk(item)
        else:
            for _, value in node.pairs:
                self._walk(value)

    def _include(self, node: Node) -> None:
        if isinstance(node, Mapping):
            file_node = _get(node, "file")
            ref = self._scalar(file_node) if file_node is not None else ""
            for _, value in node.pairs:
                if value is not file_node:
                    self._walk(value)  # vars may hold secrets and file references
        else:
            ref = self._scalar(node)
        if not ref:
            raise BundleError(f"{self._what(node)} names no file")
        self.deferred.extend(self._scanner.include_targets(self._dir, ref, self._what(node)))

    def _scalar(self, node: Node) -> str:
        if not isinstance(node, Scalar):
            raise BundleError(f"{self._what(node)} must be a single value")
        return node.value

    def _what(self, node: Node) -> str:
        return f"{node.tag} in {self._arc}"
