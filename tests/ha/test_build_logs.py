"""Build logs through Home Assistant: every job's output on disk, named by the actions."""

from __future__ import annotations

import asyncio
from pathlib import Path
import stat
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.esphome_remote_build import link as link_module
from custom_components.esphome_remote_build.const import CONF_KEEP_LAST, DATA_LOGS, DOMAIN
from custom_components.esphome_remote_build.peerlink import Identity, JobStatus
from tests.support.receiver_double import (
    Artifacts,
    JobScript,
    JobStatus as RdStatus,
    ReceiverDouble,
)

from .conftest import call_service as call, link_of


def logs_root(hass: HomeAssistant) -> Path:
    return Path(hass.config.path(DOMAIN, "logs"))


def body(path: Path) -> list[str]:
    """The output lines of a log, without its header and footer."""
    return [line for line in path.read_text().splitlines() if not line.startswith("# ")]


@pytest.fixture
def with_artifacts(paired: ReceiverDouble, artifacts: bytes) -> ReceiverDouble:
    paired.set_artifacts(artifacts)
    return paired


async def _submit(hass: HomeAssistant, entry: MockConfigEntry, name: str, **data: object) -> str:
    response = await call(
        hass, "submit_build", config_entry_id=entry.entry_id, configuration=name, **data
    )
    job_id: str = response["job_id"]
    return job_id


async def test_a_build_names_its_log(
    hass: HomeAssistant, loaded: MockConfigEntry, with_artifacts: ReceiverDouble, esphome_dir: Path
) -> None:
    response = await call(
        hass,
        "submit_build",
        config_entry_id=loaded.entry_id,
        configuration="esp32-demo.yaml",
        wait=True,
    )
    job_id = response["job_id"]
    log = Path(response["log"])
    assert log == logs_root(hass) / f"{job_id}.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(logs_root(hass).stat().st_mode) == 0o700
    lines = log.read_text().splitlines()
    assert lines[:4] == [
        f"# ESPHome Remote Build: output of job {job_id}",
        "# configuration: esp32-demo.yaml",
        "# server: build-box",
        "# esphome_version: 2026.10.0 (the server's own)",
    ]
    assert lines[4].startswith("# started: ")
    # the double's script, its progress line written once
    assert body(log) == [
        "INFO Reading configuration...",
        "Compiling .pioenvs/dev/src/main.cpp.o",
        "INFO Successfully compiled program.",
    ]
    assert lines[-1].startswith("# ended: completed (")
    # Downloading the stored job again names the same log.
    again = await call(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id=job_id)
    assert again["log"] == response["log"]


async def test_a_job_from_elsewhere_has_no_log(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
) -> None:
    rd.add_job(identity.dashboard_id, "job1", artifacts=Artifacts(artifacts))
    response = await call(
        hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="job1"
    )
    assert response["log"] is None


async def test_both_streams_and_progress_bars(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    rd.job_script = JobScript(
        lines=["INFO Compiling\n", "[  5%] x\r", "[ 50%] x\r", "[100%] x\r", "Linking\r\n"],
        hold=True,
    )
    job_id = await _submit(hass, loaded, "esp8266-demo.yaml")
    link = link_of(loaded)
    async with asyncio.timeout(5):  # the script's lines arrived
        while "Linking" not in link._output.get(job_id, ()):
            await asyncio.sleep(0.01)
    await rd.session().send_frame(
        {"type": "job_output", "job_id": job_id, "stream": "stderr", "line": "warning: y\n"}
    )
    rd.release_job(job_id)
    assert (await link.async_wait_for_job(job_id, 5)).status is JobStatus.COMPLETED
    log = await link.async_log(job_id)
    assert log is not None
    assert body(log) == ["INFO Compiling", "[100%] x", "Linking", "warning: y"]


async def test_a_failure_quotes_its_output_without_colour_codes(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    """The Device Builder runs ESPHome with --dashboard: colours arrive as \\033[…m text."""
    rd.job_script = JobScript(
        lines=["\\033[32mINFO Compiling\\033[0m\n", "\\033[31mERROR x.cpp:3: boom\\033[0m\n"],
        outcome=RdStatus.FAILED,
    )
    with pytest.raises(HomeAssistantError) as caught:
        await _submit(hass, loaded, "esp8266-demo.yaml", wait=True)
    placeholders = caught.value.translation_placeholders or {}
    assert placeholders["output"] == "INFO Compiling | ERROR x.cpp:3: boom"
    assert body(Path(placeholders["log"])) == ["INFO Compiling", "ERROR x.cpp:3: boom"]


async def test_a_refused_submission_leaves_no_log(
    hass: HomeAssistant, loaded: MockConfigEntry, esphome_dir: Path
) -> None:
    def empty_bundle(config_dir: Path, configuration: str, dest: Path) -> None:
        dest.write_bytes(b"")  # the double refuses an empty upload

    with (
        patch.object(link_module, "write_config_bundle", empty_bundle),
        pytest.raises(HomeAssistantError) as caught,
    ):
        await _submit(hass, loaded, "esp32-demo.yaml")
    assert caught.value.translation_key == "submit_rejected"
    await hass.data[DATA_LOGS].async_flush()
    assert not list(logs_root(hass).glob("*.log"))


async def test_deleted_builds_take_their_logs_along(
    hass: HomeAssistant, loaded: MockConfigEntry, with_artifacts: ReceiverDouble, esphome_dir: Path
) -> None:
    hass.config_entries.async_update_entry(loaded, options={CONF_KEEP_LAST: 1})
    first = await _submit(hass, loaded, "esp32-demo.yaml", wait=True)
    assert (logs_root(hass) / f"{first}.log").is_file()
    second = await _submit(hass, loaded, "esp32-demo.yaml", wait=True)
    # keep_last: 1 deleted the first build, and its log with it
    assert sorted(p.stem for p in logs_root(hass).iterdir()) == [second]
    await call(hass, "delete_artifacts", job_id=second)
    assert list(logs_root(hass).iterdir()) == []


async def test_failed_builds_keep_the_newest_logs_per_configuration(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    rd.job_script = JobScript(lines=["error: x\n"], outcome=RdStatus.FAILED)
    link = link_of(loaded)
    failed: list[str] = []
    for _ in range(7):
        job_id = await _submit(hass, loaded, "esp8266-demo.yaml")
        await link.async_wait_for_job(job_id, 5)
        await link.async_log(job_id)
        failed.append(job_id)
        await asyncio.sleep(0.01)  # distinct modification times
    other = await _submit(hass, loaded, "esp32-demo.yaml")
    await link.async_wait_for_job(other, 5)
    await hass.data[DATA_LOGS].async_flush()
    assert sorted(p.stem for p in logs_root(hass).iterdir()) == sorted([*failed[-5:], other])


async def test_unloading_ends_the_logs_of_running_jobs(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    rd.job_script = JobScript(lines=["INFO Compiling\n"], hold=True)
    link = link_of(loaded)
    job_id = await _submit(hass, loaded, "esp8266-demo.yaml")
    async with asyncio.timeout(5):
        while not link._output.get(job_id):
            await asyncio.sleep(0.01)
    assert await hass.config_entries.async_unload(loaded.entry_id)
    log = logs_root(hass) / f"{job_id}.log"
    assert body(log) == ["INFO Compiling"]
    assert log.read_text().splitlines()[-1].startswith("# ended: not followed to its end")
    assert not hass.data[DATA_LOGS].is_open(job_id)
    rd.release_job(job_id)
