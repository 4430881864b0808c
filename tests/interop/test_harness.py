"""The interop harness itself: the real Device Builder starts and stops as expected, and
the stand-in compiler leaves exactly what the receiver's own packer needs.

The packing check runs the receiver's ``pack_build_artifacts`` and
``unpack_artifacts_response`` from the Device Builder venv, so a stand-in that drifts
from what the real receiver ships fails here rather than in every interop test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import zlib

import pytest

from tests.interop.conftest import RealBuilderFactory
from tests.standin.esphome_standin import split_command
from tests.support.real_builder import (
    BUILDER_VENVS,
    DashboardCommandError,
    RealBuilder,
    find_receipt,
)

# The Device Builder release under test (REMOTE_BUILD_BUILDER_VENV/_VERSION, see
# tests/support/real_builder.py) and the stand-in compiler venv that runs on it.
BUILDER_PYTHON = BUILDER_VENVS.python
STANDIN_ESPHOME = BUILDER_VENVS.standin_esphome
BUILDER_ESPHOME = BUILDER_VENVS.esphome

# Runs in the Device Builder venv: pack like the receiver does before download_artifacts,
# unpack like its own offloader does, and report what came out (hashes, not bytes).
PACK_AND_UNPACK = """
import base64, hashlib, io, json, sys, tarfile
from esphome_device_builder.controllers.remote_build.artifacts_tarball import (
    pack_build_artifacts, unpack_artifacts_response)
packed = pack_build_artifacts(sys.argv[1])
with tarfile.open(fileobj=io.BytesIO(packed.tarball), mode="r:gz") as tar:
    members = {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest() for m in tar}
images = [
    {"name": i["name"], "offset": i["offset"], "size": i["size"],
     "sha256": hashlib.sha256(base64.b64decode(i["data_b64"])).hexdigest()}
    for i in unpack_artifacts_response(packed, "job")["images"]
]
print(json.dumps({"firmware_offset": packed.firmware_offset, "members": members,
                  "images": images}))
