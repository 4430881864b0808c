"""What Home Assistant needs to know about a device, read from its ESPHome YAML without ESPHome.

An ``update`` entity per device needs, for each YAML file in ``<config>/esphome/``:

* the node name (``esphome: name:``) after packages and substitutions, to match the file to a
  device of Home Assistant's ``esphome`` integration, and the ``friendly_name``;
* the OTA password (``ota: - platform: esphome  password: ...``) and the API encryption key
  (``api: encryption: key:``), both often ``!secret``;
* a fingerprint of everything the build would use, to tell whether the device runs the
  current configuration.

Home Assistant cannot import ESPHome, and nothing in the YAML is executed.  The files come
from :func:`.config_scan.scan_config` - the scan that decides what goes into a bundle, with
its refusals (links out of the folder, secrets files passed off as other files, size caps) -
and this module reads *only* the files that scan checked, each verified to be the very file
the scan looked at.  On top of PyYAML's composer it re-implements the part of ESPHome's
configuration reading that decides these values (ESPHome 2026.10: ``yaml_util``, the
``packages`` and ``substitutions`` components):

* ``!include`` (both forms, ``vars:``, ``condition:``, a file's ``defaults:``),
  ``!include_dir_*``, ``<<:`` merge keys, front matter documents, ``!secret`` (the
  ``secrets.yaml`` beside the file, else the configuration folder's);
* ``packages:`` (mapping or list, ``!include``-d, nested), merged the way ESPHome merges
  them, with their ``substitutions:`` consolidated in ESPHome's priority order;
* ``substitutions:`` and ``$name`` / ``${name}`` (ESPHome's own pattern), substitution values
  that refer to each other, include ``vars``; of the Jinja syntax only ``${ name }`` and
  ``${ name.member }``.  An undefined variable stays as written, as in ESPHome.

What cannot be known here makes the name fall back to the file's stem (``name_from_stem``):
a package or include whose file cannot be determined, an invalid ``substitutions:`` block,
and a name that is not a valid ESPHome name after substitution (for instance because it
depends on ``!lambda``, ``!env_var``, an unknown tag or a Jinja expression beyond the simple
forms).  With a remote (git) package, whose content is the build server's to fetch, the
name and friendly name count only when the file itself sets them from its own
substitutions (a package ranks below the file, its substitutions below the file's); else
the stem again.  The OTA password and API key are read from what is known locally (a value
that cannot be determined is ``None``).

The fingerprint is SHA-256 over the sorted ``(path, SHA-256 of the content)`` pairs of every
file the scan found.  A secrets file counts only with the values of the secrets the device
uses (an HMAC over them, keyed with ``secrets_salt``; the values themselves are never kept),
so changing another device's secret does not change this device's fingerprint.
"""

from __future__ import annotations

import ast
import base64
import binascii
from collections import ChainMap, OrderedDict
from collections.abc import Callable, Iterable, Mapping
import dataclasses
from dataclasses import dataclass, field
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
from pathlib import Path, PurePosixPath
import posixpath
import re
from types import MappingProxyType
from typing import Final

from .config_scan import MAX_YAML_BYTES, SECRETS_FILE, SourceFile, scan_config
from .errors import BundleError
from .yaml_nodes import (
    MAP_TAG,
    MERGE_TAG,
    SEQ_TAG,
    STR_TAG,
    Mapping as MappingNode,
    Node,
    Scalar,
    ScalarValue,
    Sequence,
    compose_documents,
    construct_scalar,
)

_LOGGER = logging.getLogger(__name__)

