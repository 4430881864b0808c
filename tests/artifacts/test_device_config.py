"""read_device_config / list_device_configs: node name, secrets, fingerprint; ESPHome as oracle.

Every case below is a small configuration folder.  The table-driven tests check what we
read; ``test_cases_agree_with_esphome`` then runs ESPHome's own configuration reading (from
the Device Builder's venv) over the same folders and over ``tests/fixtures/device_config/``
and requires the same node name, friendly name, OTA password and API key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import json
import logging
from pathlib import Path
import subprocess
import textwrap

import pytest

from custom_components.esphome_remote_build.artifacts import (
    BundleError,
    device_config as device_config_module,
)
from custom_components.esphome_remote_build.artifacts.config_scan import scan_config
from custom_components.esphome_remote_build.artifacts.device_config import (
    DeviceConfig,
    list_device_configs,
    read_device_config,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "device_config"
BUNDLE_FIXTURES = REPO / "tests" / "fixtures" / "esphome"
BUILDER_PYTHON = REPO / ".venv-builder" / "bin" / "python"

KEY_A = "YS1rZXktdGhhdC1pcy0zMi1ieXRlcy1sb25nLi4uLi4="
KEY_B = "Yi1rZXktdGhhdC1pcy0zMi1ieXRlcy1sb25nLi4uLi4="
SECRETS = f"""\
wifi_ssid: case-network
wifi_password: case-password
ota_pw: root-ota-pw
api_key: "{KEY_A}"
unrelated: not-this-device
"""
# Board and Wi-Fi, so that ESPHome validates each case offline.
BASE = """\
esp8266:
  board: d1_mini
wifi:
  ssid: !secret wifi_ssid
  password: !secret wifi_password
