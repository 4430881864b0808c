"""Print the Python requirements a real ``hass`` process needs for the demo, one per line.

Home Assistant always sets up its core and default integrations, and the ``homeassistant``
package does not install their requirements: a first start pip-installs them, which fails
inside the demo's loopback-only network namespace (a missing ``hass_frontend`` even sends
Home Assistant into recovery mode). So ``scripts/setup`` installs them beforehand and the
demo starts ``hass --skip-pip``.

The list is derived from the *installed* Home Assistant, so it follows the pin: the domains
bootstrap sets up (``CORE_INTEGRATIONS`` + ``DEFAULT_INTEGRATIONS`` + the demo's
``configuration.yaml`` keys + this integration's ``dependencies``) and the ones the demo
adds through config flows (``FLOW_DOMAINS``: Home Assistant's ``esphome`` integration, with
the emulated device), closed over their manifests' ``dependencies`` and
``after_dependencies`` exactly as Home Assistant's own requirements processing walks them
at a first start, and the union of those manifests' ``requirements`` (plus this
integration's own).

A requirement whose distribution this venv already has at another version is written
without its version: ``requirements_test.txt`` put it there (``esphome``'s requirements
bring ``bleak``, ``habluetooth`` and ``dbus-fast`` newer than Home Assistant's own pins),
``hass --skip-pip`` only imports it, and pinning it here would move the test suite's
packages. Run it with the ``.venv`` interpreter::

    .venv/bin/python scripts/demo_requirements.py [--output FILE]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from importlib import metadata
import json
from pathlib import Path
import sys

from demo_hass import CONFIG_DOMAINS, FLOW_DOMAINS
from homeassistant import bootstrap, components

REPO_ROOT = Path(__file__).resolve().parents[1]
OUR_MANIFEST = REPO_ROOT / "custom_components" / "esphome_remote_build" / "manifest.json"
BUILT_IN = Path(components.__file__).parent


def _manifest(domain: str) -> dict[str, object]:
    path = BUILT_IN / domain / "manifest.json"
    if not path.is_file():
        # A default domain that this Home Assistant does not ship is simply not set up.
        return {}
    manifest: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def _names(manifest: dict[str, object], key: str) -> list[str]:
    value = manifest.get(key, [])
    return [str(item) for item in value] if isinstance(value, list) else []


def domains_to_set_up(roots: Iterable[str]) -> set[str]:
    """Close *roots* over both dependency kinds, as ``requirements.py`` walks them."""
    done: set[str] = set()
    todo = list(roots)
    while todo:
        domain = todo.pop()
        if domain in done:
            continue
        done.add(domain)
        manifest = _manifest(domain)
        todo.extend(_names(manifest, "dependencies") + _names(manifest, "after_dependencies"))
    return done


def requirements(domains: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The union of the domains' manifest requirements, sorted case-insensitively."""
    found = {req for domain in domains for req in _names(_manifest(domain), "requirements")}
    found.update(extra)
    return sorted(found, key=str.lower)


def installed_elsewhere(requirement: str) -> str:
    """``name==x`` as is, or just ``name`` when this venv has ``name`` at another version."""
    name, pinned, version = requirement.partition("==")
    if not pinned:
        return requirement
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        return requirement
    return requirement if installed == version else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args()
    ours = json.loads(OUR_MANIFEST.read_text(encoding="utf-8"))
    roots = {
        *bootstrap.CORE_INTEGRATIONS,
        *bootstrap.DEFAULT_INTEGRATIONS,
        *CONFIG_DOMAINS,
        *FLOW_DOMAINS,
        *_names(ours, "dependencies"),
    }
    found = requirements(domains_to_set_up(roots), _names(ours, "requirements"))
    lines = [installed_elsewhere(requirement) for requirement in found]
    text = "".join(f"{line}\n" for line in lines)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
