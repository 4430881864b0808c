"""hassfest's rules, applied to this integration's metadata files.

hassfest (Home Assistant's ``script/hassfest``) lives in Home Assistant's source repository
and is not part of the ``homeassistant`` package, so it cannot be installed here.  This
module re-implements the rules that matter for a custom integration, plus a few house
rules, table-driven:

* ``manifest.json``: the keys a custom integration needs, their values, key order,
  imports of other integrations covered by (after_)dependencies;
* ``services.yaml``: Home Assistant's own schema, a selector per field, object and select
  selectors translated, the same actions as registered;
* ``strings.json`` and ``translations/en.json``: identical; every string safe (no HTML, no
  references that only core resolves, well-formed placeholders); every key the code uses
  exists and every key that exists is used — config and options flow steps, progress,
  errors, aborts, exceptions, repair issues, entity names and states, actions, selectors;
  placeholders the strings quote are provided where the code shows them;
* ``icons.json``: every action has an icon, entity icons belong to translation keys;
* ``quality_scale.yaml``: every rule of the integration quality scale, with a status,
  exemptions explained, and "done" backed by evidence;
* ``brand/``: the images Home Assistant serves, at the sizes it expects.

The code is read as source (``ast``) where it names keys, and imported where a value is
computed (entity descriptions, exception classes), so the checks follow refactors instead
of pinning file layouts.  A value the reader cannot resolve statically is left unchecked
rather than guessed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
import importlib
import importlib.metadata
import inspect
import json
from pathlib import Path
import re
import struct
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from awesomeversion import AwesomeVersion, AwesomeVersionException, AwesomeVersionStrategy
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.service import _SERVICES_SCHEMA
from homeassistant.loader import async_get_integration
from homeassistant.setup import async_setup_component
import probatio
import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[2] / "custom_components" / "esphome_remote_build"
DOMAIN = PACKAGE.name
MODULE_PREFIX = f"custom_components.{DOMAIN}"


def _load_json(name: str) -> Any:
    return json.loads((PACKAGE / name).read_text(encoding="utf-8"))


def _load_yaml(name: str) -> Any:
    return yaml.safe_load((PACKAGE / name).read_text(encoding="utf-8"))


MANIFEST: dict[str, Any] = _load_json("manifest.json")
STRINGS: dict[str, Any] = _load_json("strings.json")
SERVICES: dict[str, Any] = _load_yaml("services.yaml")
ICONS: dict[str, Any] = _load_json("icons.json")
QUALITY_SCALE: dict[str, Any] = _load_yaml("quality_scale.yaml")


def _parse_sources() -> dict[str, ast.Module]:
    """Every module of the package, by dotted name relative to the package."""
    trees: dict[str, ast.Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        trees[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return trees


SOURCES = _parse_sources()


def _import(module: str) -> ModuleType:
    return importlib.import_module(f"{MODULE_PREFIX}.{module}" if module else MODULE_PREFIX)


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    yield from (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def _callee(call: ast.Call) -> str:
    """The called name: ``f`` for ``f()``, ``m`` for ``x.y.m()``."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _string_constants(tree: ast.AST) -> set[str]:
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


ALL_STRING_CONSTANTS = set().union(*(_string_constants(tree) for tree in SOURCES.values()))


def _leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a nested dict, with its dotted path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    else:
        yield path, node


# --- reading values out of the source ------------------------------------------------------


