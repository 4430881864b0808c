"""Our bundle writer against ESPHome's own: same members, same manifest, and ESPHome reads ours.

Runs ESPHome from the Device Builder venv (``scripts/setup`` creates it).  A missing venv is
a failure, not a skip: without the oracle these tests prove nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import tarfile
import textwrap

import pytest
import yaml

from custom_components.esphome_remote_build.artifacts import write_config_bundle

pytestmark = pytest.mark.real_builder

BUILDER_BIN = Path(__file__).resolve().parents[2] / ".venv-builder" / "bin"
SECRETS_FILES = {"secrets.yaml", "pkg/secrets.yaml"}

# A device ESPHome validates offline: packages via !include (plain and vars form), a nested
# include, an include folder, secrets beside an included file, a C header and an image.
SAMPLE = {
    "dev.yaml": """\
        esphome:
          name: dev1
          includes:
            - src/my_header.h
        esp32:
          board: esp32dev
        packages:
          wifi: !include common/wifi.yaml
          extra: !include
            file: pkg/extra.yaml
            vars:
              tag: hello
        logger:
        api:
          encryption:
            key: !secret api_key
        ota:
          - platform: esphome
            password: !secret 'ota_pw'
        sensor: !include_dir_merge_list sensors
        image:
          - platform: file
            file: images/logo.png
            id: logo
            type: BINARY
        i2c:
          sda: GPIO21
          scl: GPIO22
        display:
          - platform: ssd1306_i2c
            model: "SSD1306 128x64"
            address: 0x3C
            lambda: |-
              it.image(0, 0, id(logo));
        """,
    "common/wifi.yaml": """\
        wifi:
          ssid: !secret wifi_ssid
          password: !secret "wifi_password"
          ap: !include ap.yaml
        captive_portal:
        """,
    "common/ap.yaml": "ssid: Fallback\npassword: !secret ap_password\n",
    "pkg/extra.yaml": """\
        text_sensor:
          - platform: version
            name: "Version ${tag}"
            icon: !secret pkg_icon
        """,
    "pkg/secrets.yaml": 'pkg_icon: "mdi:chip"\nunused_pkg: nope\n',
    "sensors/a.yaml": "- platform: uptime\n  name: Up A\n",
    "sensors/b.yaml": "- platform: uptime\n  name: Up B\n",
    "src/my_header.h": "#pragma once\n",
    "secrets.yaml": """\
        wifi_ssid: myssid
        wifi_password: mypassword1
        api_key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
        ota_pw: otapw
        ap_password: fallbackpw1
        other_device_pw: never-shipped
        """,
    "other_device.yaml": "esphome:\n  name: other\n",
}
# A 1-bit 8x8 PNG (what Pillow writes for Image.new("1", (8, 8))).
LOGO_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000008000000080100000000ec7483260000000b4944"
    "4154789c63604005000010000139bd8f650000000049454e44ae426082"
)


def _run(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    for name, content in SAMPLE.items():
        path = config / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
    (config / "images").mkdir()
    (config / "images" / "logo.png").write_bytes(LOGO_PNG)
    return config


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        result = []
        for member in tar.getmembers():
            data = tar.extractfile(member)
            assert data is not None
            result.append((member, data.read()))
    return result


def test_our_bundle_matches_esphome_bundle(tmp_path: Path, sample: Path) -> None:
    version = _run(
        BUILDER_BIN / "python", "-c", "import esphome.const as c; print(c.__version__)"
    ).stdout.strip()
    ours = write_config_bundle(
        sample, "dev.yaml", tmp_path / "ours.tar.gz", esphome_version=version
    )
    _run(BUILDER_BIN / "esphome", "bundle", sample / "dev.yaml", "-o", tmp_path / "theirs.tar.gz")

    our_members = _members(ours.path)
    their_members = _members(tmp_path / "theirs.tar.gz")

    # Same members in the same order (manifest, secrets sorted, the rest sorted) ...
    assert [m.name for m, _ in our_members] == [m.name for m, _ in their_members]
    # ... with the same normalised metadata ...
    for (our, _), (their, _) in zip(our_members, their_members, strict=True):
        assert (our.mode, our.mtime, our.uid, our.gid, our.uname, our.gname, our.type) == (
            their.mode,
            their.mtime,
            their.uid,
            their.gid,
            their.uname,
            their.gname,
            their.type,
        )
    # ... and the same content: secrets as data (quoting may differ), the rest byte for byte.
    theirs = {m.name: data for m, data in their_members}
    for member, data in our_members:
        if member.name == "manifest.json":
            continue
        if member.name in SECRETS_FILES:
            assert yaml.safe_load(data) == yaml.safe_load(theirs[member.name]), member.name
        else:
            assert data == theirs[member.name], member.name
    assert b"never-shipped" not in b"".join(data for _, data in our_members)

    our_manifest = json.loads(our_members[0][1])
    their_manifest = json.loads(theirs["manifest.json"])
    # ESPHome lists an include folder in os.walk order; we sort it. Compare the rest exactly.
    assert our_manifest.pop("files")[0] == their_manifest["files"][0] == "dev.yaml"
    assert set(ours.files) == set(their_manifest.pop("files"))
    assert our_manifest == their_manifest
    assert our_manifest["has_secrets"] is True


READER = """
import json, sys
from dataclasses import asdict
from pathlib import Path
from esphome.bundle import extract_bundle, read_bundle_manifest

bundle, target = Path(sys.argv[1]), Path(sys.argv[2])
manifest = read_bundle_manifest(bundle)
config = extract_bundle(bundle, target)
print(json.dumps({"manifest": asdict(manifest), "config": str(config)}))
"""


def test_esphome_reads_extracts_and_validates_our_bundle(tmp_path: Path, sample: Path) -> None:
    ours = write_config_bundle(sample, "dev.yaml", tmp_path / "ours.tar.gz", esphome_version="x")
    target = tmp_path / "extracted"

    read = json.loads(_run(BUILDER_BIN / "python", "-c", READER, ours.path, target).stdout)

    assert read["manifest"] == {
        "manifest_version": 1,
        "esphome_version": "x",
        "config_filename": "dev.yaml",
        "files": ours.files,
        "has_secrets": True,
        "config_dir": str(sample.resolve()),
    }
    assert read["config"] == str(target.resolve() / "dev.yaml")
    extracted = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert extracted == sorted([*ours.files, "manifest.json"])
    # Far from the original folder, ESPHome validates the extracted configuration: every
    # include, secret and file it needs travelled in the bundle.
    _run(BUILDER_BIN / "esphome", "config", target / "dev.yaml")