"""
MERGE_BASE = "<<: !include base.yaml\n"


def make_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))
    return root


@dataclass
class Case:
    """A configuration folder; ``dev.yaml`` is the device.  ``oracle``: ESPHome reads it alike."""

    id: str
    files: dict[str, str]
    name: str | None = None  # None: the stem ("dev")
    friendly: str | None = None
    ota: str | None = None
    api: str | None = None
    mac_suffix: bool = False
    oracle: bool = True
    base: dict[str, str] = field(
        default_factory=lambda: {"base.yaml": BASE, "secrets.yaml": SECRETS}
    )

    def tree(self, root: Path) -> Path:
        return make_tree(root, {**self.base, **self.files})


def dev(body: str, **others: str) -> dict[str, str]:
    """``dev.yaml`` = board and Wi-Fi merged in, then ``body``; ``others`` by path (``__`` = /)."""
    return {
        "dev.yaml": MERGE_BASE + textwrap.dedent(body),
        **{
            f"{name.replace('__', '/')}.yaml": textwrap.dedent(text)
            for name, text in others.items()
        },
    }


NAME_CASES = [
    Case("braced", dev("substitutions: {n: braced-dev}\nesphome:\n  name: ${n}\n"), "braced-dev"),
    Case("bare-dollar", dev("substitutions: {n: bare-dev}\nesphome:\n  name: $n\n"), "bare-dev"),
    Case(
        "spliced",
        dev("substitutions: {a: pre, b: 7}\nesphome:\n  name: ${a}-$b-x\n"),
        "pre-7-x",
    ),
    Case(
        "refer-to-each-other-out-of-order",
        dev("substitutions:\n  a: ${b}-x\n  b: y\nesphome:\n  name: $a\n"),
        "y-x",
    ),
    Case(
        "dollar-in-the-key",
        dev("substitutions:\n  $n: dollar-key\nesphome:\n  name: $n\n"),
        "dollar-key",
    ),
    Case(
        "friendly-name",
        dev(
            "substitutions: {room: Den}\n"
            "esphome:\n  name: den\n  friendly_name: ${room} Lamp / Left\n"
        ),
        "den",
        friendly="Den Lamp \u2044 Left",
    ),
    Case(
        "package-substitutions",
        dev(
            "packages:\n  p: !include pkg.yaml\nesphome:\n  name: ${n}\n",
            pkg="substitutions:\n  n: from-package\n  title: Package Title\n",
        ),
        "from-package",
    ),
    Case(
        "main-substitutions-win",
        dev(
            "substitutions: {n: main-sub}\npackages:\n  p: !include pkg.yaml\n"
            "esphome:\n  name: ${n}\n  friendly_name: $title\n",
            pkg="substitutions:\n  n: package-sub\n  title: Package Title\n",
        ),
        "main-sub",
        friendly="Package Title",
    ),
    Case(
        "name-from-a-package",
        dev(
            "substitutions: {n: set-in-main}\npackages:\n  core: !include core.yaml\n",
            core="esphome:\n  name: ${n}\n  friendly_name: Core\n",
        ),
        "set-in-main",
        friendly="Core",
    ),
    Case(
        "later-package-wins",
        dev(
            "packages:\n  a: !include a.yaml\n  b: !include b.yaml\n",
            a="esphome:\n  name: from-a\n",
            b="esphome:\n  name: from-b\n",
        ),
        "from-b",
    ),
    Case(
        "main-block-wins",
        dev(
            "packages:\n  a: !include a.yaml\nesphome:\n  name: from-main\n",
            a="esphome:\n  name: from-a\n  friendly_name: From A\n",
        ),
        "from-main",
        friendly="From A",
    ),
    Case(
        "include-vars",
        dev(
            "packages:\n  room: !include {file: rooms/room.yaml, vars: {room: attic}}\n",
            rooms__room="esphome:\n  name: ${room}-node\n",
        ),
        "attic-node",
    ),
    Case(
        "include-defaults-under-vars",
        dev(
            "packages:\n  room: !include {file: room.yaml, vars: {kind: lamp}}\n",
            room="defaults: {room: cellar, kind: sensor}\nesphome:\n  name: ${room}-${kind}\n",
        ),
        "cellar-lamp",
    ),
    Case(
        "nested-packages-pass-vars-down",
        dev(
            "packages:\n  outer: !include {file: outer.yaml, vars: {room: hall}}\n",
            outer="packages:\n  inner: !include {file: inner.yaml, vars: {who: '${room}-inner'}}\n",
            inner="substitutions:\n  title: Inner ${who}\nesphome:\n  name: ${who}\n"
            "  friendly_name: $title\n",
        ),
        "hall-inner",
        friendly="Inner hall-inner",
    ),
    Case(
        "substitutions-from-a-file",
        dev("substitutions: !include subs.yaml\nesphome:\n  name: $n\n", subs="n: from-file\n"),
        "from-file",
    ),
    Case(
        "include-path-from-a-substitution",
        dev(
            "substitutions: {model: b}\npackages:\n  model: !include models/${model}.yaml\n",
            models__a="esphome:\n  name: model-a\n",
            models__b="esphome:\n  name: model-b\n",
        ),
        "model-b",
    ),
    Case(
        "include-dir-named-packages",
        dev(
            "packages: !include_dir_named pkgs\n",
            pkgs__core="esphome:\n  name: ${n}\n",
            pkgs__subs="substitutions: {n: dir-named}\n",
        ),
        "dir-named",
    ),
    Case(
        "merge-key",
        dev("<<: !include named.yaml\n", named="esphome:\n  name: merged-in\n"),
        "merged-in",
    ),
    Case(
        "merge-key-own-keys-win",
        dev("esphome:\n  name: own\n<<: !include named.yaml\n", named="esphome:\n  name: merged\n"),
        "own",
    ),
    Case(
        "front-matter",
        {"dev.yaml": "title: meta\n---\n" + MERGE_BASE + "esphome:\n  name: second-doc\n"},
        "second-doc",
    ),
    Case(
        "top-level-include-with-vars",
        {
            "dev.yaml": "!include {file: inner.yaml, vars: {n: top-var}}\n",
            "inner.yaml": MERGE_BASE + "esphome:\n  name: ${n}\n",
        },
        "top-var",
    ),
    Case(
        "package-condition-false",
        dev(
            "substitutions: {flag: 'no'}\n"
            "packages:\n  extra: !include {file: extra.yaml, condition: '${flag}'}\n"
            "esphome:\n  friendly_name: Kept\n  name: kept\n",
            extra="esphome:\n  friendly_name: Extra\n",
        ),
        "kept",
        friendly="Kept",
    ),
    Case(
        "package-condition-true",
        dev(
            "substitutions: {flag: 'yes'}\n"
            "packages:\n  extra: !include {file: extra.yaml, condition: '${flag}'}\n"
            "esphome:\n  name: kept\n",
            extra="esphome:\n  friendly_name: Extra\n",
        ),
        "kept",
        friendly="Extra",
    ),
    Case(
        "jinja-plain-reference",
        dev("substitutions: {n: jinja-ref}\nesphome:\n  name: ${ n }\n"),
        "jinja-ref",
    ),
    Case(
        "jinja-member-of-a-mapping",
        dev(
            "substitutions:\n  device: {name: member-dev, title: Member}\n"
            "esphome:\n  name: ${ device.name }\n  friendly_name: ${device.title}\n"
        ),
        "member-dev",
        friendly="Member",
    ),
    Case(
        "jinja-number-stays-text-when-spliced",
        dev("substitutions: {n: '123'}\nesphome:\n  name: dev${ n }\n  friendly_name: ${ n }\n"),
        "dev123",
        friendly="123",
    ),
    Case("literal", dev("esphome:\n  name: !literal literal-dev\n"), "literal-dev"),
    Case(
        "literal-is-not-substituted",
        dev("substitutions: {x: y}\nesphome:\n  name: lit\n  friendly_name: !literal ${x}\n"),
        "lit",
        friendly="${x}",
    ),
    Case(
        "substituted-key",
        dev("substitutions: {k: name}\nesphome:\n  ${k}: key-name\n"),
        "key-name",
    ),
    Case(
        "jinja-with-a-hash-in-the-text",
        dev("substitutions: {n: Lamp}\nesphome:\n  name: hash\n  friendly_name: '${ n } #1'\n"),
        "hash",
        friendly="Lamp #1",
    ),
    Case(
        "packages-as-a-list",
        dev(
            "packages:\n  - !include a.yaml\n  - !include b.yaml\n",
            a="esphome:\n  name: from-a\n",
            b="esphome:\n  name: from-b\n",
        ),
        "from-b",
    ),
    Case(
        "include-without-a-yaml-suffix",
        {
            **dev("packages:\n  p: !include pkg.txt\n"),
            "pkg.txt": "esphome:\n  name: from-txt\n",
        },
        "from-txt",
    ),
    Case(
        "packages-from-a-file",
        dev(
            "packages: !include pkgs/all.yaml\n",
            pkgs__all="core: !include core.yaml\n",
            pkgs__core="esphome:\n  name: listed-in-a-file\n",
        ),
        "listed-in-a-file",
    ),
    Case(
        "include-dir-list-packages",
        dev(
            "packages: !include_dir_list pkgs\n",
            pkgs__a="esphome:\n  name: from-a\n",
            pkgs__z__b="esphome:\n  name: from-z-b\n",
        ),
        "from-z-b",
    ),
    Case(
        "include-dir-merge-named",
        dev(
            "esphome: !include_dir_merge_named parts\n",
            parts__a="name: merged-named\n",
            parts__b="friendly_name: Merged\n",
        ),
        "merged-named",
        friendly="Merged",
    ),
    Case(
        "merge-key-list-first-wins",
        dev(
            "<<: [!include a.yaml, !include b.yaml]\n",
            a="esphome:\n  name: from-a\n",
            b="esphome:\n  name: from-b\n  friendly_name: From B\n",
        ),
        "from-a",
    ),
    Case(
        "merge-key-include-with-vars",
        dev("<<: !include {file: v.yaml, vars: {n: merge-var}}\n", v="esphome:\n  name: ${n}\n"),
        "merge-var",
    ),
    Case(
        "var-referring-to-a-sibling-and-the-parent",
        dev(
            "substitutions: {site: north}\n"
            "packages:\n  p: !include {file: p.yaml, vars: {a: '${b}-x', b: '${site}'}}\n",
            p="esphome:\n  name: ${a}\n",
        ),
        "north-x",
    ),
    Case("number-as-name", dev("esphome:\n  name: 0x10\n")),
    Case("jinja-constant", dev("substitutions: {none: x}\nesphome:\n  name: ${ none }\n")),
    Case(
        "var-left-undefined",
        dev(
            "packages:\n  p: !include {file: p.yaml, vars: {a: '${nowhere}'}}\n",
            p="esphome:\n  name: ${a}\n",
        ),
    ),
    Case(
        "removed",
        dev("packages:\n  p: !include p.yaml\nesphome: !remove\n", p="esphome:\n  name: p\n"),
    ),
    Case("package-not-a-mapping", dev("esphome:\n  name: x\npackages:\n  p: 5\n")),
    Case("packages-not-a-mapping", dev("esphome:\n  name: x\npackages: 5\n")),
    Case("substitutions-not-a-mapping", dev("substitutions: 5\nesphome:\n  name: x\n")),
    Case(
        "package-substitutions-not-a-mapping",
        dev("esphome:\n  name: x\npackages:\n  p: !include p.yaml\n", p="substitutions: [1]\n"),
    ),
    Case(
        "condition-not-a-boolean",
        dev(
            "esphome:\n  name: x\npackages:\n  p: !include {file: p.yaml, condition: maybe}\n",
            p="logger:\n",
        ),
    ),
    Case(
        "include-path-with-an-undefined-substitution",
        dev(
            "esphome:\n  name: x\npackages:\n  m: !include models/${nowhere}.yaml\n",
            models__a="logger:\n",
        ),
    ),
    Case(
        "mac-suffix",
        dev("esphome:\n  name: with-mac\n  name_add_mac_suffix: yes\n"),
        "with-mac",
        mac_suffix=True,
    ),
    # The stem: ESPHome refuses the name, or it cannot be known here.
    Case("no-name", dev("esphome:\n  friendly_name: Nameless\n"), friendly="Nameless"),
    Case("no-esphome-block", dev("logger:\n")),
    Case("undefined-substitution", dev("esphome:\n  name: ${nowhere}\n")),
    Case("upper-case", dev("esphome:\n  name: Upper\n")),
    Case("too-long", dev("esphome:\n  name: " + "a" * 32 + "\n")),
    Case(
        "too-long-with-mac-suffix",
        dev("esphome:\n  name: " + "a" * 25 + "\n  name_add_mac_suffix: true\n"),
        mac_suffix=True,
    ),
    Case("lambda", dev("esphome:\n  name: !lambda 'return \"x\";'\n")),
    Case("unknown-tag", dev("esphome:\n  name: !unheard-of x\n")),
    Case(
        "invalid-substitution-name",
        dev("substitutions: {1st: one, n: fine}\nesphome:\n  name: $n\n"),
    ),
    # Known here as ESPHome would know it, but ESPHome reads more than we do.
    Case("env-var", dev("esphome:\n  name: !env_var DEV_NAME env-dev\n"), oracle=False),
    Case(
        "jinja-filter",
        dev("substitutions: {n: filtered}\nesphome:\n  name: ${ n | lower }\n"),
        oracle=False,
    ),
    Case(
        "friendly-name-too-long",
        dev("esphome:\n  name: long\n  friendly_name: " + "x" * 121 + "\n"),
        "long",
        oracle=False,  # ESPHome refuses the file
    ),
    Case(
        "jinja-reference-to-a-jinja-name",
        dev("esphome:\n  name: ${ range }\n"),
        oracle=False,  # a function, which ESPHome would then refuse
    ),
    Case(
        "unknown-tag-elsewhere",
        dev("esphome:\n  name: still-known\nsensor: !unheard-of x\n"),
        "still-known",
        oracle=False,  # ESPHome refuses the whole file
    ),
    # A remote package: the file's own name and substitutions outrank it; nothing else does.
    Case(
        "remote-package-shorthand",
        dev(
            "esphome:\n  name: local-name\n  friendly_name: Local\n"
            "packages:\n  remote: github://esphome/firmware/base.yaml@main\n"
        ),
        "local-name",
        friendly="Local",
        oracle=False,  # it would fetch the package
    ),
    Case(
        "remote-package-url",
        dev(
            "substitutions: {n: local-name, f: Local}\n"
            "esphome:\n  name: $n\n  friendly_name: ${f} Plug\n  name_add_mac_suffix: false\n"
            "packages:\n  remote:\n    url: https://github.com/example/pkgs\n    file: x.yaml\n"
        ),
        "local-name",
        friendly="Local Plug",
        oracle=False,
    ),
    Case(
        "remote-package-adopted-device",
        dev(
            "substitutions:\n  name: esphome-web-a1b2c3\n  friendly_name: Kitchen Plug\n"
            "packages:\n  esphome.bluetooth-proxy: "
            "github://esphome/bluetooth-proxies/esp32-generic/esp32-generic.yaml@main\n"
            "esphome:\n  name: ${name}\n  name_add_mac_suffix: false\n"
            "  friendly_name: ${friendly_name}\n"
        ),
        "esphome-web-a1b2c3",
        friendly="Kitchen Plug",
        oracle=False,
    ),
    Case(
        "remote-package-sets-the-name",
        dev(
            "substitutions: {n: local}\n"
            "packages:\n  remote: github://esphome/firmware/base.yaml@main\n"
        ),
        oracle=False,
    ),
    Case(
        "remote-package-and-a-substitution-of-a-local-package",
        dev(
            "esphome:\n  name: ${n}\n"
            "packages:\n  local: !include p.yaml\n"
            "  remote: github://esphome/firmware/base.yaml@main\n",
            p="substitutions: {n: from-local-package}\n",
        ),
        oracle=False,  # the remote package, declared later, may set n
    ),
    Case(
        "remote-package-and-a-substitution-defined-remotely",
        dev(
            "substitutions: {n: '${base}-x'}\nesphome:\n  name: ${n}\n"
            "packages:\n  remote: github://esphome/firmware/base.yaml@main\n"
        ),
        oracle=False,
    ),
    Case(
        "remote-package-and-a-mac-suffix-it-may-set",
        dev(
            "esphome:\n  name: " + "a" * 26 + "\n"
            "packages:\n  remote: github://esphome/firmware/base.yaml@main\n"
        ),
        "a" * 26,
        oracle=False,
    ),
]

OTA = "ota:\n  - platform: esphome\n    password: {}\n"
OTA_CASES = [
    Case("plain", dev("esphome: {name: dev}\n" + OTA.format("plain-pw")), "dev", ota="plain-pw"),
    Case(
        "secret",
        dev("esphome: {name: dev}\n" + OTA.format("!secret ota_pw")),
        "dev",
        ota="root-ota-pw",
    ),
    Case(
        "secret-beside-the-included-file",
        dev(
            "esphome: {name: dev}\npackages:\n  ota: !include sub/ota.yaml\n",
            sub__ota=OTA.format("!secret ota_pw"),
            sub__secrets="ota_pw: beside-ota-pw\n",
        ),
        "dev",
        ota="beside-ota-pw",
    ),
    Case(
        "secret-of-the-folder-without-one-beside",
        dev(
            "esphome: {name: dev}\npackages:\n  ota: !include sub/ota.yaml\n",
            sub__ota=OTA.format("!secret ota_pw"),
        ),
        "dev",
        ota="root-ota-pw",
    ),
    Case(
        "substituted",
        dev("substitutions: {pw: sub-pw}\nesphome: {name: dev}\n" + OTA.format("${pw}")),
        "dev",
        ota="sub-pw",
    ),
    Case("number", dev("esphome: {name: dev}\n" + OTA.format("4711")), "dev", ota="4711"),
    Case("empty", dev("esphome: {name: dev}\n" + OTA.format('""')), "dev"),
    Case("no-password", dev("esphome: {name: dev}\nota:\n  - platform: esphome\n"), "dev"),
    Case(
        "include-dir-merge-list",
        dev(
            "esphome: {name: dev}\nota: !include_dir_merge_list otas\n",
            otas__a="- platform: esphome\n  password: dir-pw\n",
            otas__b="- platform: web_server\n",
        ),
        "dev",
        ota="dir-pw",
        oracle=False,  # web_server OTA wants a web_server
    ),
    Case(
        "platform-from-a-substitution",
        dev(
            "substitutions: {p: esphome}\nesphome: {name: dev}\n"
            "ota:\n  - platform: $p\n    password: sub-platform-pw\n"
        ),
        "dev",
        ota="sub-platform-pw",
    ),
    Case("no-ota", dev("esphome: {name: dev}\n"), "dev"),
    Case(
        "package-and-main-merge",
        dev(
            "esphome: {name: dev}\npackages:\n  o: !include o.yaml\nota:\n  - platform: esphome\n",
            o=OTA.format("!secret ota_pw"),
        ),
        "dev",
        ota="root-ota-pw",
    ),
    Case(
        "differing-passwords",
        dev(
            "esphome: {name: dev}\npackages:\n  o: !include o.yaml\n" + OTA.format("main-pw"),
            o=OTA.format("package-pw"),
        ),
        "dev",
        oracle=False,  # ESPHome refuses the file
    ),
    Case(
        "old-mapping-form",
        dev("esphome: {name: dev}\nota:\n  password: old-pw\n"),
        "dev",
        ota="old-pw",
        oracle=False,  # ESPHome 2026 wants a list of platforms
    ),
    Case(
        "old-mapping-form-with-platform",
        dev("esphome: {name: dev}\nota:\n  platform: esphome\n  password: old-pw2\n"),
        "dev",
        ota="old-pw2",
        oracle=False,
    ),
]

API = "api:\n  encryption:\n    key: {}\n"
API_CASES = [
    Case("plain", dev("esphome: {name: dev}\n" + API.format(KEY_B)), "dev", api=KEY_B),
    Case("secret", dev("esphome: {name: dev}\n" + API.format("!secret api_key")), "dev", api=KEY_A),
    Case(
        "from-a-package",
        dev(
            "esphome: {name: dev}\npackages:\n  a: !include a.yaml\n",
            a=API.format("!secret api_key"),
        ),
        "dev",
        api=KEY_A,
    ),
    Case("no-api", dev("esphome: {name: dev}\n"), "dev"),
    Case(
        "removed-by-the-main-file",
        dev(
            "esphome: {name: dev}\npackages:\n  a: !include a.yaml\napi: !remove\n",
            a=API.format("!secret api_key"),
        ),
        "dev",
    ),
    Case("bare-api", dev("esphome: {name: dev}\napi:\n"), "dev"),
    Case("key-provisioned-at-run-time", dev("esphome: {name: dev}\napi:\n  encryption:\n"), "dev"),
    Case(
        "not-base64", dev("esphome: {name: dev}\n" + API.format("not*base64")), "dev", oracle=False
    ),
    Case("too-short", dev("esphome: {name: dev}\n" + API.format("c2hvcnQ=")), "dev", oracle=False),
    Case(
        "all-zero", dev("esphome: {name: dev}\n" + API.format("A" * 43 + "=")), "dev", oracle=False
    ),
]

ALL_CASES = [
    *(pytest.param(case, id=f"name-{case.id}") for case in NAME_CASES),
    *(pytest.param(case, id=f"ota-{case.id}") for case in OTA_CASES),
    *(pytest.param(case, id=f"api-{case.id}") for case in API_CASES),
]


def read_case(root: Path, case: Case) -> DeviceConfig:
    return read_device_config(case.tree(root), "dev.yaml")


@pytest.mark.parametrize("case", ALL_CASES)
def test_reads_what_esphome_would(tmp_path: Path, case: Case) -> None:
    config = read_case(tmp_path, case)

    assert config.yaml_name == "dev.yaml"
    assert (config.name, config.name_from_stem) == (
        (case.name, False) if case.name is not None else ("dev", True)
    )
    assert config.friendly_name == case.friendly
    assert config.name_add_mac_suffix is case.mac_suffix
    assert config.ota_password == case.ota
    assert config.api_encryption_key == case.api


def test_remote_packages_keep_the_file_s_own_name_and_local_secrets(
    tmp_path: Path,
) -> None:
    case = Case(
        "remote",
        dev(
            "esphome:\n  name: local-name\n  friendly_name: Local\n"
            "packages:\n  remote: github://esphome/firmware/base.yaml@main\n"
            + OTA.format("!secret ota_pw")
            + API.format("!secret api_key")
            + "sensor:\n  - platform: template\n    name: ${defined_remotely}\n"
        ),
    )
    config = read_case(tmp_path, case)

    assert (config.name, config.name_from_stem, config.friendly_name) == (
        "local-name",
        False,
        "Local",
    )
    assert (config.ota_password, config.api_encryption_key) == ("root-ota-pw", KEY_A)


def test_the_repr_never_shows_secrets(tmp_path: Path) -> None:
    config = read_case(tmp_path, API_CASES[1])
    ota = read_case(tmp_path / "ota", OTA_CASES[1])

    for shown in (repr(config), str(config), repr(ota)):
        assert KEY_A not in shown
        assert "root-ota-pw" not in shown
        assert "case-password" not in shown
    assert config.api_encryption_key == KEY_A
    assert ota.ota_password == "root-ota-pw"


# yaml name: name, from stem, friendly name, mac suffix, OTA password, API key
FIXTURE_DEVICES = {
    FIXTURES: {
        "Invalid_Name.yaml": ("Invalid_Name", True, None, False, None, None),
        "attic.yaml": (
            "attic",
            False,
            "Attic \u2044 Loft",
            False,
            "attic-ota-pw-from-beside",
            None,
        ),
        "garage.yaml": (
            "garage-door",
            False,
            "Garage Door",
            True,
            "4711",
            "Z2FyYWdlLWtleS0zMi1ieXRlcy1sb25nLXh4eHh4eCE=",
        ),
        "kitchen.yaml": ("kitchen-sensor", False, "kitchen room", False, "kitchen-ota-pw", None),
        "living-room.yaml": (
            "living-room",
            False,
            "Living Room",
            False,
            "living-room-ota-pw",
            "bGl2aW5nLXJvb20ta2V5LTMyLWJ5dGVzLWxvbmchISE=",
        ),
    },
    BUNDLE_FIXTURES: {
        "esp32-demo.yaml": (
            "esp32-demo",
            False,
            "ESP32 Demo",
            False,
            "esp32-ota-secret",
            "Q2ZrJ0c1bVZ0b3dUaW1lc0FyZUdvb2RGb3JUZXN0czE=",
        ),
        "esp8266-demo.yaml": (
            "esp8266-demo",
            False,
            "ESP8266 Demo",
            False,
            "esp8266-ota-secret",
            "pRn0n0x3nWs0mGdqK0yZEiOSrN2uMoDAXdnnrsQpZ4U=",
        ),
        "failing-device.yaml": ("failing-device", False, None, False, None, None),
        "slow-device.yaml": ("slow-device", False, None, False, None, None),
    },
}


@pytest.mark.parametrize("folder", FIXTURE_DEVICES, ids=lambda folder: folder.name)
def test_fixture_devices(folder: Path) -> None:
    configs = list_device_configs(folder)

    assert {
        config.yaml_name: (
            config.name,
            config.name_from_stem,
            config.friendly_name,
            config.name_add_mac_suffix,
            config.ota_password,
            config.api_encryption_key,
        )
        for config in configs
    } == FIXTURE_DEVICES[folder]
    assert list_device_configs(folder) == configs  # a second read compares equal


def test_the_files_of_a_fixture_device() -> None:
    attic = read_device_config(FIXTURES, "attic.yaml")

    assert sorted(attic.files) == [
        "attic.yaml",
        "common/wifi.yaml",
        "devices/attic/ota.yaml",
        "devices/attic/secrets.yaml",
        "secrets.yaml",
    ]


# --- the fingerprint ----------------------------------------------------------------------

FONT = bytes(range(256)) * 4
FINGERPRINTED = {
    "dev.yaml": MERGE_BASE
    + "esphome:\n  name: dev\npackages:\n  wifi: !include common/wifi.yaml\n"
    + "  ota: !include sub/ota.yaml\n"
    + "font:\n  - file: fonts/x.ttf\n    id: f\n"
    + OTA.format("!secret ota_pw"),
    "base.yaml": "esp8266:\n  board: d1_mini\n",
    "common/wifi.yaml": "wifi:\n  ssid: !secret wifi_ssid\n  password: !secret wifi_password\n",
    "sub/ota.yaml": "ota:\n  - platform: esphome\n    password: !secret sub_pw\n",
    "sub/secrets.yaml": "sub_pw: sub-ota\nsub_unused: nope\n",
    "secrets.yaml": SECRETS,
    "unrelated.yaml": "esphome:\n  name: unrelated\n",
}


def fingerprinted(root: Path, **changes: str | bytes) -> DeviceConfig:
    files: dict[str, str | bytes] = {**FINGERPRINTED, "fonts/x.ttf": FONT}
    files.update({name.replace("__", "/"): value for name, value in changes.items()})
    return read_device_config(make_tree(root, files), "dev.yaml")


def test_fingerprint_covers_every_file_the_build_uses(tmp_path: Path) -> None:
    config = fingerprinted(tmp_path)

    assert sorted(config.files) == [
        "base.yaml",
        "common/wifi.yaml",
        "dev.yaml",
        "fonts/x.ttf",
        "secrets.yaml",
        "sub/ota.yaml",
        "sub/secrets.yaml",
    ]
    for name in ("dev.yaml", "common/wifi.yaml", "fonts/x.ttf"):
        assert config.files[name] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    # The secrets files count with the used secrets only, never as the whole file.
    assert config.files["secrets.yaml"] != hashlib.sha256(SECRETS.encode()).hexdigest()
    pairs = json.dumps(sorted(config.files.items())).encode()
    assert config.fingerprint == hashlib.sha256(pairs).hexdigest()
    with pytest.raises(TypeError):
        config.files["dev.yaml"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="read-again"),
        pytest.param(
            {"secrets.yaml": "\n".join(reversed(SECRETS.strip().splitlines())) + "\n"},
            id="secrets-reordered",
        ),
        pytest.param(
            {"secrets.yaml": SECRETS.replace("not-this-device", "changed") + "more: x\n"},
            id="unrelated-secret-changed",
        ),
        pytest.param(
            {"secrets.yaml": SECRETS.replace("ota_pw: root-ota-pw", "ota_pw: 'root-ota-pw'")},
            id="secret-quoted-differently",
        ),
        pytest.param({"sub__secrets.yaml": "sub_unused: other\nsub_pw: sub-ota\n"}, id="beside"),
        pytest.param({"unrelated.yaml": "esphome:\n  name: changed\n"}, id="other-device"),
        pytest.param({"fonts__unused.ttf": b"not referenced"}, id="unreferenced-file"),
    ],
)
def test_fingerprint_ignores_what_the_build_does_not_use(
    tmp_path: Path, changes: dict[str, str | bytes]
) -> None:
    before = fingerprinted(tmp_path / "before")
    after = fingerprinted(tmp_path / "after", **changes)

    assert after.files == before.files
    assert after.fingerprint == before.fingerprint


@pytest.mark.parametrize(
    ("changes", "changed"),
    [
        pytest.param(
            {"common__wifi.yaml": "# changed\n" + FINGERPRINTED["common/wifi.yaml"]},
            {"common/wifi.yaml"},
            id="include",
        ),
        pytest.param(
            {"secrets.yaml": SECRETS.replace("case-password", "new-password")},
            {"secrets.yaml"},
            id="used-secret",
        ),
        pytest.param(
            {"sub__secrets.yaml": "sub_pw: new\n"}, {"sub/secrets.yaml"}, id="secret-beside"
        ),
        pytest.param({"fonts__x.ttf": FONT[::-1]}, {"fonts/x.ttf"}, id="font"),
        pytest.param(
            {"dev.yaml": FINGERPRINTED["dev.yaml"] + "logger:\n"}, {"dev.yaml"}, id="device-yaml"
        ),
        pytest.param(
            {"dev.yaml": FINGERPRINTED["dev.yaml"] + "<<: !include extra.yaml\n", "extra.yaml": ""},
            {"dev.yaml", "extra.yaml"},
            id="new-include",
        ),
    ],
)
def test_fingerprint_changes_and_files_name_the_change(
    tmp_path: Path, changes: dict[str, str | bytes], changed: set[str]
) -> None:
    before = fingerprinted(tmp_path / "before")
    after = fingerprinted(tmp_path / "after", **changes)

    assert after.fingerprint != before.fingerprint
    differing = {
        name
        for name in before.files.keys() | after.files.keys()
        if before.files.get(name) != after.files.get(name)
    }
    assert differing == changed


def test_secrets_salt_keys_only_the_secrets_digests(tmp_path: Path) -> None:
    plain = fingerprinted(tmp_path)
    salted = read_device_config(tmp_path, "dev.yaml", secrets_salt=b"per-installation")

    for name, digest in plain.files.items():
        assert (salted.files[name] == digest) is ("secrets" not in name), name
    assert salted.fingerprint != plain.fingerprint


# --- what is refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "links", "message"),
    [
        pytest.param({"dev.yaml": "esphome: [\n"}, [], "not valid YAML", id="invalid-yaml"),
        pytest.param(
            {"dev.yaml": "a: !include gone.yaml\n"}, [], "gone.yaml", id="missing-include"
        ),
        pytest.param({"dev.yaml": "a: !secret nowhere\n"}, [], "'nowhere'", id="undefined-secret"),
        pytest.param(
            {"dev.yaml": "esphome:\n  name: a\nesphome:\n  name: b\n"},
            [],
            "duplicate key 'esphome'",
            id="duplicate-key",
        ),
        pytest.param(
            {"dev.yaml": "a: 1\n---\nb: 2\n---\nc: 3\n"}, [], "3 YAML documents", id="documents"
        ),
        pytest.param(
            {"dev.yaml": "<<: !include a.yaml\n", "a.yaml": "<<: !include dev.yaml\n"},
            [],
            "nest more than",
            id="include-cycle",
        ),
        pytest.param({"dev.yaml": "a: &x [1, *x]\n"}, [], "contains it", id="recursive-alias"),
        pytest.param(
            {
                "dev.yaml": "substitutions: {s: x}\nl0: &l0 [$s, $s, $s, $s, $s, $s, $s, $s]\n"
                + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 8)}]\n" for i in range(1, 8))
            },
            [],
            "too large",
            id="alias-bomb",
        ),
        pytest.param({"dev.yaml": "a: !!int abc\n"}, [], "is not a valid", id="bad-int"),
        pytest.param(
            {"dev.yaml": "font:\n  - file: fonts/x.ttf\n"},
            [("fonts/x.ttf", "../secrets.yaml")],
            "secrets file",
            id="font-linked-to-secrets",
        ),
        pytest.param(
            {"dev.yaml": "a: !include pkg.yaml\n"},
            [("pkg.yaml", "sub/secrets.yaml")],
            "secrets",
            id="include-linked-to-secrets",
        ),
        pytest.param({}, [("dev.yaml", "secrets.yaml")], "secrets file", id="device-is-secrets"),
        pytest.param(
            {"dev.yaml": "a: !include pkg.yaml\n"},
            [("pkg.yaml", "../outside.yaml")],
            "outside",
            id="include-leaving-the-folder",
        ),
    ],
)
def test_unreadable_configurations_raise_bundle_error(
    tmp_path: Path, files: dict[str, str], links: list[tuple[str, str]], message: str
) -> None:
    (tmp_path / "outside.yaml").write_text(f"leak: {SECRETS}\n")
    root = make_tree(
        tmp_path / "config",
        {"secrets.yaml": SECRETS, "sub/secrets.yaml": "sub_pw: MARKER-sub\n", **files},
    )
    for path, target in links:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).symlink_to(target)

    with pytest.raises(BundleError, match=message) as raised:
        read_device_config(root, "dev.yaml")
    assert "case-password" not in str(raised.value)
    assert "MARKER-sub" not in str(raised.value)


@pytest.mark.parametrize(
    ("swap", "message"),
    [
        pytest.param("replace", "changed while it was read", id="replaced-same-size"),
        pytest.param("grow", "changed while it was read", id="grown"),
        pytest.param("remove", "cannot be read", id="removed"),
        pytest.param("symlink", "cannot be read", id="now-a-link-to-the-secrets"),
        pytest.param("hardlink", "changed while it was read", id="now-the-secrets-file"),
    ],
)
def test_a_file_changed_after_the_scan_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str, message: str
) -> None:
    root = make_tree(
        tmp_path,
        {"dev.yaml": "font:\n  - file: x.ttf\n", "x.ttf": "font", "secrets.yaml": SECRETS},
    )

    def scan_then_swap(config_dir: Path, yaml_name: str) -> object:
        scan = scan_config(config_dir, yaml_name)
        font = root / "x.ttf"
        if swap == "grow":
            font.write_text("font and more")
            return scan
        font.rename(root / "old.ttf")  # keeps its inode in use
        if swap == "replace":
            font.write_text("font")
        elif swap == "symlink":
            font.symlink_to("secrets.yaml")
        elif swap == "hardlink":
            font.hardlink_to(root / "secrets.yaml")
        return scan

    monkeypatch.setattr(f"{device_config_module.__name__}.scan_config", scan_then_swap)
    with pytest.raises(BundleError, match=message) as raised:
        read_device_config(root, "dev.yaml")
    assert "case-password" not in str(raised.value)


def test_an_absolute_include_inside_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "config"
    make_tree(
        root,
        {
            "secrets.yaml": SECRETS,
            "dev.yaml": f"packages:\n  core: !include {root}/pkgs/core.yaml\n",
            "pkgs/core.yaml": "esphome:\n  name: absolute\n",
        },
    )

    config = read_device_config(root, "dev.yaml")

    assert (config.name, sorted(config.files)) == ("absolute", ["dev.yaml", "pkgs/core.yaml"])


def test_list_device_configs_reads_each_device_and_skips_the_broken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_tree(
        tmp_path,
        {
            "secrets.yaml": SECRETS,
            "b.yaml": "esphome:\n  name: bee\n",
            "a.yml": "esphome:\n  name: ay\n",
            "broken.yaml": "esphome: [\n",
            "no-secret.yaml": "wifi:\n  password: !secret missing_key\n",
            ".hidden.yaml": "esphome:\n  name: hidden\n",
            "Secrets.yml": "x: 1\n",
            "sub/c.yaml": "esphome:\n  name: sub\n",
            "notes.txt": "esphome:\n  name: notes\n",
        },
    )
    (root / "sneaky.yaml").symlink_to("secrets.yaml")

    with caplog.at_level(logging.WARNING):
        configs = list_device_configs(root)

    assert [(c.yaml_name, c.name) for c in configs] == [("a.yml", "ay"), ("b.yaml", "bee")]
    skipped = {r.args[0] for r in caplog.records if isinstance(r.args, tuple) and r.args}
    assert skipped == {"broken.yaml", "no-secret.yaml", "sneaky.yaml"}
    assert "case-password" not in caplog.text
    assert list_device_configs(tmp_path / "missing") == []


def test_list_device_configs_survives_an_unexpected_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_tree(tmp_path, {"a.yaml": "esphome:\n  name: ay\n", "b.yaml": "x: 1\n"})
    real_read = device_config_module._read

    def read_or_fail(config_dir: Path, yaml_name: str, salt: bytes) -> DeviceConfig:
        if yaml_name == "b.yaml":
            raise ValueError("a bug")
        return real_read(config_dir, yaml_name, salt)

    monkeypatch.setattr(device_config_module, "_read", read_or_fail)
    with caplog.at_level(logging.ERROR):
        configs = list_device_configs(root)

    assert [config.name for config in configs] == ["ay"]
    assert "b.yaml" in caplog.text
    assert "a bug" in caplog.text


# --- ESPHome as the oracle ------------------------------------------------------------------

ORACLE = """
import json, logging, sys
from pathlib import Path
from esphome import config as esphome_config
from esphome.core import CORE