@dataclass
class _Scope:
    """Where an expression sits: its module, class and function (for names and ``self``)."""

    module: ast.Module
    cls: ast.ClassDef | None = None
    function: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    env: dict[str, str] = field(default_factory=dict)

    def module_value(self, name: str) -> ast.expr | None:
        for node in self.module.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                return node.value
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == name
            ):
                return node.value
        return None

    def module_function(self, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        return next(
            (
                node
                for node in self.module.body
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
            ),
            None,
        )

    def method(self, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        if self.cls is None:
            return None
        return next(
            (
                node
                for node in self.cls.body
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
            ),
            None,
        )

    def local_values(self, name: str) -> list[ast.expr]:
        """Every value assigned to a local name in the current function."""
        if self.function is None:
            return []
        values: list[ast.expr] = []
        for node in ast.walk(self.function):
            if isinstance(node, ast.Assign):
                values.extend(
                    node.value
                    for target in node.targets
                    if isinstance(target, ast.Name) and target.id == name
                )
            elif isinstance(node, ast.NamedExpr) and node.target.id == name:
                values.append(node.value)
        return values

    def attribute_values(self, target_matches: Callable[[ast.expr], bool]) -> list[ast.expr]:
        """Every value assigned (directly or by tuple unpacking) to a target in the class."""
        if self.cls is None:
            return []
        values: list[ast.expr] = []
        for node in ast.walk(self.cls):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if target_matches(target):
                    values.append(node.value)
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    values.extend(
                        value
                        for element, value in zip(target.elts, node.value.elts, strict=False)
                        if target_matches(element)
                    )
        return values

    def returns(
        self, function: ast.FunctionDef | ast.AsyncFunctionDef, env: dict[str, str] | None = None
    ) -> tuple[_Scope, list[ast.expr]]:
        scope = _Scope(self.module, self.cls, function, env or {})
        values = [
            node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Return) and node.value is not None
        ]
        return scope, values


def _is_self_attribute(name: str) -> Callable[[ast.expr], bool]:
    def matches(target: ast.expr) -> bool:
        return (
            isinstance(target, ast.Attribute)
            and target.attr == name
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        )

    return matches


def _is_context_entry(key: str) -> Callable[[ast.expr], bool]:
    """Matches ``self.context["<key>"]``."""

    def matches(target: ast.expr) -> bool:
        return (
            isinstance(target, ast.Subscript)
            and isinstance(target.slice, ast.Constant)
            and target.slice.value == key
            and _is_self_attribute("context")(target.value)
        )

    return matches


def _union(parts: list[set[str] | None]) -> set[str] | None:
    if any(part is None for part in parts):
        return None
    return set().union(*(part for part in parts if part is not None))


def scoped_calls(tree: ast.Module) -> Iterator[tuple[_Scope, ast.Call]]:
    """Every call in a module with its nearest enclosing class and function."""

    def visit(
        node: ast.AST,
        cls: ast.ClassDef | None,
        function: ast.FunctionDef | ast.AsyncFunctionDef | None,
    ) -> Iterator[tuple[_Scope, ast.Call]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                yield from visit(child, child, None)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(child, cls, child)
            else:
                if isinstance(child, ast.Call):
                    yield _Scope(tree, cls, function), child
                yield from visit(child, cls, function)

    yield from visit(tree, None, None)


def strings_of(  # noqa: PLR0911 - one return per kind of expression
    expr: ast.expr | None, scope: _Scope, depth: int = 0
) -> set[str] | None:
    """The string values an expression can take, or ``None`` if that cannot be told."""
    if expr is None or depth > 8:
        return None if expr is not None else set()
    again = lambda value, sc=scope: strings_of(value, sc, depth + 1)  # noqa: E731
    match expr:
        case ast.Constant(value=str() as value):
            return {value}
        case ast.Constant(value=None):
            return set()
        case ast.BoolOp(values=values):
            return _union([again(value) for value in values])
        case ast.IfExp(body=body, orelse=orelse):
            return _union([again(body), again(orelse)])
        case ast.Await(value=value):
            return again(value)
        case ast.Name(id=name):
            if name in scope.env:
                return {scope.env[name]}
            values = scope.local_values(name) or [
                v for v in [scope.module_value(name)] if v is not None
            ]
            return _union([again(value) for value in values]) if values else None
        case ast.Attribute(value=ast.Name(id="self"), attr=attr):
            values = scope.attribute_values(_is_self_attribute(attr))
            return _union([again(value) for value in values]) if values else None
        case ast.Call(func=ast.Attribute(value=ast.Name(id=table), attr="get"), args=args):
            mapping = scope.module_value(table)
            if not isinstance(mapping, ast.Dict):
                return None
            parts = [again(value) for value in mapping.values]
            if len(args) > 1:
                parts.append(again(args[1]))
            return _union(parts)
        case ast.Call(func=ast.Attribute(value=ast.Name(id="self"), attr=method)):
            function = scope.method(method)
            if function is None:
                return None
            inner, values = scope.returns(function)
            return _union([strings_of(value, inner, depth + 1) for value in values])
        case _:
            return None


def keys_of(  # noqa: PLR0911 - one return per kind of expression
    expr: ast.expr | None, scope: _Scope, depth: int = 0
) -> set[str] | None:
    """The keys of a placeholder dict an expression builds, or ``None`` if unknown."""
    if expr is None:
        return set()
    if depth > 8:
        return None
    again = lambda value, sc=scope: keys_of(value, sc, depth + 1)  # noqa: E731
    match expr:
        case ast.Dict(keys=keys, values=values):
            parts: list[set[str] | None] = []
            for key, value in zip(keys, values, strict=True):
                if key is None:  # **spread
                    parts.append(again(value))
                else:
                    parts.append(strings_of(key, scope) or _joined(key, scope))
            return _union(parts)
        case ast.Await(value=value):
            return again(value)
        case ast.Name(id=name):
            values = scope.local_values(name)
            return _union([again(value) for value in values]) if values else None
        case ast.Subscript():
            values = scope.attribute_values(
                lambda target: (
                    ast.dump(target, annotate_fields=False)
                    == ast.dump(
                        ast.Subscript(value=expr.value, slice=expr.slice, ctx=ast.Store()),
                        annotate_fields=False,
                    )
                )
            )
            return _union([again(value) for value in values]) if values else None
        case ast.Call(func=ast.Attribute(value=ast.Name(id="self"), attr=method)):
            function = scope.method(method)
            if function is None:
                return None
            inner, values = scope.returns(function)
            return _union([keys_of(value, inner, depth + 1) for value in values])
        case ast.Call(func=ast.Name(id=name), args=args):
            function = scope.module_function(name)
            if function is None:
                return None
            env = {
                param.arg: arg.value
                for param, arg in zip(function.args.args, args, strict=False)
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            }
            inner, values = scope.returns(function, env)
            return _union([keys_of(value, inner, depth + 1) for value in values])
        case _:
            return None


def _joined(expr: ast.expr, scope: _Scope) -> set[str] | None:
    """Evaluate an f-string whose names are bound to constants in ``scope.env``."""
    if not isinstance(expr, ast.JoinedStr):
        return None
    text = ""
    for part in expr.values:
        if isinstance(part, ast.Constant):
            text += str(part.value)
        elif (
            isinstance(part, ast.FormattedValue)
            and isinstance(part.value, ast.Name)
            and part.value.id in scope.env
        ):
            text += scope.env[part.value.id]
        else:
            return None
    return {text}


# --- placeholders ---------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
PLACEHOLDER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def placeholders_under(node: Any) -> set[str]:
    return set().union(
        *(placeholders(value) for _, value in _leaves(node) if isinstance(value, str))
    )


# === manifest.json ===========================================================================

#: The keys hassfest (custom integration schema) and HACS need, plus the house's choice to
#: state dependencies and the integration type explicitly.
REQUIRED_MANIFEST_KEYS = (
    "domain",
    "name",
    "version",
    "codeowners",
    "documentation",
    "issue_tracker",
    "iot_class",
    "config_flow",
    "requirements",
    "dependencies",
    "integration_type",
)
#: Every key hassfest's schema for custom integrations knows.
KNOWN_MANIFEST_KEYS = frozenset(
    {
        "after_dependencies",
        "bluetooth",
        "codeowners",
        "config_flow",
        "dependencies",
        "dhcp",
        "disabled",
        "documentation",
        "domain",
        "homekit",
        "import_executor",
        "integration_type",
        "iot_class",
        "issue_tracker",
        "loggers",
        "mqtt",
        "name",
        "quality_scale",
        "requirements",
        "single_config_entry",
        "ssdp",
        "usb",
        "version",
        "zeroconf",
    }
)
IOT_CLASSES = frozenset(
    {
        "assumed_state",
        "calculated",
        "cloud_polling",
        "cloud_push",
        "local_polling",
        "local_push",
    }
)
INTEGRATION_TYPES = frozenset(
    {"device", "entity", "hardware", "helper", "hub", "service", "system"}
)
#: Integrations whose modules may be imported without being a dependency (as hassfest).
ALWAYS_IMPORTABLE = frozenset(
    {
        *(platform.value for platform in Platform),
        "alert",
        "automation",
        "conversation",
        "device_automation",
        "frontend",
        "group",
        "homeassistant",
        "persistent_notification",
        "person",
        "script",
        "system_health",
        "system_log",
        "webhook",
        "websocket_api",
        "zone",
    }
)


def _is_version(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        AwesomeVersion(
            value,
            ensure_strategy=[
                AwesomeVersionStrategy.CALVER,
                AwesomeVersionStrategy.SEMVER,
                AwesomeVersionStrategy.SIMPLEVER,
                AwesomeVersionStrategy.BUILDVER,
                AwesomeVersionStrategy.PEP440,
            ],
        )
    except AwesomeVersionException:
        return False
    return True


def _is_https_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    url = urlparse(value)
    return url.scheme == "https" and bool(url.netloc)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) and item for item in value)


MANIFEST_VALUE_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("domain", lambda v: v == DOMAIN, "equals the folder name"),
    ("name", lambda v: isinstance(v, str) and v.strip() == v != "", "is a non-empty name"),
    ("version", _is_version, "is a version Home Assistant accepts"),
    (
        "codeowners",
        lambda v: (
            _is_str_list(v)
            and bool(v)
            and all(re.fullmatch(r"@[A-Za-z0-9-]+(/[A-Za-z0-9_.-]+)?", item) for item in v)
        ),
        "names at least one @owner",
    ),
    (
        "documentation",
        lambda v: _is_https_url(v) and "home-assistant.io/integrations" not in v,
        "is an https URL of this project (not the core docs)",
    ),
    ("issue_tracker", _is_https_url, "is an https URL"),
    ("iot_class", lambda v: v in IOT_CLASSES, "is a known IoT class"),
    (
        "config_flow",
        lambda v: v is (PACKAGE / "config_flow.py").is_file(),
        "matches config_flow.py",
    ),
    ("integration_type", lambda v: v in INTEGRATION_TYPES, "is a known integration type"),
    (
        "requirements",
        lambda v: _is_str_list(v) and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^=\s]+", r) for r in v),
        "pins every requirement with ==",
    ),
    ("dependencies", _is_str_list, "is a list of domains"),
    ("after_dependencies", _is_str_list, "is a list of domains"),
    (
        "zeroconf",
        lambda v: (
            _is_str_list(v) and all(re.fullmatch(r"_[a-z0-9-]+\._(tcp|udp)\.local\.", s) for s in v)
        ),
        "lists service types like _name._tcp.local.",
    ),
)