# ESPHome's names (esphome/const.py, esphome/expression.py, esphome/helpers.py).
ALLOWED_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_NAME_LENGTH: Final = 31
MAC_SUFFIX_LENGTH: Final = 7
MAX_FRIENDLY_NAME_BYTES: Final = 120
VARIABLE_PROG: Final = re.compile(r"\$([A-Za-z0-9_]+|\{[A-Za-z0-9_]*\})")
JINJA_PROG: Final = re.compile(r"<%.+?%>|\$\{[^}]+\}", flags=re.MULTILINE)
TRUTHY_BOOL_STRINGS: Final = frozenset({"true", "yes", "on", "enable"})
FALSY_BOOL_STRINGS: Final = frozenset({"false", "no", "off", "disable"})
_VALID_SUBSTITUTION_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
)
_JINJA_NAME: Final = re.compile(r"\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*", flags=re.ASCII)
# Jinja's constants, and the names its environment defines (a substitution shadows those).
_JINJA_CONSTANTS: Final = frozenset({"true", "false", "none", "True", "False", "None"})
_JINJA_GLOBALS: Final = frozenset(
    {"math", "ord", "chr", "len", "range", "dict", "lipsum", "cycler", "joiner", "namespace"}
)
_INCLUDE_DIR_TAGS: Final = frozenset(
    {
        "!include_dir_list",
        "!include_dir_merge_list",
        "!include_dir_named",
        "!include_dir_merge_named",
    }
)
_SCALAR_TAGS: Final = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("null", "bool", "int", "float", "str", "binary", "timestamp")
)
_VALUE_TAG: Final = "tag:yaml.org,2002:value"
_SECRETS_NAMES: Final = frozenset({SECRETS_FILE, "secrets.yml"})
_YAML_SUFFIXES: Final = frozenset({".yaml", ".yml"})
_RESOLVER: Final = ".resolver"  # a dot is never part of a substitution name
_REMOTE_PACKAGE: Final = "a remote package"
_MAX_INCLUDE_CHAIN: Final = 20  # ESPHome's packages MAX_INCLUDE_DEPTH
_MAX_MERGE_CHAIN: Final = 10  # ESPHome's _MAX_MERGE_INCLUDE_DEPTH
_MAX_LOAD_DEPTH: Final = 40
_MAX_STEPS: Final = 1_000_000
_MAX_LITERAL_EVAL: Final = 4096
_CHUNK: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device configuration as Home Assistant sees it.

    ``name`` is the node name ESPHome would use, or the file's stem when it cannot be
    determined (``name_from_stem``).  ``files`` maps each file the build uses (POSIX path
    relative to the configuration folder) to the SHA-256 of its content - for a secrets
    file, to the HMAC of the secrets this device uses; ``fingerprint`` covers them all.
    ``name_add_mac_suffix``: the device announces itself as ``name-xxxxxx``.
    """

    yaml_name: str
    name: str
    name_from_stem: bool
    friendly_name: str | None
    ota_password: str | None = field(repr=False)
    api_encryption_key: str | None = field(repr=False)
    files: Mapping[str, str] = field(hash=False)
    fingerprint: str
    name_add_mac_suffix: bool = False
    #: ``ota: - platform: esphome  port:`` when the YAML sets one (else the platform's default).
    ota_port: int | None = None


def read_device_config(
    config_dir: Path, yaml_name: str, *, secrets_salt: bytes = b""
) -> DeviceConfig:
    """Read ``config_dir/yaml_name`` (blocking: run it in an executor).

    Raises :class:`BundleError` when the configuration cannot be read: what the bundle
    writer refuses (missing includes, undefined secrets, links out of the folder, ...) and
    YAML that neither PyYAML nor ESPHome's loader accepts (syntax errors, duplicate keys,
    more than two documents, include cycles).  ``secrets_salt`` keys the digest of the
    secrets the device uses; pass a stable per-installation secret if ``files`` or
    ``fingerprint`` may be shown to anyone who should not be able to test password guesses
    against them.
    """
    try:
        return _read(config_dir, yaml_name, secrets_salt)
    except RecursionError as err:
        raise BundleError(f"{yaml_name} nests too deeply to be read") from err


def _read(config_dir: Path, yaml_name: str, secrets_salt: bytes) -> DeviceConfig:
    scan = scan_config(config_dir, yaml_name)
    files: dict[str, str] = {}
    texts: dict[str, str] = {}
    for source in scan.files:
        if source.arcname in scan.secrets:
            files[source.arcname] = _secrets_digest(
                source.arcname, scan.secrets[source.arcname], secrets_salt
            )
            continue
        digest, text = _read_source(source, keep_text=source.arcname in scan.yaml_files)
        files[source.arcname] = digest
        if text is not None:
            texts[source.arcname] = text
    roots = (PurePosixPath(posixpath.normpath(config_dir.absolute())), PurePosixPath(scan.root))
    reader = _Reader(texts, scan.secrets, roots)
    facts = reader.read(yaml_name)
    if reader.doubts:
        _LOGGER.debug("%s: not everything is known locally: %s", yaml_name, reader.doubts)
    name = facts.name
    return DeviceConfig(
        yaml_name=yaml_name,
        name=name if name is not None else PurePosixPath(yaml_name).stem,
        name_from_stem=name is None,
        friendly_name=facts.friendly_name,
        ota_password=facts.ota_password,
        api_encryption_key=facts.api_encryption_key,
        files=MappingProxyType(files),
        fingerprint=_fingerprint(files),
        name_add_mac_suffix=facts.name_add_mac_suffix,
        ota_port=facts.ota_port,
    )


def list_device_configs(config_dir: Path, *, secrets_salt: bytes = b"") -> list[DeviceConfig]:
    """Read every device YAML directly in ``config_dir``, sorted by file name (blocking).

    The files are those Home Assistant offers for building: ``*.yaml`` / ``*.yml``, not
    hidden, not ``secrets``.  One that cannot be read is logged and left out, so that one
    odd file never hides the others.
    """
    try:
        names = sorted(
            entry.name
            for entry in config_dir.iterdir()
            if is_device_yaml_name(entry.name) and entry.is_file()
        )
    except OSError as err:
        _LOGGER.warning("Cannot list the device configurations in %s: %s", config_dir, err)
        return []
    configs: list[DeviceConfig] = []
    for name in names:
        try:
            configs.append(read_device_config(config_dir, name, secrets_salt=secrets_salt))
        except BundleError as err:
            _LOGGER.warning("Skipping device configuration %s: %s", name, err)
        except Exception:  # a reader bug must not hide the other devices
            _LOGGER.exception("Skipping device configuration %s: unexpected error", name)
    return configs


def is_device_yaml_name(name: str) -> bool:
    """Tell whether a file name can be a device configuration of the folder.

    A ``.yaml``/``.yml`` file directly in it: no path, no hidden file, never ``secrets``.
    """
    candidate = PurePosixPath(name)
    return (
        candidate.name == name
        and "\\" not in name
        and "\x00" not in name
        and candidate.suffix.lower() in _YAML_SUFFIXES
        and candidate.stem not in {"", ".", ".."}
        and candidate.stem.lower() != "secrets"
        and not name.startswith(".")
    )


# --- files and digests ------------------------------------------------------------------


def _read_source(source: SourceFile, *, keep_text: bool) -> tuple[str, str | None]:
    """Hash the file the scan checked (and no other); with ``keep_text`` return its text."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    keep = keep_text and source.size <= MAX_YAML_BYTES
    digest = hashlib.sha256()
    kept = bytearray()
    try:
        fd = os.open(source.path, flags | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if (info.st_dev, info.st_ino) != source.identity:
                raise BundleError(f"{source.arcname} changed while it was read")
            remaining = source.size + 1  # one byte more shows that it grew
            while remaining > 0 and (chunk := handle.read(min(_CHUNK, remaining))):
                remaining -= len(chunk)
                digest.update(chunk)
                if keep:
                    kept += chunk
    except OSError as err:
        raise BundleError(f"{source.arcname} cannot be read: {err}") from err
    if remaining != 1:
        raise BundleError(f"{source.arcname} changed while it was read")
    if not keep:
        return digest.hexdigest(), None
    try:
        return digest.hexdigest(), kept.decode("utf-8")
    except UnicodeDecodeError:
        return digest.hexdigest(), None


def _secrets_digest(arc: str, filtered: bytes, salt: bytes) -> str:
    """HMAC over the used secrets (key, tag, value), sorted: quoting and order do not count."""
    documents = compose_documents(filtered.decode("utf-8"), arc)
    root = documents[0] if documents else MappingNode(MAP_TAG)
    if not isinstance(root, MappingNode):  # pragma: no cover - the scan re-emits a mapping
        raise BundleError(f"{arc} is not a YAML mapping")
    entries = sorted(
        (json.dumps(_canonical(key, set())), json.dumps(_canonical(value, set())))
        for key, value in root.pairs
    )
    return hmac.new(salt, json.dumps(entries).encode(), hashlib.sha256).hexdigest()


type _Canonical = str | list[_Canonical]


def _canonical(node: Node, seen: set[int]) -> _Canonical:
    if isinstance(node, Scalar):
        return [node.tag, node.value]
    if id(node) in seen:
        return ["*"]  # a recursive alias
    seen.add(id(node))
    if isinstance(node, Sequence):
        return [node.tag, [_canonical(item, seen) for item in node.items]]
    return [node.tag, [[_canonical(k, seen), _canonical(v, seen)] for k, v in node.pairs]]


def _fingerprint(files: Mapping[str, str]) -> str:
    """SHA-256 of the sorted ``[path, digest]`` pairs as JSON (ASCII, so any name works)."""
    return hashlib.sha256(json.dumps(sorted(files.items())).encode("ascii")).hexdigest()


# --- the values ESPHome's loader makes ----------------------------------------------------


class _Unknown:
    """A value that cannot be determined here."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unknown>"


class _Missing:
    """An undefined substitution variable (ESPHome leaves its reference as written)."""

    __slots__ = ()


class _Remote:
    """A remote package: its content is the build server's to fetch."""

    __slots__ = ()


class _Remove:
    """``!remove``."""

    __slots__ = ()


class _InProgress:
    __slots__ = ()


UNKNOWN: Final = _Unknown()
MISSING: Final = _Missing()
REMOTE: Final = _Remote()
REMOVE: Final = _Remove()
_IN_PROGRESS: Final = _InProgress()


@dataclass(frozen=True, slots=True)
class _Opaque:
    """``!lambda``, ``!extend``, ``!env_var``, an unknown tag: nothing to read from it."""

    tag: str


@dataclass(frozen=True, slots=True)
class _Literal:
    """``!literal`` text: never substituted."""

    value: str


@dataclass(slots=True)
class _Include:
    """A deferred ``!include``; ``base`` is the including file's folder."""

    base: str
    file: str
    vars: Value
    condition: bool | str | None


@dataclass(slots=True)
class _Ctx:
    """A value with the substitution variables of the ``!include`` that loaded it."""

    vars: _Map
    value: Value


class _Map(dict[str, "Value"]):
    """A mapping; ``unsure`` when keys may be missing that cannot be known here."""

    __slots__ = ("unsure",)

    def __init__(self, items: Iterable[tuple[str, Value]] = (), *, unsure: bool = False) -> None:
        super().__init__(items)
        self.unsure = unsure


class _Seq(list["Value"]):
    """A sequence; ``unsure`` when items may be missing that cannot be known here."""

    __slots__ = ("unsure",)

    def __init__(self, items: Iterable[Value] = (), *, unsure: bool = False) -> None:
        super().__init__(items)
        self.unsure = unsure


type Value = (
    ScalarValue | _Map | _Seq | _Include | _Ctx | _Opaque | _Literal | _Remove | _Remote | _Unknown
)


@dataclass(frozen=True, slots=True)
class _Resolver:
    """ESPHome's lazy resolution of substitution variables that refer to each other."""

    resolve: Callable[[str], Value | _Missing]


type _Vars = ChainMap[str, Value | _Resolver]


class _Undefined(Exception):  # noqa: N818 - mirrors jinja2's UndefinedError
    """An undefined variable while resolving substitutions strictly."""


@dataclass(frozen=True, slots=True)
class _Facts:
    name: str | None
    friendly_name: str | None
    ota_password: str | None
    api_encryption_key: str | None
    name_add_mac_suffix: bool
    ota_port: int | None


def _unwrap(value: Value) -> Value:
    return value.value if isinstance(value, _Ctx) else value


def _is_text(value: Value) -> bool:
    return isinstance(value, (str, _Literal)) or (
        isinstance(value, _Ctx) and isinstance(value.value, str)
    )


def _to_text(value: Value) -> str | None:
    """``str(value)`` as ESPHome would splice it into a string; ``None`` if not knowable."""
    if isinstance(value, _Literal):
        return value.value
    if value is None or isinstance(value, (str, int, float, bytes, dt.date)):
        return str(value)
    return None


def _has_substitution(value: str) -> bool:
    return VARIABLE_PROG.search(value) is not None or JINJA_PROG.search(value) is not None


def merge_config(old: Value, new: Value) -> Value:  # noqa: PLR0911 - mirrors ESPHome
    """ESPHome's ``config_helpers.merge_config``: ``new`` wins, mappings merge, lists add up."""
    if isinstance(new, _Remove):
        return new
    if isinstance(new, _Map):
        if isinstance(old, _Unknown):
            return _Map(((k, merge_config(UNKNOWN, v)) for k, v in new.items()), unsure=True)
        if not isinstance(old, _Map):
            return new
        result = _Map(old.items(), unsure=old.unsure or new.unsure)
        for key, value in new.items():
            result[key] = merge_config(old.get(key, UNKNOWN if old.unsure else None), value)
        return result
    if isinstance(new, _Seq):
        if isinstance(old, _Unknown):
            return _Seq(new, unsure=True)
        if not isinstance(old, _Seq):
            return new
        return _Seq([*old, *new], unsure=old.unsure or new.unsure)
    if new is None:
        return old
    return new


def _walk_order(arc: str) -> tuple[tuple[int, str], ...]:
    """Sort key: a folder's files before its sub-folders, each sorted (a sorted os.walk)."""
    *folders, name = arc.split("/")
    return (*((1, folder) for folder in folders), (0, name))


class _Builder:
    """Constructs one file's node tree the way ESPHome's loader does (``plain``: secrets)."""

    def __init__(self, reader: _Reader, arc: str, *, plain: bool = False) -> None:
        self._reader = reader
        self._arc = arc
        self._dir = posixpath.dirname(arc)
        self._plain = plain
        self._memo: dict[int, Value | _InProgress] = {}

    def build(self, node: Node) -> Value:
        self._reader.spend()
        known = self._memo.get(id(node), MISSING)
        if isinstance(known, _InProgress):
            raise BundleError(f"{self._arc}: a YAML alias refers to a node that contains it")
        if not isinstance(known, _Missing):
            return known
        self._memo[id(node)] = _IN_PROGRESS
        value = self._build(node)
        self._memo[id(node)] = value
        return value

    def _build(self, node: Node) -> Value:  # noqa: PLR0911
        tag = node.tag
        if tag == "!remove":
            return REMOVE
        if isinstance(node, Scalar):
            return self._scalar(node)
        if isinstance(node, Sequence):
            if tag != SEQ_TAG:
                return _Opaque(tag)
            return _Seq(self.build(item) for item in node.items)
        if tag == "!include" and not self._plain:
            return self._include_mapping(node)
        if tag != MAP_TAG:
            return _Opaque(tag)
        return self.mapping(node)

    def _scalar(self, node: Scalar) -> Value:
        tag = node.tag
        if not self._plain:
            if tag == "!secret":
                return self._reader.secret(self._arc, node.value)
            if tag == "!include":
                return _Include(self._dir, node.value, None, None)
            if tag in _INCLUDE_DIR_TAGS:
                return self._reader.include_dir(tag, self._dir, node.value)
        if tag == "!literal":
            return _Literal(node.value)
        if tag in _SCALAR_TAGS:
            try:
                return construct_scalar(node)
            except ValueError as err:
                raise BundleError(f"{self._arc}: {err}") from err
        return _Opaque(tag)

    def _include_mapping(self, node: MappingNode) -> Value:
        fields = self.mapping(node)
        file = _unwrap(fields.get("file"))
        condition = _unwrap(fields.get("condition"))
        if isinstance(file, _Literal):
            file = file.value
        if isinstance(condition, _Literal):
            condition = condition.value
        if isinstance(file, _Unknown) or isinstance(condition, _Unknown):
            return self._reader.doubt(f"an !include in {self._arc} names an unknown file")
        if file is None:
            raise BundleError(f"!include in {self._arc} names no file")
        if not isinstance(file, str):
            raise BundleError(f"!include in {self._arc}: 'file' must be a string")
        if condition is not None and not isinstance(condition, (bool, str)):
            raise BundleError(f"!include in {self._arc}: 'condition' must be a boolean or text")
        return _Include(self._dir, file, fields.get("vars"), condition)

    def mapping(self, node: MappingNode) -> _Map:
        """ESPHome's ``construct_yaml_map``: keys as text, no duplicates, ``<<`` merges."""
        result = _Map()
        pairs: list[tuple[str, Value]] = []
        merged: list[tuple[str, Value]] = []
        seen: set[str] = set()
        for key_node, value_node in node.pairs:
            if isinstance(key_node, Scalar) and key_node.tag == MERGE_TAG:
                items = self._merge_items(self.build(value_node))
                if items is None:
                    result.unsure = True
                else:
                    merged.extend(items)
                continue
            key = self._key(key_node)
            value = self.build(value_node)
            if key is None:
                result.unsure = True
                continue
            if key in seen:
                shown = repr(key) if key_node.tag in (STR_TAG, _VALUE_TAG) else "(a tagged key)"
                raise BundleError(f"{self._arc}: duplicate key {shown}")
            seen.add(key)
            pairs.append((key, value))
        for key, value in merged:
            if key not in seen:  # the mapping's own keys, then earlier merges, win
                seen.add(key)
                pairs.append((key, value))
        result.update(pairs)
        return result

    def _key(self, node: Node) -> str | None:
        if not isinstance(node, Scalar):
            if node.tag in (MAP_TAG, SEQ_TAG):
                raise BundleError(f"{self._arc}: a mapping or list cannot be a key")
            return None
        if node.tag == _VALUE_TAG:
            return node.value
        value = self.build(node)
        if isinstance(value, _Literal):
            return value.value
        if value is None or isinstance(value, (str, int, float, bytes, dt.date)):
            return str(value)
        return None

    def _merge_items(self, value: Value) -> list[tuple[str, Value]] | None:
        value = self._reader.merge_include(value)
        if isinstance(value, _Map):
            return list(value.items())
        if isinstance(value, _Seq):
            items: list[tuple[str, Value]] = []
            for entry in value:
                resolved = self._reader.merge_include(entry)
                if isinstance(resolved, _Unknown):
                    return None
                if not isinstance(resolved, _Map):
                    raise BundleError(f"{self._arc}: '<<' expects mappings")
                items.extend(resolved.items())
            return items
        if isinstance(value, _Unknown):
            return None
        raise BundleError(f"{self._arc}: '<<' expects a mapping or a list of mappings")


class _Reader:
    """ESPHome's configuration reading, as far as node name, secrets and keys depend on it."""

    def __init__(
        self, texts: dict[str, str], secrets: dict[str, bytes], roots: tuple[PurePosixPath, ...]
    ) -> None:
        self._texts = texts
        self._secret_texts = secrets
        self._roots = roots
        self._documents: dict[str, list[Node]] = {}
        self._secret_values: dict[str, dict[str, Value]] = {}
        self._steps = 0
        self._depth = 0
        self._parent: dict[str, Value | _Resolver] = {}
        self._substitutions = _Map()
        self.doubts: list[str] = []

    def spend(self) -> None:
        self._steps += 1
        if self._steps > _MAX_STEPS:
            raise BundleError("the configuration is too large to read (aliases or includes)")

    def doubt(self, reason: str) -> _Unknown:
        """Note something ESPHome would know and we do not; the name falls back to the stem."""
        self.doubts.append(reason)
        return UNKNOWN

    # --- loading --------------------------------------------------------------------------

    def read(self, yaml_name: str) -> _Facts:
        loaded = self.load_file(yaml_name)
        config = _unwrap(loaded)
        if not isinstance(config, _Map):
            self.doubt(f"{yaml_name} is not a mapping")
            return _extract(UNKNOWN, doubtful=True)
        # A top-level `!include {file, vars}`: its vars count from the substitution pass on.
        top_vars = loaded.vars if isinstance(loaded, _Ctx) else None
        own_substitutions = config.get("substitutions", _Map())
        if isinstance(own_substitutions, _Map):
            own_substitutions = _Map(own_substitutions.items())  # the passes rewrite it
        own_esphome = config.get("esphome")
        self._packages_pass(config)
        substituted = self._substitution_pass(config, top_vars)
        merged = self._merge_packages(substituted)
        facts = _extract(merged, doubtful=bool(self.doubts))
        if self.doubts and all(reason == _REMOTE_PACKAGE for reason in self.doubts):
            # Remote packages rank below the file itself, and so do their substitutions:
            # a name the file sets from its own substitutions is the name.
            esphome = self._substitute_own(own_substitutions, own_esphome, top_vars)
            name, friendly, mac_suffix = _name_facts(esphome)
            facts = dataclasses.replace(
                facts, name=name, friendly_name=friendly, name_add_mac_suffix=mac_suffix
            )
        return facts

    def _substitute_own(self, substitutions: Value, esphome: Value, top_vars: _Map | None) -> Value:
        """Substitute the file's ``esphome:`` with its own substitutions only."""
        block = self._substitutions_block(substitutions) or _Map()
        item: Value = _Ctx(top_vars, esphome) if top_vars else esphome
        return self.substitute(item, self.push(self._variables(block), ChainMap()), strict=False)

    def load_file(self, arc: str) -> Value:
        """ESPHome's ``_load_yaml_internal``: one file, a top-level ``!include`` followed."""
        text = self._texts.get(arc)
        if text is None:
            return self.doubt(f"{arc} is not among the files the scan checked")
        documents = self._documents.get(arc)
        if documents is None:
            documents = self._documents[arc] = compose_documents(text, arc)
        if len(documents) > 2:
            raise BundleError(
                f"{arc} has {len(documents)} YAML documents; ESPHome reads at most two "
                "(front matter, then the configuration)"
            )
        self._depth += 1
        try:
            if self._depth > _MAX_LOAD_DEPTH:
                raise BundleError(f"includes nest more than {_MAX_LOAD_DEPTH} deep at {arc}")
            value: Value = _Map()
            if documents:
                value = _Builder(self, arc).build(documents[-1])
                if value is None or (len(documents) == 1 and _falsy(value)):
                    value = _Map()
            if isinstance(value, _Include):
                value = self._load_static_include(value)
            return value
        finally:
            self._depth -= 1

    def _arc(self, base: str, ref: str) -> str | None:
        """Return the scan's path of a reference (relative to ``base``, or absolute inside)."""
        if not ref or "\x00" in ref:
            return None
        if posixpath.isabs(ref):
            path = PurePosixPath(posixpath.normpath(ref))
            for root in self._roots:
                if path.is_relative_to(root):
                    return path.relative_to(root).as_posix()
            return None
        arc = posixpath.normpath(posixpath.join(base, ref))
        return None if arc == ".." or arc.startswith("../") else arc

    def _load_include(self, base: str, file: str, variables: Value) -> Value:
        arc = self._arc(base, file)
        if arc is None:
            return self.doubt(f"!include {file!r} leaves the configuration folder")
        return self.add_context(self.load_file(arc), variables)

    def _load_static_include(self, include: _Include) -> Value:
        """Resolve an include while loading (top level, ``<<``): no substitutions."""
        if _has_substitution(include.file):
            return self.doubt(f"!include {include.file!r} needs substitutions while loading")
        load = _should_load(include.condition)
        if load is None:
            return self.doubt(f"the condition of !include {include.file!r} is not a boolean")
        return self._load_include(include.base, include.file, include.vars) if load else _Map()

    def add_context(self, value: Value, variables: Value) -> Value:
        """ESPHome's ``add_context``: a file's ``defaults:`` under the include's ``vars:``."""
        if isinstance(variables, _Unknown):
            return self.doubt("!include vars that cannot be determined")
        if variables is not None and not isinstance(variables, _Map):
            raise BundleError("!include vars must be a mapping")
        inner = _unwrap(value)
        if isinstance(inner, _Map) and "defaults" in inner:
            defaults = inner.pop("defaults")
            if not isinstance(defaults, _Map):
                raise BundleError("'defaults:' of an included file must be a mapping")
            variables = _Map({**defaults, **(variables or {})}.items())
        if isinstance(value, _Ctx):
            return _Ctx(_Map({**value.vars, **(variables or {})}.items()), value.value)
        if variables and isinstance(value, (_Map, _Seq, str, _Literal, _Opaque)):
            return _Ctx(variables, value)
        return value

    def merge_include(self, value: Value) -> Value:
        """ESPHome's ``_resolve_merge_include``: ``<<: !include`` loads right away."""
        for _ in range(_MAX_MERGE_CHAIN):
            if not isinstance(value, _Include):
                break
            value = self._load_static_include(value)
        else:
            raise BundleError(f"'<<' follows more than {_MAX_MERGE_CHAIN} includes")
        if isinstance(value, _Ctx):  # the wrapper goes; its children keep the variables
            inner, variables = value.value, value.vars
            if isinstance(inner, _Map):
                return _Map((k, self.add_context(v, variables)) for k, v in inner.items())
            if isinstance(inner, _Seq):
                return _Seq(self.add_context(v, variables) for v in inner)
            return inner
        return value

    def include_dir(self, tag: str, base: str, ref: str) -> Value:
        """``!include_dir_*``: every visible ``*.yaml`` below the folder, loaded right away."""
        folder = self._arc(base, ref)
        if folder is None:
            return self.doubt(f"{tag} {ref!r} leaves the configuration folder")
        prefix = "" if folder == "." else f"{folder}/"
        arcs = sorted(
            (
                arc
                for arc in self._texts
                if arc.startswith(prefix)
                and arc.endswith(".yaml")
                and posixpath.basename(arc) not in _SECRETS_NAMES
                and not any(part.startswith(".") for part in arc[len(prefix) :].split("/"))
            ),
            key=_walk_order,
        )
        if tag == "!include_dir_list":
            return _Seq(self.load_file(arc) for arc in arcs)
        if tag == "!include_dir_named":
            return _Map((PurePosixPath(arc).stem, self.load_file(arc)) for arc in arcs)
        if tag == "!include_dir_merge_list":
            merged_list = _Seq()
            for arc in arcs:
                if isinstance(loaded := _unwrap(self.load_file(arc)), _Seq):
                    merged_list.extend(loaded)
            return merged_list
        merged_map = _Map()
        for arc in arcs:
            if isinstance(loaded := _unwrap(self.load_file(arc)), _Map):
                merged_map.update(loaded)
        return merged_map

    def secret(self, arc: str, key: str) -> Value:
        """``!secret``: the ``secrets.yaml`` beside the file, else the folder's (as filtered)."""
        beside = posixpath.join(posixpath.dirname(arc), SECRETS_FILE)
        for candidate in dict.fromkeys((beside, SECRETS_FILE)):
            if candidate in self._secret_texts:
                values = self._secret_values.get(candidate)
                if values is None:
                    values = self._secret_values[candidate] = self._load_secrets(candidate)
                return values.get(key, UNKNOWN)
        return self.doubt(f"no secrets file for {arc}")

    def _load_secrets(self, arc: str) -> dict[str, Value]:
        documents = compose_documents(self._secret_texts[arc].decode("utf-8"), arc)
        root = documents[0] if documents else None
        if not isinstance(root, MappingNode):
            return {}
        return _Builder(self, arc, plain=True).mapping(root)

    # --- substitutions --------------------------------------------------------------------

    def _lookup(self, name: str, context: _Vars) -> Value | _Missing:
        value = context.get(name, MISSING)
        if isinstance(value, _Missing):
            resolver = context.get(_RESOLVER)
            if isinstance(resolver, _Resolver):
                return resolver.resolve(name)
            return MISSING
        if isinstance(value, _Resolver):  # pragma: no cover - names never contain a dot
            return MISSING
        return value

    def _undefined(self, name: str, strict: bool) -> _Unknown | None:
        """Handle an undefined variable: raise when strict; unknown if a package is remote."""
        if strict:
            raise _Undefined(name)
        return UNKNOWN if self.doubts else None

    def push(self, variables: _Map, parent: _Vars) -> _Vars:
        """ESPHome's ``_push_context``: variables resolved lazily, in dependency order."""
        unresolved: dict[str, Value] = dict(variables)
        resolved: dict[str, Value | _Resolver] = {}
        context: _Vars = parent.new_child(resolved)
        unresolvable: dict[str, Value] = {}
        resolver_context = context.new_child()

        def resolve(key: str) -> Value | _Missing:
            value = unresolved.pop(key, MISSING)
            if isinstance(value, _Missing):
                known = resolved.get(key, MISSING)
                return MISSING if isinstance(known, _Resolver) else known
            if isinstance(value, _Map):
                resolved[key] = value  # its members may refer to each other
            try:
                substituted = self.substitute(value, resolver_context, strict=True)
            except _Undefined:
                unresolvable[key] = value
                return MISSING
            resolved[key] = substituted
            return substituted

        resolver_context[_RESOLVER] = _Resolver(resolve)
        while unresolved:
            resolve(next(iter(unresolved)))
        resolved.update(unresolvable)  # kept as written, as ESPHome does
        return context

    def push_node(self, value: Value, parent: _Vars) -> _Vars:
        return self.push(value.vars, parent) if isinstance(value, _Ctx) else parent

    def substitute(self, item: Value, context: _Vars, *, strict: bool) -> Value:
        """ESPHome's ``substitute``: a copy of ``item`` with every reference replaced."""
        self.spend()
        if isinstance(item, _Ctx):
            context = self.push(item.vars, context)
            item = item.value
        if isinstance(item, _Seq):
            return _Seq(
                (self.substitute(entry, context, strict=strict) for entry in item),
                unsure=item.unsure,
            )
        if isinstance(item, _Map):
            result = _Map(unsure=item.unsure)
            for key, value in item.items():
                new_value = self.substitute(value, context, strict=strict)
                new_key = self.expand(key, context, strict=strict)
                if isinstance(new_key, str):
                    result[new_key] = merge_config(result.get(new_key), new_value)
                else:
                    result.unsure = True
            return result
        if isinstance(item, str):
            return self.expand(item, context, strict=strict)
        if isinstance(item, _Include):
            content = self.resolve_include(item, context, strict=strict)
            return self.substitute(content, context, strict=strict)
        return item

    def expand(self, value: str, context: _Vars, *, strict: bool) -> Value:
        """ESPHome's ``_expand_substitutions``: ``$name``/``${name}``, then simple Jinja."""
        if "$" not in value:
            return value
        result: Value = value
        position = 0
        while (match := VARIABLE_PROG.search(value, position)) is not None:
            start, end = match.span(0)
            name = match.group(1).removeprefix("{").removesuffix("}")
            found = self._lookup(name, context)
            if isinstance(found, _Missing):
                if (unknown := self._undefined(name, strict)) is not None:
                    return unknown
                position = end
                continue
            if isinstance(found, _Unknown):
                return UNKNOWN
            if start == 0 and end == len(value):
                result = found  # the whole string: the value keeps its type
                break
            text = _to_text(found)
            if text is None:
                return UNKNOWN
            tail = value[end:]
            value = value[:start] + text
            position = len(value)
            value += tail
            result = value
        if isinstance(result, str) and JINJA_PROG.search(result):
            return self._jinja(result, context, strict=strict)
        return result

    def _jinja(self, value: str, context: _Vars, *, strict: bool) -> Value:
        """Evaluate the Jinja that is a plain reference: ``${ name }``, ``${ name.member }``."""
        nodes: list[Value] = []
        segments: list[str] = []
        position = 0
        undefined = False
        for match in JINJA_PROG.finditer(value):
            segments.append(value[position : match.start()])
            position = match.end()
            expression = _JINJA_NAME.fullmatch(match.group(0)[2:-1])
            if match.group(0).startswith("<%") or expression is None:
                return UNKNOWN
            found = self._jinja_reference(expression.group(1), context)
            if isinstance(found, _Missing):
                undefined = True
                continue
            if segments[-1]:
                nodes.append(segments[-1])
            nodes.append(found)
        segments.append(value[position:])
        if segments[-1]:
            nodes.append(segments[-1])
        if segments[0].lstrip().startswith("#") or any(
            marker in text for text in segments for marker in ("##", "{#", "<%", "${", "\n", "\r")
        ):
            return UNKNOWN  # Jinja would read more into the text around the references
        if undefined:
            return self._undefined("a Jinja reference", strict) or value
        return _native_concat(nodes)

    def _jinja_reference(self, path: str, context: _Vars) -> Value | _Missing:
        first, *members = path.split(".")
        if first in _JINJA_CONSTANTS:
            return UNKNOWN
        found = self._lookup(first, context)
        if isinstance(found, _Missing) and first in _JINJA_GLOBALS:
            return UNKNOWN
        for member in members:
            if isinstance(found, _Missing):
                break
            if not isinstance(found, _Map) or hasattr(OrderedDict, member):
                return UNKNOWN
            found = found.get(member, MISSING)
        return found

    def resolve_include(self, include: _Include, context: _Vars, *, strict: bool) -> Value:
        """ESPHome's ``resolve_include``: substitute file name and condition, then load."""
        condition: bool | str | None = include.condition
        if isinstance(condition, str):
            expanded = self.expand(condition, context, strict=strict)
            text = _to_text(expanded)
            if text is None:
                return self.doubt(f"the condition of !include {include.file!r} is unknown")
            condition = text
        file = _to_text(self.expand(include.file, context, strict=strict))
        if file is None or _has_substitution(file):
            return self.doubt(f"!include {include.file!r} cannot be resolved")
        load = _should_load(condition)
        if load is None:
            return self.doubt(f"the condition of !include {include.file!r} is not a boolean")
        return self._load_include(include.base, file, include.vars) if load else _Map()

    # --- packages -------------------------------------------------------------------------

    def _substitutions_block(self, value: Value) -> _Map | None:
        """ESPHome's ``resolve_substitutions_block``."""
        if isinstance(value, _Include):
            value = self.resolve_include(value, ChainMap(), strict=False)
        value = _unwrap(value)
        if isinstance(value, _Map):
            return value
        self.doubt("substitutions: is not a mapping")
        return None

    def _update_substitutions(
        self, package_substitutions: _Map, context: _Vars | None = None
    ) -> None:
        """ESPHome's ``_update_substitutions_context``: first definition wins."""
        if context is None:
            context = ChainMap(self._parent)
        for key, value in list(package_substitutions.items()):
            if key in self._parent:
                continue
            if not _is_text(value):
                self._parent[key] = value
                continue
            resolved = self.substitute(value, context, strict=False)
            self._parent[key] = resolved
            package_substitutions[key] = resolved

    def _packages_pass(self, config: _Map) -> None:
        """ESPHome's ``do_packages_pass``: resolve packages, consolidate substitutions."""
        if "packages" not in config:
            return
        block = self._substitutions_block(config.pop("substitutions", _Map()))
        self._substitutions = block if block is not None else _Map()
        self._update_substitutions(self._substitutions)
        context = self.push_node(config["packages"], ChainMap(self._parent))
        self._walk_packages(config, context)
        if self._substitutions:
            config["substitutions"] = self._substitutions

    def _walk_packages(self, config: _Map, context: _Vars) -> None:
        packages = config["packages"]
        if isinstance(packages, _Include):
            packages = self.resolve_include(packages, context, strict=False)
        inner = _unwrap(packages)
        if isinstance(inner, _Map):
            for name in reversed(list(inner)):  # the last package has the highest priority
                inner[name] = self._process_package(inner[name], context)
        elif isinstance(inner, _Seq):
            for index in reversed(range(len(inner))):
                inner[index] = self._process_package(inner[index], context)
        else:
            self.doubt("packages: is not a mapping or list")
        config["packages"] = packages

    def _process_package(self, package: Value, context: _Vars) -> Value:
        package = self._resolve_package(package, context)
        inner = _unwrap(package)
        if not isinstance(inner, _Map):
            return package
        package_context = self.push_node(package, context)
        substitutions = inner.pop("substitutions", None)
        if substitutions:
            if isinstance(substitutions, _Map):
                self._update_substitutions(substitutions, package_context)
                merged = merge_config(substitutions, self._substitutions)
                self._substitutions = merged if isinstance(merged, _Map) else _Map()
            else:
                self.doubt("a package's substitutions: is not a mapping")
        if "packages" in inner:
            self._walk_packages(inner, self.push_node(inner["packages"], package_context))
        return package

    def _resolve_package(self, package: Value, context: _Vars) -> Value:
        for _ in range(_MAX_INCLUDE_CHAIN):
            if isinstance(package, _Include):
                package = self.resolve_include(package, context, strict=False)
            inner = _unwrap(package)
            if isinstance(inner, _Include):
                package = inner
                continue
            if isinstance(inner, (str, _Literal)) or (isinstance(inner, _Map) and "url" in inner):
                self.doubt(_REMOTE_PACKAGE)
                return REMOTE
            if isinstance(inner, _Map):
                return package
            return self.doubt("a package that cannot be determined")
        return self.doubt("packages nest too deeply")

    def _substitution_pass(self, config: _Map, top_vars: _Map | None) -> Value:
        """ESPHome's ``do_substitution_pass``."""
        block = self._substitutions_block(config.pop("substitutions", _Map())) or _Map()
        item: Value = _Ctx(top_vars, config) if top_vars else config
        return self.substitute(item, self.push(self._variables(block), ChainMap()), strict=False)

    def _variables(self, block: _Map) -> _Map:
        """Check the substitution names and drop a leading ``$``, as ESPHome does."""
        variables = _Map()
        renamed: list[tuple[str, Value]] = []
        for key, value in block.items():
            name = key.removeprefix("$")
            if not name or name[0].isdigit() or not set(name) <= _VALID_SUBSTITUTION_CHARS:
                self.doubt("an invalid substitution name")
            if name == key:
                variables[name] = value
            else:
                renamed.append((name, value))
        variables.update(renamed)  # ESPHome re-adds the renamed keys at the end
        return variables

    def _merge_packages(self, config: Value) -> Value:
        """ESPHome's ``merge_packages``: packages under the configuration, by priority."""
        if not isinstance(config, _Map) or "packages" not in config:
            return config
        merge_list: list[_Map] = []

        def collect(node: _Map) -> None:
            packages = node.get("packages")
            entries = (
                list(packages.values())
                if isinstance(packages, _Map)
                else list(packages)
                if isinstance(packages, _Seq)
                else []
            )
            for package in reversed(entries):
                if isinstance(package, _Map):
                    merge_list.append(package)
                    collect(package)

        collect(config)
        merged: Value = config
        for package in merge_list:
            merged = merge_config(package, merged)
        if isinstance(merged, _Map):
            merged.pop("packages", None)
        return merged


def _falsy(value: Value) -> bool:
    """Python's ``not value`` for what ESPHome's ``documents[0] or {}`` replaces."""
    if isinstance(value, _Literal):
        return not value.value
    if value is None or isinstance(value, (str, int, float, bytes, _Map, _Seq)):
        return not value
    return False


def _should_load(condition: bool | str | None) -> bool | None:
    """``IncludeFile.should_load``; ``None`` when ESPHome would refuse the condition."""
    if condition is None:
        return True
    if isinstance(condition, bool):
        return condition
    if _has_substitution(condition):
        return None
    lowered = condition.lower()
    if lowered in TRUTHY_BOOL_STRINGS:
        return True
    if lowered in FALSY_BOOL_STRINGS:
        return False
    return None


def _native_concat(nodes: list[Value]) -> Value:  # noqa: PLR0911
    """ESPHome's Jinja result: one node keeps its type, text that is a literal becomes it."""
    if not nodes:
        return None
    if len(nodes) == 1 and not isinstance(nodes[0], str):
        return nodes[0]
    texts = [_to_text(node) for node in nodes]
    if any(text is None for text in texts):
        return UNKNOWN
    raw = "".join(text for text in texts if text is not None)
    if len(raw) > _MAX_LITERAL_EVAL:
        return UNKNOWN
    try:
        parsed: object = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, TypeError, RecursionError):
        return raw
    if isinstance(parsed, str | set):
        return raw
    if parsed is None or isinstance(parsed, (int, float, bytes)):
        return parsed
    return UNKNOWN


