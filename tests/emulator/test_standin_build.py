"""From the stand-in compiler to the emulated device: the image carries its build.

The stand-in runs exactly as the Device Builder's receiver runs it (real ESPHome 2026.10
generates the sources and ``build_info.json``); the images it writes carry the same
values in their build-info block, and the emulated device flashed with one (by ESPHome's
own ``espota2``) reports them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess

import pytest

from tests.ota.test_espota_interop import run_espota
from tests.standin.esphome_standin import BUILD_INFO_MAGIC, BUILD_INFO_OFFSET, BuildInfo
from tests.support.device_emulator import Firmware
from tests.support.real_builder import BUILDER_VENVS, find_receipt

from .conftest import StartDevice

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esphome"


def compile_with_standin(config: Path, data_dir: Path) -> None:
    """``esphome --dashboard compile <yaml>`` on the stand-in, as the receiver runs it."""
    result = subprocess.run(
        [str(BUILDER_VENVS.standin_esphome), "--dashboard", "compile", str(config)],
        env={**os.environ, "ESPHOME_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    assert BUILDER_VENVS.standin_esphome.exists(), BUILDER_VENVS.how_to_install()
    target = tmp_path / "esphome"
    shutil.copytree(FIXTURES, target)
    return target


@pytest.mark.parametrize(
    ("yaml", "name", "friendly", "images"),
    [
        (
            "esp32-demo.yaml",
            "esp32-demo",
            "ESP32 Demo",
            ["firmware.bin", "firmware.ota.bin", "firmware.factory.bin"],
        ),
        ("esp8266-demo.yaml", "esp8266-demo", "ESP8266 Demo", ["firmware.bin"]),
    ],
)
def test_standin_images_carry_build_info_json(
    config_dir: Path, tmp_path: Path, yaml: str, name: str, friendly: str, images: list[str]
) -> None:
    compile_with_standin(config_dir / yaml, tmp_path / "data")
    receipt = find_receipt(tmp_path / "data", name)
    build_info_json = json.loads((receipt.build_path / "build_info.json").read_text())
    assert set(build_info_json) == {
        "config_hash",
        "build_time",
        "build_time_str",
        "esphome_version",
    }

    for image_name in images:
        image = receipt.file(image_name).path.read_bytes()
        info = BuildInfo.from_image(image)
        assert info is not None, image_name
        assert info.name == name
        assert info.friendly_name == friendly
        assert info.config_hash == build_info_json["config_hash"]
        assert info.build_time == build_info_json["build_time"]
        assert info.build_time_str == build_info_json["build_time_str"]
        assert info.esphome_version == build_info_json["esphome_version"] == "2026.10.0"
    firmware = receipt.file("firmware.bin").path.read_bytes()
    assert firmware[0] == 0xE9
    assert firmware.index(BUILD_INFO_MAGIC) == BUILD_INFO_OFFSET
    raw_receipt = json.loads((receipt.build_path / "standin-receipt.json").read_text())
    assert raw_receipt["build_info"]["config_hash"] == build_info_json["config_hash"]


@pytest.mark.espota
async def test_device_flashed_with_a_standin_build_reports_it(
    config_dir: Path,
    tmp_path: Path,
    builder_python: Path,
    start_device: StartDevice,
) -> None:
    compile_with_standin(config_dir / "esp32-demo.yaml", tmp_path / "data")
    receipt = find_receipt(tmp_path / "data", "esp32-demo")
    build = json.loads((receipt.build_path / "build_info.json").read_text())
    device = await start_device(name="esp32-demo", esphome_version="2026.9.0")
    assert device.ota is not None

    run = await run_espota(builder_python, device.ota, receipt.file("firmware.ota.bin").path)
    assert run.returncode == 0, run.log

    boot = await device.wait_for_boot(2)
    assert boot.firmware == Firmware.from_image(receipt.file("firmware.bin").path.read_bytes())
    assert device.device_info.esphome_version == build["esphome_version"]
    assert device.device_info.compilation_time == build["build_time_str"]
    assert device.mdns_txt["config_hash"] == f"{build['config_hash']:08x}"
    assert device.mdns_txt["board"] == "esp32dev"