@pytest.mark.parametrize("key", REQUIRED_MANIFEST_KEYS)
def test_manifest_has_required_key(key: str) -> None:
    assert key in MANIFEST, f"manifest.json lacks {key!r}"


@pytest.mark.parametrize(
    ("key", "rule", "meaning"), MANIFEST_VALUE_RULES, ids=[rule[0] for rule in MANIFEST_VALUE_RULES]
)
def test_manifest_value(key: str, rule: Callable[[Any], bool], meaning: str) -> None:
    if key not in MANIFEST:
        pytest.skip(f"{key} is not in the manifest")
    assert rule(MANIFEST[key]), f"manifest.json {key!r} must be valid: it {meaning}"


def test_manifest_keys_are_known() -> None:
    assert set(MANIFEST) <= KNOWN_MANIFEST_KEYS, set(MANIFEST) - KNOWN_MANIFEST_KEYS


def test_manifest_keys_sorted_like_hassfest() -> None:
    keys = list(MANIFEST)
    expected = ["domain", "name", *sorted(set(keys) - {"domain", "name"})]
    assert keys == expected, "manifest keys: domain, name, then alphabetical order"


def test_manifest_requirements_are_the_installed_versions() -> None:
    for requirement in MANIFEST["requirements"]:
        name, version = requirement.split("==")
        assert importlib.metadata.version(name) == version, requirement


def test_imported_integrations_are_dependencies() -> None:
    """hassfest: importing another integration needs it in (after_)dependencies."""
    declared = {*MANIFEST.get("dependencies", ()), *MANIFEST.get("after_dependencies", ())}
    own_platform_files = {name for name in SOURCES if "." not in name}
    missing: set[str] = set()
    for tree in SOURCES.values():
        for node in ast.walk(tree):
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for module in modules:
                parts = module.split(".")
                if parts[:2] != ["homeassistant", "components"] or len(parts) < 3:
                    continue
                domain = parts[2]
                if domain not in ALWAYS_IMPORTABLE | declared | own_platform_files:
                    missing.add(domain)
    assert not missing, f"imported but not in (after_)dependencies: {sorted(missing)}"


async def test_home_assistant_loads_the_manifest(hass: HomeAssistant) -> None:
    integration = await async_get_integration(hass, DOMAIN)
    assert not integration.is_built_in
    assert str(integration.version) == MANIFEST["version"]
    assert integration.config_flow is MANIFEST["config_flow"]
    assert integration.has_branding is (PACKAGE / "brand").is_dir()


# === brand/ ===================================================================================