# --- what the update entity needs ----------------------------------------------------------


def _get(container: Value, key: str) -> Value:
    if isinstance(container, _Map):
        if key in container:
            value = container[key]
            if isinstance(value, _Remove):
                return None
            return value.value if isinstance(value, _Literal) else value
        return UNKNOWN if container.unsure else None
    if isinstance(container, (_Unknown, _Opaque)):
        return UNKNOWN
    return None


def _boolean(value: Value) -> bool | None:
    """``cv.boolean``; ``None`` when not a boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in TRUTHY_BOOL_STRINGS:
            return True
        if lowered in FALSY_BOOL_STRINGS:
            return False
    return None


def _string(value: Value) -> str | None:
    """``cv.string``: text, or a number as text; ``None`` otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _name_facts(esphome: Value) -> tuple[str | None, str | None, bool]:
    """Return the valid node name, the friendly name and ``name_add_mac_suffix``."""
    mac_suffix = _boolean(_get(esphome, "name_add_mac_suffix")) or False
    name = _get(esphome, "name")
    limit = MAX_NAME_LENGTH - (MAC_SUFFIX_LENGTH if mac_suffix else 0)
    valid_name = (
        isinstance(name, str)
        and 0 < len(name) <= limit
        and all(char in ALLOWED_NAME_CHARS for char in name)
    )
    friendly = _string(_get(esphome, "friendly_name"))
    if friendly is not None:
        friendly = friendly.replace("/", "\u2044")  # ESPHome's replacement (until 2027.7)
        if len(friendly.encode()) > MAX_FRIENDLY_NAME_BYTES:
            friendly = None
    return (name if valid_name and isinstance(name, str) else None), friendly or None, mac_suffix