"""

# ESPHome's toolchain (StorageJSON ``toolchain``) -> (idedata suffix, platformio.ini?).
TOOLCHAIN_FILES: dict[str | None, tuple[str, bool]] = {
    "arduino": (".arduino.json", False),
    "platformio": (".json", True),
    None: (".json", True),
}

PIN_FORMAT = re.compile(r"[0-9a-f]{64}")
PAIRING_KEY_FORMAT = re.compile(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){3}")


def run_standin(config: Path, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Invoke the stand-in exactly as the receiver does (``--dashboard compile <yaml>``)."""
    return subprocess.run(
        [str(STANDIN_ESPHOME), "--dashboard", "compile", str(config)],
        env={**os.environ, "ESPHOME_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pack_with_receiver(config: Path, data_dir: Path) -> dict[str, object]:
    result = subprocess.run(
        [str(BUILDER_PYTHON), "-c", PACK_AND_UNPACK, str(config)],
        env={**os.environ, "ESPHOME_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    packed: dict[str, object] = json.loads(result.stdout)
    return packed


async def connect_refused(builder: RealBuilder) -> bool:
    try:
        _, writer = await asyncio.open_connection(builder.host, builder.port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


# --- the Device Builder process --------------------------------------------------------


async def test_headless_builder_serves_with_pairing_window(real_builder: RealBuilder) -> None:
    assert PIN_FORMAT.fullmatch(real_builder.pin)
    assert real_builder.pairing_key is not None
    assert PAIRING_KEY_FORMAT.fullmatch(real_builder.pairing_key)
    assert real_builder.http_port is None
    assert not await connect_refused(real_builder)
    # The Device Builder found our stand-in (not `python -m esphome`) and its version
    # probe went through the stand-in's forwarding.
    await real_builder.wait_for_log(re.escape(f"ESPHome command: {STANDIN_ESPHOME} "))
    await real_builder.wait_for_log("ESPHome CLI sanity check OK")

    assert await real_builder.stop() == 0
    assert await connect_refused(real_builder)


async def test_restart_keeps_identity_and_ports(
    real_builder_factory: RealBuilderFactory,
) -> None:
    builder = await real_builder_factory()
    pin, port = builder.pin, builder.port
    assert await builder.stop() == 0

    await builder.start()

    assert (builder.pin, builder.port) == (pin, port)
    assert builder.pairing_key is not None  # still unpaired: a new first-pair window


async def test_dashboard_mode_operator_api(real_builder_dashboard: RealBuilder) -> None:
    builder = real_builder_dashboard
    assert PIN_FORMAT.fullmatch(builder.pin)
    assert builder.pairing_key is None  # pairing goes through the operator instead

    async with builder.dashboard_client() as client:
        assert client.server_info["port"] == builder.http_port
        window = await client.set_pairing_window(True)
        settings = await client.get_settings()
        jobs = await client.get_jobs()
        with pytest.raises(DashboardCommandError) as unknown:
            await client.approve_peer("no-such-dashboard")

    assert window["open"] is True
    assert settings["peers"] == []
    assert jobs == []
    assert unknown.value.code == "not_found"


@pytest.mark.parametrize(
    ("yaml", "event"),
    [("esp8266-demo.yaml", "job_completed"), ("failing-device.yaml", "job_failed")],
    ids=["completes", "fails"],
)
async def test_builder_job_runner_runs_the_standin(
    yaml: str, event: str, real_builder_dashboard: RealBuilder, esphome_config_dir: Path
) -> None:
    # The Device Builder's own job runner judges success (exit code, error lines), so a
    # local compile job proves the stand-in passes the same gate remote jobs go through.
    builder = real_builder_dashboard
    shutil.copytree(esphome_config_dir, builder.config_dir, dirs_exist_ok=True)
    async with builder.dashboard_client() as client:
        await client.subscribe_events()
        job = await client.command("firmware/compile", {"configuration": yaml})
        finished = await client.next_event("job_completed", "job_failed", timeout=120)

    assert finished["event"] == event
    assert finished["data"]["job"]["job_id"] == job["job_id"]
    receipts = list(builder.config_dir.rglob("standin-receipt.json"))
    assert len(receipts) == (1 if event == "job_completed" else 0)


# --- the stand-in compiler -------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    yaml: str
    device: str
    platform: str
    firmware_offset: str
    flash_images: tuple[str, ...]
    extra_files: tuple[str, ...]


PLATFORMS = [
    Platform(
        yaml="esp8266-demo.yaml",
        device="esp8266-demo",
        platform="esp8266",
        firmware_offset="0x0",
        flash_images=(),
        extra_files=("firmware.elf",),
    ),
    Platform(
        yaml="esp32-demo.yaml",
        device="esp32-demo",
        platform="esp32",
        firmware_offset="0x10000",
        flash_images=("bootloader.bin", "partitions.bin", "ota_data_initial.bin"),
        extra_files=("firmware.factory.bin", "firmware.ota.bin", "firmware.elf"),
    ),
]


@pytest.mark.parametrize("case", PLATFORMS, ids=lambda case: case.platform)
def test_standin_build_is_what_the_receiver_packs(
    case: Platform, esphome_config_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    config = esphome_config_dir / case.yaml

    result = run_standin(config, data_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Successfully compiled program." in result.stdout
    assert (data_dir / "storage" / f"{case.yaml}.json").is_file()
    receipt = find_receipt(data_dir, case.device)
    # ESPHome picks the toolchain (2026.10 builds ESP8266 with its native Arduino
    # toolchain: idedata `<name>.arduino.json`, no platformio.ini; 2026.9 with PlatformIO).
    idedata, platformio_ini = TOOLCHAIN_FILES[receipt.toolchain]
    assert (data_dir / "idedata" / f"{case.device}{idedata}").is_file()
    assert (receipt.platform, receipt.firmware_offset) == (case.platform, case.firmware_offset)
    names = [item.name for item in receipt.files]
    assert names == ["firmware.bin", *case.flash_images, *case.extra_files]
    for item in receipt.files:
        assert item.read_sha256() == item.sha256
        assert item.path.stat().st_size == item.size
    assert receipt.file("firmware.bin").path.read_bytes()[:1] == b"\xe9"
    assert receipt.file("firmware.elf").path.read_bytes()[:4] == b"\x7fELF"

    packed = pack_with_receiver(config, data_dir)

    assert packed["firmware_offset"] == case.firmware_offset
    members = packed["members"]
    assert isinstance(members, dict)
    assert ("platformio.ini" in members) is platformio_ini
    assert {"storage.json", "idedata.json", "build_info.json"} <= members.keys()
    for item in receipt.files:
        member = item.path.relative_to(receipt.build_path).as_posix()
        assert members[member] == item.sha256
    flashable = [
        item for item in receipt.files if item.name in {"firmware.bin", *case.flash_images}
    ]
    assert packed["images"] == [
        {"name": item.name, "offset": item.offset, "size": item.size, "sha256": item.sha256}
        for item in flashable
    ]


def test_standin_esp32_factory_image_holds_every_image(
    esphome_config_dir: Path, tmp_path: Path
) -> None:
    assert run_standin(esphome_config_dir / "esp32-demo.yaml", tmp_path).returncode == 0
    receipt = find_receipt(tmp_path, "esp32-demo")
    factory = receipt.file("firmware.factory.bin").path.read_bytes()
    images = [item for item in receipt.files if item.name.endswith(".bin") and item.offset]
    assert {item.name for item in images} >= {"firmware.bin", "bootloader.bin"}

    for item in images:
        if item.name == "firmware.factory.bin":
            continue
        assert item.offset is not None
        start = int(item.offset, 16)
        assert factory[start : start + item.size] == item.path.read_bytes(), item.name
    assert receipt.file("firmware.ota.bin").sha256 == receipt.file("firmware.bin").sha256


def test_standin_image_size_knobs(esphome_config_dir: Path, tmp_path: Path) -> None:
    config = esphome_config_dir / "esp8266-demo.yaml"
    wanted = 1 << 20

    assert (
        run_standin(config, tmp_path / "env", ERB_STANDIN_FIRMWARE_BYTES=str(wanted)).returncode
        == 0
    )
    firmware = find_receipt(tmp_path / "env", "esp8266-demo").file("firmware.bin")
    assert firmware.size == wanted
    data = firmware.path.read_bytes()
    assert len(zlib.compress(data)) > 0.99 * wanted  # incompressible, like real images

    # A substitution in the YAML wins over the environment.
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace("substitutions:\n", 'substitutions:\n  standin_firmware_bytes: "123457"\n'),
        encoding="utf-8",
    )
    assert (
        run_standin(config, tmp_path / "sub", ERB_STANDIN_FIRMWARE_BYTES=str(wanted)).returncode
        == 0
    )
    assert find_receipt(tmp_path / "sub", "esp8266-demo").file("firmware.bin").size == 123457


@pytest.mark.parametrize(
    ("yaml", "env"),
    [
        ("failing-device.yaml", {}),
        ("esp8266-demo.yaml", {"ERB_STANDIN_FAIL": "1"}),
    ],
    ids=["device-name", "environment-switch"],
)
def test_standin_failure_paths(
    yaml: str, env: dict[str, str], esphome_config_dir: Path, tmp_path: Path
) -> None:
    result = run_standin(esphome_config_dir / yaml, tmp_path, **env)

    assert result.returncode == 1
    assert "ERROR stand-in compiler: simulated build failure" in result.stdout
    assert not list(tmp_path.rglob("standin-receipt.json"))


def test_standin_forwards_other_commands_to_real_esphome() -> None:
    real = subprocess.run(
        [str(BUILDER_ESPHOME), "version"], capture_output=True, text=True, check=True
    )
    standin = subprocess.run(
        [str(STANDIN_ESPHOME), "version"], capture_output=True, text=True, check=True
    )

    assert standin.stdout == real.stdout
    assert real.stdout.startswith("Version: ")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--dashboard", "compile", "a.yaml"], (["--dashboard"], "compile", ["a.yaml"])),
        (
            ["-s", "name", "x", "-l", "DEBUG", "compile", "--only-generate", "a.yaml"],
            (["-s", "name", "x", "-l", "DEBUG"], "compile", ["--only-generate", "a.yaml"]),
        ),
        (["--dashboard", "--version"], (["--dashboard", "--version"], None, [])),
        (
            ["--toolchain", "platformio", "config", "a.yaml"],
            (["--toolchain", "platformio"], "config", ["a.yaml"]),
        ),
    ],
    ids=["receiver-compile", "options-with-values", "version-probe", "toolchain-option"],
)
def test_standin_finds_the_sub_command(
    argv: list[str], expected: tuple[list[str], str | None, list[str]]
) -> None:
    assert split_command(argv) == expected
