"""A typed view of YAML documents that keeps ESPHome's custom tags instead of running them.

PyYAML's *composer* stops before construction, so ``!include``, ``!secret``, ``!lambda``
and tags nobody has heard of all arrive as plain tagged nodes: exactly what a file discovery
pass needs, and nothing in the user's YAML is executed or resolved.  Aliases come back as
the very node they point to, so a walk that remembers visited nodes stays linear even for
"billion laughs" documents.  PyYAML ships no type information, so this module is the one
place that touches it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
import datetime as dt
from typing import Final

import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; stubs are not installed

from .errors import BundleError

STR_TAG: Final = "tag:yaml.org,2002:str"
MAP_TAG: Final = "tag:yaml.org,2002:map"
SEQ_TAG: Final = "tag:yaml.org,2002:seq"
MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR_TAGS: Final = tuple(
    f"tag:yaml.org,2002:{name}"
    for name in ("null", "bool", "int", "float", "str", "binary", "timestamp")
)
_CONSTRUCTOR: Final = yaml.constructor.SafeConstructor()

type ScalarValue = str | int | float | bool | bytes | dt.date | None


@dataclass(frozen=True, slots=True, eq=False)
class Scalar:
    """A scalar as written (``value`` is its text, whatever the tag)."""

    tag: str
    value: str


@dataclass(frozen=True, slots=True, eq=False)
class Sequence:
    """A sequence node."""

    tag: str
    items: list[Node] = field(default_factory=list)


@dataclass(frozen=True, slots=True, eq=False)
class Mapping:
    """A mapping node, pairs in document order."""

    tag: str
    pairs: list[tuple[Node, Node]] = field(default_factory=list)


type Node = Scalar | Sequence | Mapping


def compose_documents(text: str, source: str) -> list[Node]:
    """Compose every document in ``text``; ``source`` names the file in errors."""
    try:
        raw_documents = list(yaml.compose_all(text, Loader=_LOADER))
        converted: dict[int, Node] = {}
        return [_convert(document, converted) for document in raw_documents]
    except yaml.YAMLError as err:
        raise BundleError(f"{source} is not valid YAML: {err}") from err
    except RecursionError as err:
        raise BundleError(f"{source} is nested too deeply") from err


def construct_scalar(node: Scalar) -> ScalarValue:
    """Return the value PyYAML's safe loader makes of a scalar with a standard tag.

    Only the plain data types (null, bool, int, float, str, binary, timestamp) are built, by
    the safe loader's own constructors, so ``0x10``, ``yes`` or ``1:30`` mean what they mean
    to ESPHome's loader.  Any other tag, or a value its tag cannot hold (``!!int abc``),
    raises :class:`ValueError`.
    """
    if node.tag not in _SCALAR_TAGS:
        raise ValueError(f"no plain constructor for {node.tag}")
    constructor = _CONSTRUCTOR.yaml_constructors[node.tag]
    try:
        value: object = constructor(_CONSTRUCTOR, yaml.ScalarNode(node.tag, node.value))
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError) as err:
        raise ValueError(f"{node.value!r} is not a valid {node.tag}") from err
    if value is None or isinstance(value, (str, int, float, bytes, dt.date)):
        return value
    raise ValueError(f"{node.tag} made a {type(value).__name__}")  # pragma: no cover


def mapping_subset(text: str, keys: Collection[str]) -> str:
    """Re-emit only the top-level entries of a YAML mapping whose key is in ``keys``.

    ``text`` must hold one mapping (the caller parsed it already).  Values are serialised
    from their nodes, so tags and quoting survive as written; used to ship a
    ``secrets.yaml`` that holds only the secrets one device needs.
    """
    root = yaml.compose(text, Loader=_LOADER)
    chosen = [
        (key, value)
        for key, value in root.value
        if isinstance(key, yaml.ScalarNode) and key.value in keys
    ]
    return str(
        yaml.serialize(
            yaml.MappingNode(MAP_TAG, chosen), Dumper=yaml.SafeDumper, allow_unicode=True
        )
    )


def _convert(node: yaml.Node, converted: dict[int, Node]) -> Node:
    """Mirror one PyYAML node (and its children) into the typed classes above.

    A node is registered before its children are converted, so recursive aliases resolve
    to the node under construction instead of recursing forever.
    """
    known = converted.get(id(node))
    if known is not None:
        return known
    tag = str(node.tag)
    if isinstance(node, yaml.ScalarNode):
        scalar = Scalar(tag, str(node.value))
        converted[id(node)] = scalar
        return scalar
    if isinstance(node, yaml.SequenceNode):
        sequence = Sequence(tag)
        converted[id(node)] = sequence
        sequence.items.extend(_convert(item, converted) for item in node.value)
        return sequence
    mapping = Mapping(tag)
    converted[id(node)] = mapping
    mapping.pairs.extend(
        (_convert(key, converted), _convert(value, converted)) for key, value in node.value
    )
    return mapping