logging.disable(logging.CRITICAL)
out, *configs = sys.argv[1:]
results = {}
for name in configs:
    CORE.reset()
    CORE.config_path = Path(name).resolve()
    try:
        conf = esphome_config.read_config({})
    except Exception:  # ESPHome crashes on some invalid files
        conf = None
    if conf is None:
        results[name] = None
        continue
    esp = conf["esphome"]
    ota = [o for o in conf.get("ota", []) if o.get("platform") == "esphome"]
    results[name] = {
        "name": str(esp["name"]),
        "friendly_name": str(esp.get("friendly_name") or "") or None,
        "name_add_mac_suffix": bool(esp["name_add_mac_suffix"]),
        "ota_password": next((str(o["password"]) for o in ota if o.get("password")), None),
        "api_encryption_key": ((conf.get("api") or {}).get("encryption") or {}).get("key"),
    }
Path(out).write_text(json.dumps(results))
"""


def _ours(config: DeviceConfig) -> dict[str, object]:
    return {
        "name": config.name,
        "friendly_name": config.friendly_name,
        "name_add_mac_suffix": config.name_add_mac_suffix,
        "ota_password": config.ota_password,
        "api_encryption_key": config.api_encryption_key,
    }


@pytest.mark.real_builder
def test_cases_agree_with_esphome(tmp_path: Path) -> None:
    if not BUILDER_PYTHON.exists():
        pytest.skip(f"{BUILDER_PYTHON} is missing: run scripts/setup (ESPHome is the oracle)")
    paths = [folder / name for folder, devices in FIXTURE_DEVICES.items() for name in devices]
    for case in (*NAME_CASES, *OTA_CASES, *API_CASES):
        if case.oracle:
            kind = "name" if case in NAME_CASES else "ota" if case in OTA_CASES else "api"
            paths.append(case.tree(tmp_path / f"{kind}-{case.id}") / "dev.yaml")
    out = tmp_path / "oracle.json"
    result = subprocess.run(
        [BUILDER_PYTHON, "-c", ORACLE, out, *paths],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    theirs = json.loads(out.read_text())

    compared = 0
    for path in paths:
        ours = read_device_config(path.parent, path.name)
        expected = theirs[str(path)]
        if expected is None:  # ESPHome refuses the configuration: no name to match
            assert ours.name_from_stem, f"ESPHome refuses {path}; we read the name {ours.name}"
            continue
        compared += 1
        assert not ours.name_from_stem, path
        assert _ours(ours) == expected, path
    assert compared >= 45


@pytest.mark.parametrize(
    ("ota", "port"),
    [
        pytest.param("ota:\n  - platform: esphome\n", None, id="default"),
        pytest.param("ota:\n  - platform: esphome\n    port: 3300\n", 3300, id="list-form"),
        pytest.param("ota:\n  - platform: esphome\n    port: '3301'\n", 3301, id="quoted"),
        pytest.param("ota:\n  port: 8300\n", 8300, id="mapping-form"),
        pytest.param("ota:\n  - platform: web_server\n    port: 80\n", None, id="other-platform"),
        pytest.param(
            "ota:\n  - platform: esphome\n    port: 3300\n  - platform: esphome\n    port: 3400\n",
            None,
            id="two-ports",
        ),
        pytest.param("ota:\n  - platform: esphome\n    port: 70000\n", None, id="out-of-range"),
        pytest.param("ota:\n  - platform: esphome\n    port: ${p}\n", 3500, id="substituted"),
    ],
)
def test_the_ota_port_the_yaml_sets(tmp_path: Path, ota: str, port: int | None) -> None:
    (tmp_path / "dev.yaml").write_text(
        "substitutions:\n  p: '3500'\nesphome:\n  name: dev\nesp32:\n  board: esp32dev\n" + ota
    )
    assert read_device_config(tmp_path, "dev.yaml").ota_port == port
