"""Build options through the actions: the ESPHome version of a build, and cleaning a
server's build environment (against the receiver double)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.esphome_remote_build import install
from custom_components.esphome_remote_build.const import DOMAIN, EVENT_JOB
from custom_components.esphome_remote_build.peerlink import JobStatus
from tests.support.receiver_double import JobScript, JobStatus as RdStatus, ReceiverDouble

from .conftest import assert_translated, call_service as call, link_of


def log_of(hass: HomeAssistant, job_id: str) -> Path:
    return Path(hass.config.path(DOMAIN, "logs", f"{job_id}.log"))


@pytest.fixture
def with_artifacts(paired: ReceiverDouble, artifacts: bytes) -> ReceiverDouble:
    paired.set_artifacts(artifacts)
    return paired


async def _submit(hass: HomeAssistant, entry: MockConfigEntry, **data: Any) -> dict[str, Any]:
    return await call(
        hass,
        "submit_build",
        config_entry_id=entry.entry_id,
        **{"configuration": "esp32-demo.yaml", **data},
    )


# --- esphome_version --------------------------------------------------------------------------


async def test_a_build_with_another_esphome_version(
    hass: HomeAssistant, loaded: MockConfigEntry, with_artifacts: ReceiverDouble, esphome_dir: Path
) -> None:
    with_artifacts.provisionable_versions.add("2026.9.1")
    response = await _submit(hass, loaded, wait=True, esphome_version=" 2026.9.1 ")
    assert response["status"] == "completed"
    job = with_artifacts.job(response["job_id"])
    assert job.header["target_esphome_version"] == "2026.9.1"
    lines = Path(response["log"]).read_text().splitlines()
    assert "# esphome_version: 2026.9.1 (requested)" in lines
    assert "Installing esphome==2026.9.1 into a new environment..." in lines


@pytest.mark.parametrize(
    "version", ["2026.10.0", "", "  "], ids=["the-servers-own", "empty", "blank"]
)
async def test_the_servers_own_version_builds_as_is(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    with_artifacts: ReceiverDouble,
    esphome_dir: Path,
    version: str,
) -> None:
    response = await _submit(hass, loaded, esphome_version=version)
    assert "target_esphome_version" not in with_artifacts.job(response["job_id"]).header


async def test_a_version_the_server_cannot_install(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    with pytest.raises(HomeAssistantError) as caught:
        await _submit(hass, loaded, wait=True, esphome_version="2099.1.0")
    assert type(caught.value) is HomeAssistantError  # the world failed, not the caller
    assert caught.value.translation_key == "esphome_version_unavailable"
    [job] = rd.jobs.values()
    assert caught.value.translation_placeholders == {
        "job_id": job.job_id,
        "configuration": "esp32-demo.yaml",
        "esphome_version": "2099.1.0",
        "server": "build-box",
        "output": "could not provision esphome 2099.1.0",
        "log": str(log_of(hass, job.job_id)),
    }
    message = assert_translated(caught.value)
    assert "ESPHome 2099.1.0" in message
    assert "No matching distribution" in log_of(hass, job.job_id).read_text()


@pytest.mark.parametrize(
    ("version", "quoted"),
    [
        ("latest", "latest"),
        ("2026.10", "2026.10"),
        ("v2026.10.0", "v2026.10.0"),
        ("2026.10.0; reboot", "2026.10.0; reboot"),
        ("9" * 100, "9" * 64 + "…"),
    ],
)
async def test_a_malformed_version_is_refused_before_anything_is_sent(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    esphome_dir: Path,
    version: str,
    quoted: str,
) -> None:
    with pytest.raises(ServiceValidationError) as caught:
        await _submit(hass, loaded, esphome_version=version)
    assert caught.value.translation_key == "invalid_esphome_version"
    assert caught.value.translation_placeholders == {"esphome_version": quoted}
    assert_translated(caught.value)
    assert not rd.jobs


async def test_update_installs_can_ask_for_a_version(
    hass: HomeAssistant, loaded: MockConfigEntry, with_artifacts: ReceiverDouble, esphome_dir: Path
) -> None:
    """What the update entity (and rollouts) call takes the version too."""
    with_artifacts.provisionable_versions.add("2026.11.0b2")
    config: Any = SimpleNamespace(yaml_name="esp32-demo.yaml")
    progress: list[int | None] = []
    stored = await install.async_build_for(
        hass, link_of(loaded), config, progress.append, esphome_version="2026.11.0b2"
    )
    assert with_artifacts.job(stored.job_id).header["target_esphome_version"] == "2026.11.0b2"
    assert progress == [None]
    with pytest.raises(ServiceValidationError):
        await install.async_build_for(
            hass, link_of(loaded), config, progress.append, esphome_version="newest"
        )
    assert len(with_artifacts.jobs) == 1


# --- clean_build_environment ------------------------------------------------------------------


async def _clean(hass: HomeAssistant, entry: MockConfigEntry, **data: Any) -> dict[str, Any]:
    return await call(hass, "clean_build_environment", config_entry_id=entry.entry_id, **data)


async def test_clean_build_environment(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble
) -> None:
    events = async_capture_events(hass, EVENT_JOB)
    rd.reset_script = JobScript(lines=["INFO Deleting build files\n"], hold=True)
    link = link_of(loaded)
    response = await _clean(hass, loaded)
    job_id = response["job_id"]
    assert response["status"] in {"queued", "running"}
    assert rd.job(job_id).is_reset
    assert rd.session().record.received_of("reset_build_env") == [
        {"type": "reset_build_env", "job_id": job_id}
    ]
    assert link.load >= 1  # the server is busy with it
    rd.release_job(job_id)
    assert (await link.async_wait_for_job(job_id, 5)).status is JobStatus.COMPLETED
    await hass.async_block_till_done()
    ours = [event.data for event in events if event.data["job_id"] == job_id]
    assert [data["status"] for data in ours] == ["queued", "running", "completed"]
    assert {data["configuration"] for data in ours} == {None}
    assert link.load == 0
    log = await link.async_log(job_id)
    assert log is not None
    lines = log.read_text().splitlines()
    assert lines[1] == "# action: clean build environment"
    assert "INFO Deleting build files" in lines
    assert lines[-1].startswith("# ended: completed")


async def test_clean_and_wait(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble
) -> None:
    response = await _clean(hass, loaded, wait=True)
    job_id = response["job_id"]
    assert response == {
        "job_id": job_id,
        "status": "completed",
        "log": str(log_of(hass, job_id)),
    }
    assert rd.job(job_id).status is RdStatus.COMPLETED


async def test_a_failed_clean_quotes_the_server(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble
) -> None:
    rd.reset_script = JobScript(
        lines=["rm: cannot remove '.esphome': Permission denied\n"], outcome=RdStatus.FAILED
    )
    with pytest.raises(HomeAssistantError) as caught:
        await _clean(hass, loaded, wait=True)
    assert caught.value.translation_key == "clean_failed"
    [job] = rd.jobs.values()
    assert caught.value.translation_placeholders == {
        "job_id": job.job_id,
        "server": "build-box",
        "output": "rm: cannot remove '.esphome': Permission denied",
        "log": str(log_of(hass, job.job_id)),
    }
    assert_translated(caught.value)


async def test_a_clean_while_a_build_runs_is_refused(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    rd.job_script = JobScript(hold=True)
    build = (await _submit(hass, loaded))["job_id"]
    await rd.wait_job_status(build, RdStatus.RUNNING)
    with pytest.raises(HomeAssistantError) as caught:
        await _clean(hass, loaded)
    assert caught.value.translation_key == "clean_busy"
    assert assert_translated(caught.value).startswith("The build server build-box is building")
    assert not any(job.is_reset for job in rd.jobs.values())
    assert set(link_of(loaded)._jobs) == {build}  # the refused clean is forgotten
    rd.release_job(build)