#: Images Home Assistant serves from a custom integration's brand/ folder, and their sizes:
#: (exact width and height) for icons, (shortest side min, max) for logos.
BRAND_IMAGES: dict[str, tuple[str, int, int]] = {
    "icon.png": ("exact", 256, 256),
    "icon@2x.png": ("exact", 512, 512),
    "dark_icon.png": ("exact", 256, 256),
    "dark_icon@2x.png": ("exact", 512, 512),
    "logo.png": ("shortest", 128, 256),
    "logo@2x.png": ("shortest", 256, 512),
    "dark_logo.png": ("shortest", 128, 256),
    "dark_logo@2x.png": ("shortest", 256, 512),
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOUR_TYPES_WITH_ALPHA = {4, 6}


def _png_header(path: Path) -> tuple[int, int, int]:
    """Width, height and colour type from a PNG's IHDR chunk."""
    head = path.read_bytes()[:26]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR", f"{path.name} has no IHDR first"
    width, height = struct.unpack(">II", head[16:24])
    return width, height, head[25]


def test_brand_file_names_are_served() -> None:
    try:
        from homeassistant.components.brands.const import ALLOWED_IMAGES  # noqa: PLC0415
    except ImportError:  # an older Home Assistant without the brands integration
        ALLOWED_IMAGES = frozenset(BRAND_IMAGES)  # noqa: N806
    assert set(BRAND_IMAGES) == set(ALLOWED_IMAGES)
    present = {path.name for path in (PACKAGE / "brand").iterdir()}
    assert present <= set(BRAND_IMAGES), present - set(BRAND_IMAGES)
    assert {"icon.png", "icon@2x.png", "logo.png"} <= present


# Only the images we ship (Home Assistant falls back to another for a missing one).
@pytest.mark.parametrize(
    "name", sorted(path.name for path in (PACKAGE / "brand").iterdir() if path.is_file())
)
def test_brand_image_size(name: str) -> None:
    path = PACKAGE / "brand" / name
    width, height, colour_type = _png_header(path)
    kind, low, high = BRAND_IMAGES[name]
    if kind == "exact":
        assert (width, height) == (low, high), f"{name} is {width}x{height}"
    else:
        assert low <= min(width, height) <= high, f"{name} is {width}x{height}"
    assert colour_type in PNG_COLOUR_TYPES_WITH_ALPHA, f"{name} has no transparency"


# === services.yaml ============================================================================

#: Field keys services.yaml may use; names and descriptions belong in strings.json.
SERVICE_FIELD_KEYS = frozenset({"advanced", "default", "example", "filter", "required", "selector"})
OBJECT_FIELD_KEYS = frozenset({"default", "label", "required", "selector"})


def _fields(service: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A service's fields, with the fields of collapsible sections flattened in."""
    found: dict[str, dict[str, Any]] = {}
    for name, spec in ((service or {}).get("fields") or {}).items():
        if "fields" in spec and "selector" not in spec:
            found.update(spec["fields"])
        else:
            found[name] = spec
    return found


def _selectors() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(service, field, selector config) for every field of services.yaml."""
    for service, spec in SERVICES.items():
        for name, field_spec in _fields(spec).items():
            yield service, name, field_spec.get("selector") or {}


def test_services_yaml_passes_home_assistants_schema() -> None:
    _SERVICES_SCHEMA(SERVICES)


def test_service_fields_use_known_keys_and_have_selectors() -> None:
    problems = [
        f"{service}.{name}: {sorted(set(spec) - SERVICE_FIELD_KEYS) or 'no selector'}"
        for service, body in SERVICES.items()
        for name, spec in _fields(body).items()
        if set(spec) - SERVICE_FIELD_KEYS or "selector" not in spec
    ]
    assert not problems


def test_object_selectors_use_the_fields_form_and_are_translated() -> None:
    problems: list[str] = []
    for service, name, selector in _selectors():
        config = selector.get("object")
        if not config or "fields" not in config:
            continue
        where = f"{service}.{name}"
        for sub, spec in config["fields"].items():
            if set(spec) - OBJECT_FIELD_KEYS or "selector" not in spec:
                problems.append(f"{where}.{sub}: needs 'selector', may have {OBJECT_FIELD_KEYS}")
            if not isinstance(spec.get("required", False), bool):
                problems.append(f"{where}.{sub}: 'required' must be a boolean")
        key = config.get("translation_key")
        if key is None:
            problems.append(f"{where}: an object selector with fields needs a translation_key")
            continue
        translated = STRINGS.get("selector", {}).get(key, {}).get("fields", {})
        if set(translated) != set(config["fields"]):
            problems.append(
                f"{where}: selector.{key}.fields must translate {set(config['fields'])}"
            )
        for sub, text in translated.items():
            if not (isinstance(text, dict) and text.get("name") and text.get("description")):
                problems.append(f"selector.{key}.fields.{sub} needs a name and a description")
    assert not problems, problems


def test_select_selectors_are_translated() -> None:
    problems: list[str] = []
    for service, name, selector in _selectors():
        config = selector.get("select")
        if not config or "translation_key" not in config:
            continue
        options = {opt if isinstance(opt, str) else opt["value"] for opt in config["options"]}
        key = config["translation_key"]
        translated = STRINGS.get("selector", {}).get(key, {}).get("options", {})
        if set(translated) != options:
            problems.append(f"{service}.{name}: selector.{key}.options must be {sorted(options)}")
    assert not problems, problems


def test_every_selector_translation_is_used() -> None:
    used = {
        config["translation_key"]
        for _, _, selector in _selectors()
        for config in selector.values()
        if isinstance(config, dict) and "translation_key" in config
    }
    assert set(STRINGS.get("selector", {})) == used


def test_services_are_named_and_described_in_strings() -> None:
    translated = STRINGS.get("services", {})
    assert set(translated) == set(SERVICES)
    problems: list[str] = []
    for service, spec in SERVICES.items():
        text = translated[service]
        if not (text.get("name") and text.get("description")):
            problems.append(f"services.{service} needs a name and a description")
        fields = _fields(spec)
        if set(text.get("fields", {})) != set(fields):
            problems.append(f"services.{service}.fields must be exactly {sorted(fields)}")
        for name, field_text in text.get("fields", {}).items():
            if not (field_text.get("name") and field_text.get("description")):
                problems.append(f"services.{service}.fields.{name} needs a name and a description")
    assert not problems, problems


async def test_registered_services_match_services_yaml(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    assert set(hass.services.async_services_for_domain(DOMAIN)) == set(SERVICES)


# === strings.json and translations ============================================================

TOP_LEVEL_STRING_KEYS = frozenset(
    {
        "common",
        "config",
        "device",
        "device_automation",
        "entity",
        "exceptions",
        "issues",
        "options",
        "selector",
        "services",
        "system_health",
        "title",
    }
)
TRANSLATION_KEY = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
#: Sections whose keys are translation keys (``config.step`` ids, error names, …).
KEYED_SECTIONS = (
    ("config", "step"),
    ("config", "error"),
    ("config", "abort"),
    ("config", "progress"),
    ("options", "step"),
    ("exceptions",),
    ("issues",),
    ("services",),
    ("selector",),
)


def _string_problems(path: str, value: object) -> list[str]:
    """hassfest's rules for one translated string, plus what breaks the frontend."""
    if not isinstance(value, str) or not value.strip():
        return [f"{path}: must be a non-empty string"]
    problems: list[str] = []
    try:
        cv.string_with_no_html(value)
    except probatio.Invalid:
        problems.append(f"{path}: contains HTML")
    if "[%key:" in value:
        problems.append(f"{path}: [%key:…%] references are only resolved for core integrations")
    if value != value.strip():
        problems.append(f"{path}: leading or trailing whitespace")
    problems.extend(
        f"{path}: placeholder {{{name}}} is not a lowercase identifier"
        for name in placeholders(value)
        if not PLACEHOLDER_NAME.fullmatch(name)
    )
    if re.search(r"'\{\w+\}'", value):
        problems.append(f"{path}: a placeholder in single quotes is not substituted")
    if value.count("{") != value.count("}"):
        problems.append(f"{path}: unbalanced braces")
    return problems


def test_english_translation_is_strings_json() -> None:
    assert _load_json("translations/en.json") == STRINGS


def test_top_level_sections_are_known() -> None:
    assert set(STRINGS) <= TOP_LEVEL_STRING_KEYS, set(STRINGS) - TOP_LEVEL_STRING_KEYS


def test_every_string_is_safe_to_render() -> None:
    problems = [
        problem for path, value in _leaves(STRINGS) for problem in _string_problems(path, value)
    ]
    assert not problems, problems


@pytest.mark.parametrize("section", KEYED_SECTIONS, ids=".".join)
def test_translation_keys_are_well_formed(section: tuple[str, ...]) -> None:
    node: Any = STRINGS
    for part in section:
        node = node.get(part, {})
    bad = [key for key in node if not TRANSLATION_KEY.fullmatch(key)]
    assert not bad, f"{'.'.join(section)}: keys must be [a-z0-9] words joined by _ or -: {bad}"


# --- config and options flows ------------------------------------------------------------------


@dataclass
class FlowFacts:
    """What one flow class shows, read from its source."""

    forms: dict[str, list[set[str] | None]] = field(default_factory=dict)
    progress: dict[str, list[set[str] | None]] = field(default_factory=dict)
    aborts: dict[str, list[set[str] | None]] = field(default_factory=dict)
    errors: set[str] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)
    title_placeholders: set[str] = field(default_factory=set)


def _flow_classes(kind: str) -> list[ast.ClassDef]:
    tree = SOURCES["config_flow"]
    return [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(
            (base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")) == kind
            for base in node.bases
        )
    ]


def _record(
    table: dict[str, list[set[str] | None]],
    keys: set[str] | None,
    provided: set[str] | None,
    facts: FlowFacts,
    what: str,
) -> None:
    if keys is None:
        facts.unresolved.append(what)
        return
    for key in keys:
        table.setdefault(key, []).append(provided)


def flow_facts(kind: str) -> FlowFacts:
    """Forms, progress, aborts and errors of the ``ConfigFlow`` or ``OptionsFlow`` classes."""
    facts = FlowFacts()
    module = SOURCES["config_flow"]
    for cls in _flow_classes(kind):
        title_scope = _Scope(module, cls)
        for value in title_scope.attribute_values(_is_context_entry("title_placeholders")):
            facts.title_placeholders |= keys_of(value, title_scope) or set()
        for function in (
            n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ):
            scope = _Scope(module, cls, function)
            for node in ast.walk(function):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if (
                            isinstance(target, ast.Subscript)
                            and isinstance(target.value, ast.Name)
                            and target.value.id == "errors"
                        ):
                            found = strings_of(node.value, scope)
                            if found is None:
                                facts.unresolved.append(f"errors in {function.name}")
                            else:
                                facts.errors |= found
                if not isinstance(node, ast.Call):
                    continue
                name = _callee(node)
                provided = keys_of(_keyword(node, "description_placeholders"), scope)
                where = f"{name} in {function.name}"
                if name == "async_show_form":
                    _record(
                        facts.forms,
                        strings_of(_keyword(node, "step_id"), scope),
                        provided,
                        facts,
                        where,
                    )
                elif name == "async_show_progress":
                    action = _keyword(node, "progress_action")
                    _record(facts.progress, strings_of(action, scope), provided, facts, where)
                elif name == "async_abort":
                    _record(
                        facts.aborts,
                        strings_of(_keyword(node, "reason"), scope),
                        provided,
                        facts,
                        where,
                    )
                elif name == "AbortFlow":
                    reason = node.args[0] if node.args else _keyword(node, "reason")
                    given = (
                        node.args[1]
                        if len(node.args) > 1
                        else _keyword(node, "description_placeholders")
                    )
                    _record(
                        facts.aborts, strings_of(reason, scope), keys_of(given, scope), facts, where
                    )
                elif name == "_abort_if_unique_id_configured":
                    error = _keyword(node, "error")
                    reasons = {"already_configured"} if error is None else strings_of(error, scope)
                    _record(facts.aborts, reasons, provided, facts, where)
                elif name == "_abort_if_unique_id_mismatch":
                    reason = _keyword(node, "reason")
                    reasons = (
                        {"unique_id_mismatch"} if reason is None else strings_of(reason, scope)
                    )
                    _record(facts.aborts, reasons, provided, facts, where)
                elif (
                    name in {"async_update_reload_and_abort", "async_update_and_abort"}
                    and (reason := _keyword(node, "reason")) is not None
                ):
                    # Without a reason Home Assistant uses its own translated reason.
                    _record(facts.aborts, strings_of(reason, scope), set(), facts, where)
    return facts


CONFIG_FLOW = flow_facts("ConfigFlow")
OPTIONS_FLOW = flow_facts("OptionsFlow")
#: Placeholders Home Assistant adds by itself: the entry's title in every reauth form.
IMPLICIT_FORM_PLACEHOLDERS: dict[str, set[str]] = {"reauth": {"name"}}

FLOW_KEY_RULES: tuple[tuple[str, Callable[[], set[str]], Callable[[], set[str]]], ...] = (
    ("config.step", lambda: set(CONFIG_FLOW.forms), lambda: set(STRINGS["config"].get("step", {}))),
    (
        "config.progress",
        lambda: set(CONFIG_FLOW.progress),
        lambda: set(STRINGS["config"].get("progress", {})),
    ),
    ("config.error", lambda: CONFIG_FLOW.errors, lambda: set(STRINGS["config"].get("error", {}))),
    (
        "config.abort",
        lambda: set(CONFIG_FLOW.aborts),
        lambda: set(STRINGS["config"].get("abort", {})),
    ),
    (
        "options.step",
        lambda: set(OPTIONS_FLOW.forms),
        lambda: set(STRINGS.get("options", {}).get("step", {})),
    ),
    (
        "options.error",
        lambda: OPTIONS_FLOW.errors,
        lambda: set(STRINGS.get("options", {}).get("error", {})),
    ),
    (
        "options.abort",
        lambda: set(OPTIONS_FLOW.aborts),
        lambda: set(STRINGS.get("options", {}).get("abort", {})),
    ),
)


def test_flow_source_is_understood() -> None:
    """Every step id, progress action, error and abort reason resolved to literal keys."""
    assert not CONFIG_FLOW.unresolved + OPTIONS_FLOW.unresolved


@pytest.mark.parametrize(
    ("section", "used", "defined"), FLOW_KEY_RULES, ids=[rule[0] for rule in FLOW_KEY_RULES]
)
def test_flow_keys_used_exist(
    section: str, used: Callable[[], set[str]], defined: Callable[[], set[str]]
) -> None:
    missing = used() - defined()
    assert not missing, f"the flow uses {section} keys without strings: {sorted(missing)}"


@pytest.mark.parametrize(
    ("section", "used", "defined"), FLOW_KEY_RULES, ids=[rule[0] for rule in FLOW_KEY_RULES]
)
def test_flow_keys_defined_are_used(
    section: str, used: Callable[[], set[str]], defined: Callable[[], set[str]]
) -> None:
    unused = defined() - used()
    assert not unused, f"{section} keys nothing in the flow shows: {sorted(unused)}"


def _missing_placeholders(
    section: dict[str, Any], shown: dict[str, list[set[str] | None]], implicit: dict[str, set[str]]
) -> list[str]:
    problems: list[str] = []
    for key, sites in shown.items():
        wanted = placeholders_under(section.get(key, {}))
        extra = set().union(
            *(names for prefix, names in implicit.items() if key.startswith(prefix))
        )
        problems.extend(
            f"{key}: {sorted(missing)} not provided"
            for provided in sites
            if provided is not None and (missing := wanted - provided - extra)
        )
    return problems


def test_config_flow_placeholders_are_provided() -> None:
    config = STRINGS["config"]
    problems = [
        *_missing_placeholders(
            config.get("step", {}), CONFIG_FLOW.forms, IMPLICIT_FORM_PLACEHOLDERS
        ),
        *_missing_placeholders(config.get("progress", {}), CONFIG_FLOW.progress, {}),
        *_missing_placeholders(config.get("abort", {}), CONFIG_FLOW.aborts, {}),
        *_missing_placeholders(STRINGS.get("options", {}).get("step", {}), OPTIONS_FLOW.forms, {}),
    ]
    flow_title = placeholders(config.get("flow_title", ""))
    if missing := flow_title - CONFIG_FLOW.title_placeholders:
        problems.append(f"flow_title: {sorted(missing)} not in title_placeholders")
    assert not problems, problems


# --- exceptions --------------------------------------------------------------------------------


def _modules() -> Iterator[ModuleType]:
    for name in SOURCES:
        yield _import(name)


def _exception_class_keys() -> set[str]:
    """``key`` of every exception class the package defines (its translation key)."""
    keys: set[str] = set()
    for module in _modules():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module.__name__
                and issubclass(cls, BaseException)
                and isinstance(cls.__dict__.get("key"), str)
            ):
                keys.add(cls.__dict__["key"])
    return keys


def _ota_device_error_keys() -> set[str]:
    errors = _import("ota.errors")
    return {errors.device_error(code).key for code in errors.DEVICE_ERRORS}


#: Where translation keys of errors come from that the source does not spell out.
COMPUTED_ERROR_KEYS: tuple[tuple[str, Callable[[], set[str]]], ...] = (
    ("the key of each exception class", _exception_class_keys),
    ("OTA result codes (ota_device_<reason>)", _ota_device_error_keys),
)


@dataclass(frozen=True)
class ErrorSite:
    """One ``service_error(key, **placeholders)`` call."""

    module: str
    keys: frozenset[str]
    provided: frozenset[str] | None


def _service_error_sites() -> list[ErrorSite]:
    """Calls that name their key; the generic rule (``errors.translate``) passes class keys."""
    sites: list[ErrorSite] = []
    for module, tree in SOURCES.items():
        for scope, call in scoped_calls(tree):
            if _callee(call) != "service_error" or not call.args:
                continue
            keys = strings_of(call.args[0], scope)
            if keys is None:
                continue  # e.g. ``err.key``: the classes' keys are checked on their own
            provided = (
                None
                if any(kw.arg is None for kw in call.keywords)
                else frozenset(kw.arg for kw in call.keywords if kw.arg != "validation")
            )
            sites.append(ErrorSite(module, frozenset(keys), provided))
    return sites


def _values_offered_to_library_errors() -> set[str]:
    """Placeholders the generic rule offers: reason, code, and every value a caller passes."""
    offered = {"reason", "code"}
    for tree in SOURCES.values():
        for call in _calls(tree):
            if _callee(call) in {"translate", "translated_errors"}:
                offered |= {kw.arg for kw in call.keywords if kw.arg is not None}
    return offered


def test_exception_keys_used_exist() -> None:
    defined = set(STRINGS.get("exceptions", {}))
    problems = [
        f"{what}: {sorted(missing)}"
        for what, keys in COMPUTED_ERROR_KEYS
        if (missing := keys() - defined)
    ]
    problems += [
        f"service_error in {site.module}: {sorted(site.keys - defined)}"
        for site in _service_error_sites()
        if site.keys - defined
    ]
    assert not problems, problems


def test_exception_keys_defined_are_used() -> None:
    used = set().union(*(keys() for _, keys in COMPUTED_ERROR_KEYS))
    used |= set().union(*(site.keys for site in _service_error_sites()))
    unused = set(STRINGS.get("exceptions", {})) - used
    assert not unused, f"exceptions nothing raises: {sorted(unused)}"


def test_exception_placeholders_are_provided() -> None:
    exceptions = STRINGS.get("exceptions", {})
    problems: list[str] = []
    literal_keys: set[str] = set()
    for site in _service_error_sites():
        literal_keys |= site.keys
        if site.provided is None:
            continue
        problems.extend(
            f"{key} raised in {site.module}: {sorted(missing)} not provided"
            for key in site.keys
            if (missing := placeholders_under(exceptions.get(key, {})) - site.provided)
        )
    offered = _values_offered_to_library_errors()
    computed = set().union(*(keys() for _, keys in COMPUTED_ERROR_KEYS)) - literal_keys
    problems.extend(
        f"{key}: {sorted(missing)} is never offered to library errors"
        for key in sorted(computed)
        if (missing := placeholders_under(exceptions.get(key, {})) - offered)
    )
    assert not problems, problems


# --- repair issues -----------------------------------------------------------------------------


def _issue_sites() -> Iterator[tuple[str, set[str] | None, set[str] | None]]:
    """(module, translation keys, placeholders provided) of every issue created."""
    for module, tree in SOURCES.items():
        for scope, call in scoped_calls(tree):
            if _callee(call) == "async_create_issue":
                yield (
                    module,
                    strings_of(_keyword(call, "translation_key"), scope),
                    keys_of(_keyword(call, "translation_placeholders"), scope),
                )


ISSUE_SITES = list(_issue_sites())


def test_issue_keys_match() -> None:
    assert all(keys is not None for _, keys, _ in ISSUE_SITES), "an issue key was not resolved"
    used = set().union(*(keys or set() for _, keys, _ in ISSUE_SITES))
    assert used == set(STRINGS.get("issues", {}))


def test_issue_placeholders_are_provided() -> None:
    issues = STRINGS.get("issues", {})
    problems = [
        f"{key} in {module}: {sorted(missing)} not provided"
        for module, keys, provided in ISSUE_SITES
        if provided is not None
        for key in keys or ()
        if (missing := placeholders_under(issues.get(key, {})) - provided)
    ]
    assert not problems, problems


# --- entities ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntityKey:
    """One entity translation key and what its description says about it."""

    platform: str
    key: str
    device_class: str | None
    options: tuple[str, ...] | None
    module: str


def _is_entity_description(value: object) -> bool:
    """Home Assistant rebuilds its frozen description classes, so test by name, not class."""
    return any(cls.__name__ == "EntityDescription" for cls in type(value).__mro__)


def _entity_keys() -> list[EntityKey]:
    found: list[EntityKey] = []
    for platform in _import("").PLATFORMS:
        name = Platform(platform).value
        module = _import(name)
        for value in vars(module).values():
            if _is_entity_description(value) and value.translation_key:
                device_class = getattr(value, "device_class", None)
                options = getattr(value, "options", None)
                found.append(
                    EntityKey(
                        platform=name,
                        key=value.translation_key,
                        device_class=None if device_class is None else str(device_class),
                        options=None if options is None else tuple(options),
                        module=name,
                    )
                )
        found.extend(
            EntityKey(name, str(node.value.value), None, None, name)
            for node in ast.walk(SOURCES[name])
            if isinstance(node, ast.Assign)
            and any(
                isinstance(t, ast.Name) and t.id == "_attr_translation_key" for t in node.targets
            )
            and isinstance(node.value, ast.Constant)
        )
    return found


ENTITY_KEYS = _entity_keys()


def test_entity_translation_keys_match() -> None:
    used = {(entity.platform, entity.key) for entity in ENTITY_KEYS}
    defined = {
        (platform, key) for platform, keys in STRINGS.get("entity", {}).items() for key in keys
    }
    assert used == defined


@pytest.mark.parametrize("entity", ENTITY_KEYS, ids=lambda e: f"{e.platform}.{e.key}")
def test_entity_translation(entity: EntityKey) -> None:
    text = STRINGS["entity"][entity.platform][entity.key]
    assert text.get("name"), "every entity has a translated name"
    states = set(text.get("state", {}))
    if entity.device_class == "enum" and entity.options is not None:
        assert states == set(entity.options), "an enum sensor translates exactly its options"
    else:
        assert states <= ALL_STRING_CONSTANTS, "translated states must be states the code sets"
    module_constants = _string_constants(SOURCES[entity.module])
    for attribute, attribute_text in text.get("state_attributes", {}).items():
        assert attribute in module_constants, f"attribute {attribute} is never set"
        assert attribute_text.get("name"), f"attribute {attribute} needs a name"
        unknown = set(attribute_text.get("state", {})) - ALL_STRING_CONSTANTS
        assert not unknown, f"attribute {attribute}: states the code never sets: {unknown}"


# === icons.json ===============================================================================

ICON = re.compile(r"^mdi:[a-z0-9]+(?:-[a-z0-9]+)*$")
ICON_SECTIONS = frozenset({"config", "entity", "entity_component", "issues", "options", "services"})
ENTITY_ICON_KEYS = frozenset({"default", "range", "state", "state_attributes"})


def _icons() -> Iterator[tuple[str, str]]:
    return ((path, value) for path, value in _leaves(ICONS) if isinstance(value, str))


def _mdi_names() -> set[str] | None:
    try:
        import hass_frontend  # noqa: PLC0415
    except ImportError:
        return None
    icon_list = Path(hass_frontend.__file__).parent / "static" / "mdi" / "iconList.json"
    if not icon_list.is_file():
        return None
    return {entry["name"] for entry in json.loads(icon_list.read_text(encoding="utf-8"))}


def test_icon_sections_are_known() -> None:
    assert set(ICONS) <= ICON_SECTIONS


def test_icons_are_material_design_icons() -> None:
    malformed = [path for path, value in _icons() if not ICON.fullmatch(value)]
    assert not malformed, malformed
    names = _mdi_names()
    if names is None:
        pytest.skip("the frontend's icon list is not installed")
    unknown = [f"{path}={value}" for path, value in _icons() if value[4:] not in names]
    assert not unknown, unknown


def test_every_service_has_an_icon() -> None:
    icons = ICONS.get("services", {})
    assert set(icons) == set(SERVICES)
    for service, icon in icons.items():
        value = icon if isinstance(icon, str) else icon.get("service")
        assert value, f"services.{service} needs a 'service' icon"
        if isinstance(icon, dict):
            assert set(icon) <= {"service", "sections"}
            sections = {
                n for n, s in (SERVICES[service] or {}).get("fields", {}).items() if "fields" in s
            }
            assert set(icon.get("sections", {})) <= sections


def test_entity_icons_belong_to_translation_keys() -> None:
    problems: list[str] = []
    for platform, keys in ICONS.get("entity", {}).items():
        for key, spec in keys.items():
            text = STRINGS.get("entity", {}).get(platform, {}).get(key)
            if text is None:
                problems.append(f"entity.{platform}.{key}: no such translation key")
                continue
            if set(spec) - ENTITY_ICON_KEYS:
                problems.append(
                    f"entity.{platform}.{key}: unknown keys {set(spec) - ENTITY_ICON_KEYS}"
                )
            unknown_states = set(spec.get("state", {})) - set(text.get("state", {}))
            if unknown_states:
                problems.append(
                    f"entity.{platform}.{key}: icons for unknown states {unknown_states}"
                )
            same = [s for s, icon in spec.get("state", {}).items() if icon == spec.get("default")]
            if same:
                problems.append(f"entity.{platform}.{key}: state icons equal to the default {same}")
    assert not problems, problems


def test_entities_without_a_device_class_have_an_icon() -> None:
    missing = [
        f"{entity.platform}.{entity.key}"
        for entity in ENTITY_KEYS
        if entity.device_class in (None, "enum")
        and "default" not in ICONS.get("entity", {}).get(entity.platform, {}).get(entity.key, {})
    ]
    assert not missing, missing


# === quality_scale.yaml =======================================================================

#: The integration quality scale's rules, by tier (hassfest's list).
QUALITY_RULES: dict[str, tuple[str, ...]] = {
    "bronze": (
        "action-setup",
        "appropriate-polling",
        "brands",
        "common-modules",
        "config-flow",
        "config-flow-test-coverage",
        "dependency-transparency",
        "docs-actions",
        "docs-high-level-description",
        "docs-installation-instructions",
        "docs-removal-instructions",
        "entity-event-setup",
        "entity-unique-id",
        "has-entity-name",
        "runtime-data",
        "test-before-configure",
        "test-before-setup",
        "unique-config-entry",
    ),
    "silver": (
        "action-exceptions",
        "config-entry-unloading",
        "docs-configuration-parameters",
        "docs-installation-parameters",
        "entity-unavailable",
        "integration-owner",
        "log-when-unavailable",
        "parallel-updates",
        "reauthentication-flow",
        "test-coverage",
    ),
    "gold": (
        "devices",
        "diagnostics",
        "discovery",
        "discovery-update-info",
        "docs-data-update",
        "docs-examples",
        "docs-known-limitations",
        "docs-supported-devices",
        "docs-supported-functions",
        "docs-troubleshooting",
        "docs-use-cases",
        "dynamic-devices",
        "entity-category",
        "entity-device-class",
        "entity-disabled-by-default",
        "entity-translations",
        "exception-translations",
        "icon-translations",
        "reconfiguration-flow",
        "repair-issues",
        "stale-devices",
    ),
    "platinum": ("async-dependency", "inject-websession", "strict-typing"),
}
ALL_QUALITY_RULES = frozenset(rule for rules in QUALITY_RULES.values() for rule in rules)
RULES_LISTED: dict[str, Any] = QUALITY_SCALE.get("rules", {})


def _status(rule: str) -> tuple[str | None, str | None]:
    entry = RULES_LISTED.get(rule)
    if isinstance(entry, dict):
        return entry.get("status"), entry.get("comment")
    return entry, None


def _defines(module: str, name: str) -> bool:
    tree = SOURCES.get(module)
    return tree is not None and any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in ast.walk(tree)
    )


