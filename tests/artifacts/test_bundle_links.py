"""Links never carry a secrets file into the bundle whole (only its filtered copy ships).

Every vector puts a unique marker into secrets the device does not use (other devices' in
the configuration folder, a sub-folder's, Home Assistant's own one folder up) and reaches
one of those files through a symbolic or hard link under another name.  Whatever happens,
no marker may reach the bundle or the error message; each of these is in fact refused,
naming the offending path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import gzip
import os
from pathlib import Path
import tarfile
import textwrap

import pytest

from custom_components.esphome_remote_build.artifacts import (
    BundleError,
    bundle as bundle_module,
    write_config_bundle,
)
from custom_components.esphome_remote_build.artifacts.config_scan import scan_config

OTHER_DEVICE = "MARKER-other-device-5f1c0a"
SUBFOLDER = "MARKER-subfolder-77e2b9"
HOME_ASSISTANT = "MARKER-home-assistant-9d2e41"
VAULT = "MARKER-vault-30c6d8"
YML = "MARKER-secrets-yml-e41a07"
MARKERS = (OTHER_DEVICE, SUBFOLDER, HOME_ASSISTANT, VAULT, YML)

USES_A_SECRET = "wifi:\n  password: !secret wifi_password\n"


@dataclass
class Vector:
    """A configuration (``files``) plus ``links``: (path, target, kind) inside the config
    folder; a symbolic link's target is as written, a hard link's is relative to the
    config folder.  ``offending`` is the path the refusal must name."""

    files: dict[str, str]
    links: list[tuple[str, str, str]]
    offending: str
    yaml_name: str = "dev.yaml"
    base: dict[str, str] = field(
        default_factory=lambda: {
            "secrets.yaml": f"wifi_password: used-pw\nother_device_pw: {OTHER_DEVICE}\n",
            "pkg/secrets.yaml": f"pkg_pw: {SUBFOLDER}\n",
            "vault/all.yaml": f"vault_pw: {VAULT}\n",
            "secrets.yml": f"yml_pw: {YML}\n",
        }
    )


def _dev(body: str) -> dict[str, str]:
    return {"dev.yaml": USES_A_SECRET + textwrap.dedent(body)}


VECTORS = [
    pytest.param(
        Vector(
            _dev("packages:\n  creds: !include common/creds.yaml\n"),
            [("common/creds.yaml", "../secrets.yaml", "sym")],
            "common/creds.yaml",
        ),
        id="include-symlink",
    ),
    pytest.param(
        Vector(
            _dev("packages:\n  creds: !include common/creds.yaml\n"),
            [("common/creds.yaml", "secrets.yaml", "hard")],
            "common/creds.yaml",
        ),
        id="include-hardlink",
    ),
    pytest.param(
        Vector({}, [("dev.yaml", "secrets.yaml", "sym")], "dev.yaml"),
        id="configuration-is-a-symlink",
    ),
    pytest.param(
        Vector({}, [("dev.yaml", "secrets.yaml", "hard")], "dev.yaml"),
        id="configuration-is-a-hardlink",
    ),
    pytest.param(
        Vector(
            {**_dev("sensor: !include_dir_merge_list sensors\n"), "sensors/a.yaml": "[]\n"},
            [("sensors/creds.yaml", "../secrets.yaml", "sym")],
            "sensors/creds.yaml",
        ),
        id="include-dir-symlink",
    ),
    pytest.param(
        Vector(
            {**_dev("sensor: !include_dir_named sensors\n"), "sensors/a.yaml": "[]\n"},
            [("sensors/creds.yaml", "secrets.yaml", "hard")],
            "sensors/creds.yaml",
        ),
        id="include-dir-hardlink",
    ),
    pytest.param(
        Vector(
            _dev("font:\n  - file: fonts/x.ttf\n    id: f\n"),
            [("fonts/x.ttf", "../secrets.yaml", "sym")],
            "fonts/x.ttf",
        ),
        id="font-symlink",
    ),
    pytest.param(
        Vector(
            _dev("font:\n  - file: fonts/x.ttf\n    id: f\n"),
            [("fonts/x.ttf", "secrets.yaml", "hard")],
            "fonts/x.ttf",
        ),
        id="font-hardlink",
    ),
    pytest.param(
        Vector(
            _dev("packages:\n  creds: !include common/a.yaml\n"),
            [("common/b.yaml", "../secrets.yaml", "sym"), ("common/a.yaml", "b.yaml", "sym")],
            "common/a.yaml",
        ),
        id="symlink-chain",
    ),
    pytest.param(
        Vector(
            _dev("packages:\n  creds: !include common/creds.yaml\n"),
            [("common/creds.yaml", "../secrets.yml", "sym")],
            "common/creds.yaml",
        ),
        id="symlink-to-secrets-yml",
    ),
    pytest.param(
        Vector(
            _dev("packages:\n  creds: !include common/creds.yaml\n"),
            [("common/creds.yaml", "pkg/secrets.yaml", "hard")],
            "common/creds.yaml",
        ),
        id="hardlink-to-a-subfolder-secrets",
    ),
    pytest.param(
        Vector(
            _dev("packages:\n  creds: !include common/creds.yaml\n"),
            [("common/creds.yaml", "../secrets.yaml", "hard")],
            "common/creds.yaml",
        ),
        id="hardlink-to-home-assistant-secrets",
    ),
    pytest.param(
        Vector(
            _dev("packages:\n  creds: !include common/creds.yaml\n"),
            [("common/creds.yaml", "../../secrets.yaml", "sym")],
            "common/creds.yaml",
        ),
        id="symlink-to-home-assistant-secrets",
    ),
    pytest.param(
        Vector(
            _dev("packages:\n  creds: !include vault/all.yaml\n"),
            [("other/secrets.yaml", "../vault/all.yaml", "sym")],
            "vault/all.yaml",
        ),
        id="target-of-a-secrets-symlink-elsewhere",
    ),
    pytest.param(
        Vector(
            {
                **_dev("packages:\n  creds: !include vault/all.yaml\n"),
                "vault/all.yaml": f"wifi_password: used-pw\nvault_pw: {VAULT}\n",
            },
            [("secrets.yaml", "vault/all.yaml", "sym")],
            "vault/all.yaml",
        ),
        id="target-of-the-used-secrets-symlink",
    ),
    pytest.param(
        Vector(
            {**_dev("esphome:\n  includes: [src]\n"), "src/a.h": "#pragma once\n"},
            [("src/creds.h", "secrets.yaml", "hard")],
            "src/creds.h",
        ),
        id="code-include-folder-hardlink",
    ),
    pytest.param(
        Vector(
            {
                **_dev("external_components:\n  - source: comps\n"),
                "comps/mine/__init__.py": "",
            },
            [("comps/mine/creds.py", "../../secrets.yaml", "sym")],
            "comps/mine/creds.py",
        ),
        id="external-component-symlink",
    ),
    pytest.param(
        Vector(
            _dev("substitutions:\n  m: a\npackages:\n  m: !include models/${m}.yaml\n"),
            [("models/a.yaml", "../secrets.yaml", "sym")],
            "models/a.yaml",
        ),
        id="templated-include-symlink",
    ),
]


def _build(tmp_path: Path, vector: Vector) -> Path:
    """Home Assistant's layout: the ESPHome folder inside HA's, which has its own secrets."""
    ha = tmp_path / "ha"
    cfg = ha / "esphome"
    cfg.mkdir(parents=True)
    (ha / "secrets.yaml").write_text(f"ha_token: {HOME_ASSISTANT}\n")
    for name, content in {**vector.base, **vector.files}.items():
        (cfg / name).parent.mkdir(parents=True, exist_ok=True)
        (cfg / name).write_text(content)
    for name, target, kind in vector.links:
        link = cfg / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        if kind == "sym":
            link.symlink_to(target)
        else:
            os.link(cfg / target, link)
    return cfg


def _leaked(data: bytes) -> list[str]:
    return [marker for marker in MARKERS if marker.encode() in data]


@pytest.mark.parametrize("vector", VECTORS)
def test_no_secrets_file_ships_through_a_link(tmp_path: Path, vector: Vector) -> None:
    cfg = _build(tmp_path, vector)
    out = tmp_path / "b.tar.gz"

    refusal: str | None
    try:
        write_config_bundle(cfg, vector.yaml_name, out)
    except BundleError as err:
        refusal = str(err)
    else:
        refusal = None
        with tarfile.open(out, "r:gz") as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member)
                assert data is not None
                assert _leaked(data.read()) == [], member.name
        assert _leaked(gzip.decompress(out.read_bytes())) == []

    assert refusal is not None, "bundled"
    assert vector.offending in refusal
    assert _leaked(refusal.encode()) == []
    assert not out.exists()


def _contents(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_links_to_ordinary_files_inside_the_folder_are_followed(tmp_path: Path) -> None:
    """Shared packages and fonts linked in from elsewhere in the folder ship as usual."""
    vector = Vector(
        {
            **_dev("packages:\n  wifi: !include common/wifi.yaml\nfont:\n  - file: f/a.ttf\n"),
            "shared/wifi.yaml": "wifi:\n  ssid: !secret wifi_password\n",
            "shared/a.ttf": "font bytes",
        },
        [("common/wifi.yaml", "../shared/wifi.yaml", "sym"), ("f/a.ttf", "shared/a.ttf", "hard")],
        "",
    )
    cfg = _build(tmp_path, vector)

    info = write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz")

    contents = _contents(tmp_path / "b.tar.gz")
    assert info.files == ["dev.yaml", "secrets.yaml", "common/wifi.yaml", "f/a.ttf"]
    assert contents["common/wifi.yaml"] == b"wifi:\n  ssid: !secret wifi_password\n"
    assert contents["f/a.ttf"] == b"font bytes"
    assert contents["secrets.yaml"] == b"wifi_password: used-pw\n"


def test_a_linked_secrets_file_is_still_shipped_filtered(tmp_path: Path) -> None:
    """secrets.yaml may be a link inside the folder; what ships is its filtered copy."""
    vector = Vector(
        {
            **_dev(""),
            "vault/all.yaml": f"wifi_password: used-pw\nvault_pw: {VAULT}\n",
        },
        [("secrets.yaml", "vault/all.yaml", "sym")],
        "",
    )
    cfg = _build(tmp_path, vector)

    info = write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz")

    assert info.files == ["dev.yaml", "secrets.yaml"]
    assert _contents(tmp_path / "b.tar.gz")["secrets.yaml"] == b"wifi_password: used-pw\n"


@pytest.mark.parametrize("kind", ["sym", "hard"])
def test_file_swapped_for_a_secrets_link_after_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The writer ships the very files the scan checked, not whatever the path holds later."""
    vector = Vector(
        {**_dev("font:\n  - file: fonts/x.ttf\n"), "fonts/x.ttf": "f" * 50},
        [],
        "fonts/x.ttf",
        base={"secrets.yaml": f"other_device_pw: {OTHER_DEVICE}\nwifi_password: used-pw\n"},
    )
    cfg = _build(tmp_path, vector)

    def scan_then_swap(*args: object, **kwargs: object) -> object:
        result = scan_config(*args, **kwargs)  # type: ignore[arg-type]
        font = cfg / "fonts/x.ttf"
        font.unlink()
        if kind == "sym":
            font.symlink_to("../secrets.yaml")
        else:
            os.link(cfg / "secrets.yaml", font)
        return result

    monkeypatch.setattr(bundle_module, "scan_config", scan_then_swap)
    out = tmp_path / "b.tar.gz"

    with pytest.raises(BundleError, match=r"fonts/x\.ttf changed while the bundle was written"):
        write_config_bundle(cfg, "dev.yaml", out)

    assert not out.exists()
    assert list(tmp_path.glob("*.tmp")) == []