def _extract(config: Value, *, doubtful: bool) -> _Facts:
    name, friendly, mac_suffix = _name_facts(_get(config, "esphome"))
    return _Facts(
        name=name if not doubtful else None,
        friendly_name=friendly if not doubtful else None,
        ota_password=_ota_password(_get(config, "ota")),
        api_encryption_key=_api_key(_get(config, "api")),
        name_add_mac_suffix=mac_suffix,
        ota_port=_ota_port(_get(config, "ota")),
    )


def _esphome_ota_entries(ota: Value) -> list[Value]:
    """Return the ``esphome`` OTA platform's entries (the old form is one mapping)."""
    if isinstance(ota, _Map):  # the form before ESPHome 2024.6: one mapping, no platform
        return [ota] if _get(ota, "platform") in (None, "esphome") else []
    if isinstance(ota, _Seq):
        return [entry for entry in ota if _get(entry, "platform") in ("esphome", UNKNOWN)]
    return []


def _ota_port(ota: Value) -> int | None:
    """Return the port the ``esphome`` OTA platform listens on, if the YAML sets one."""
    ports: list[int] = []
    for entry in _esphome_ota_entries(ota):
        port = _get(entry, "port")
        if port is None:
            continue
        if isinstance(port, str) and port.isdecimal():
            port = int(port)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            return None  # unknown, or a value ESPHome refuses
        if port not in ports:
            ports.append(port)
    return ports[0] if len(ports) == 1 else None


def _ota_password(ota: Value) -> str | None:
    """Return the ``esphome`` OTA platform's password (ESPHome merges its entries)."""
    entries = _esphome_ota_entries(ota)
    if not entries:
        return None
    passwords: list[str] = []
    for entry in entries:
        password = _get(entry, "password")
        if password is None:
            continue
        text = _string(password)
        if text is None:
            return None  # unknown, or a value ESPHome refuses
        if text not in passwords:
            passwords.append(text)
    if len(passwords) != 1:
        return None  # none, or several: ESPHome refuses differing passwords
    return passwords[0] or None


def _api_key(api: Value) -> str | None:
    """Return ``api: encryption: key:`` if ESPHome accepts it (32 bytes, base64)."""
    key = _get(_get(api, "encryption"), "key")
    if not isinstance(key, str):
        return None
    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(decoded) == 32 and any(decoded) else None