def _platform_modules() -> list[str]:
    return [Platform(platform).value for platform in _import("").PLATFORMS]


#: What a rule marked "done" must be able to show in the files.
QUALITY_EVIDENCE: dict[str, tuple[Callable[[], bool], str]] = {
    "action-setup": (lambda: _defines("", "async_setup"), "actions registered in async_setup"),
    "brands": ((PACKAGE / "brand" / "icon.png").is_file, "brand/icon.png exists"),
    "config-entry-unloading": (lambda: _defines("", "async_unload_entry"), "async_unload_entry"),
    "config-flow": (lambda: MANIFEST.get("config_flow") is True, "manifest config_flow: true"),
    "diagnostics": (
        lambda: _defines("diagnostics", "async_get_config_entry_diagnostics"),
        "diagnostics.py provides config entry diagnostics",
    ),
    "discovery": (
        lambda: bool(
            {"zeroconf", "ssdp", "dhcp", "usb", "bluetooth", "homekit", "mqtt"} & set(MANIFEST)
        ),
        "a discovery matcher in the manifest",
    ),
    "entity-translations": (lambda: bool(STRINGS.get("entity")), "entity translations"),
    "exception-translations": (lambda: bool(STRINGS.get("exceptions")), "exception translations"),
    "has-entity-name": (
        lambda: (
            "_attr_has_entity_name"
            in {
                t.id
                for tree in SOURCES.values()
                for node in ast.walk(tree)
                if isinstance(node, ast.Assign)
                for t in node.targets
                if isinstance(t, ast.Name)
            }
        ),
        "entities set _attr_has_entity_name",
    ),
    "icon-translations": (lambda: bool(ICONS), "icons.json"),
    "integration-owner": (lambda: bool(MANIFEST.get("codeowners")), "codeowners in the manifest"),
    "parallel-updates": (
        lambda: all(
            "PARALLEL_UPDATES"
            in {
                t.id
                for n in SOURCES[m].body
                if isinstance(n, ast.Assign)
                for t in n.targets
                if isinstance(t, ast.Name)
            }
            for m in _platform_modules()
        ),
        "PARALLEL_UPDATES in every platform module",
    ),
    "reauthentication-flow": (
        lambda: _defines("config_flow", "async_step_reauth"),
        "async_step_reauth",
    ),
    "reconfiguration-flow": (
        lambda: _defines("config_flow", "async_step_reconfigure"),
        "async_step_reconfigure",
    ),
    "repair-issues": (lambda: bool(STRINGS.get("issues")), "translated repair issues"),
    "runtime-data": (
        lambda: (
            "runtime_data"
            in {n.attr for n in ast.walk(SOURCES[""]) if isinstance(n, ast.Attribute)}
        ),
        "entry.runtime_data in __init__.py",
    ),
    "unique-config-entry": (
        lambda: any(_callee(c) == "async_set_unique_id" for c in _calls(SOURCES["config_flow"])),
        "the flow sets a unique id",
    ),
}


def test_quality_scale_lists_every_rule() -> None:
    listed = set(RULES_LISTED)
    assert not ALL_QUALITY_RULES - listed, f"missing: {sorted(ALL_QUALITY_RULES - listed)}"
    assert not listed - ALL_QUALITY_RULES, f"unknown: {sorted(listed - ALL_QUALITY_RULES)}"


@pytest.mark.parametrize("rule", sorted(ALL_QUALITY_RULES))
def test_quality_scale_rule_status(rule: str) -> None:
    entry = RULES_LISTED.get(rule)
    if isinstance(entry, dict):
        assert set(entry) <= {"status", "comment"}, f"{rule}: only status and comment"
    status, comment = _status(rule)
    assert status in {"done", "todo", "exempt"}, f"{rule}: status {status!r}"
    if status == "exempt":
        assert isinstance(comment, str), f"{rule}: say why it is exempt"
        assert comment.strip(), f"{rule}: say why it is exempt"
    if status == "done" and rule in QUALITY_EVIDENCE:
        check, evidence = QUALITY_EVIDENCE[rule]
        assert check(), f"{rule} is done, so the files must show: {evidence}"
