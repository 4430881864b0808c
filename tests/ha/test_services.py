"""The actions end to end against the receiver double, and their error translations."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import gzip
import io
from pathlib import Path
import stat
import tarfile
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.esphome_remote_build import install
from custom_components.esphome_remote_build.artifacts import (
    ArtifactsError,
    ArtifactsMismatchError,
    BundleError,
    InvalidArtifactsError,
    UnsafeTarballError,
)
from custom_components.esphome_remote_build.const import CONF_KEEP_LAST, DOMAIN, EVENT_JOB
from custom_components.esphome_remote_build.errors import translate
from custom_components.esphome_remote_build.peerlink import (
    CannotConnectError,
    Disconnected,
    DownloadBusyError,
    DownloadError,
    DownloadIntegrityError,
    DownloadRejectedError,
    DownloadTimeoutError,
    Identity,
    InvalidJobIdError,
    JobNotCompletedError,
    NotConnectedError,
    NotPairedError,
    PeerLinkError,
    PinMismatchError,
    ProtocolError,
    SessionLostError,
    SubmitRejectedError,
    SubmitTimeoutError,
    UnknownJobError,
)
from custom_components.esphome_remote_build.store_errors import (
    CorruptBuildError,
    ForeignBuildError,
    StoreError,
)
from tests.support.receiver_double import (
    Artifacts,
    HandshakeFault,
    JobScript,
    JobStatus as RdStatus,
    ReceiverDouble,
)

from .conftest import Recorder, call_service as call, client_of, link_of, wait_stopped


def build_root(hass: HomeAssistant) -> Path:
    return Path(hass.config.path(DOMAIN, "builds"))


def leftovers(hass: HomeAssistant) -> list[Path]:
    """Files in the store's temporary download folders (must stay empty)."""
    return [p for p in build_root(hass).glob(".tmp-*/**/*") if p.is_file()]


@pytest.fixture
def with_artifacts(paired: ReceiverDouble, artifacts: bytes) -> ReceiverDouble:
    paired.set_artifacts(artifacts)
    return paired


# --- submit_build ------------------------------------------------------------------------


async def test_submit_build(
    hass: HomeAssistant, loaded: MockConfigEntry, with_artifacts: ReceiverDouble, esphome_dir: Path
) -> None:
    events = async_capture_events(hass, EVENT_JOB)
    with_artifacts.job_script = JobScript(hold=True)
    response = await call(
        hass, "submit_build", config_entry_id=loaded.entry_id, configuration="esp32-demo.yaml"
    )
    job_id = response["job_id"]
    assert response["status"] in {"queued", "running"}
    with_artifacts.release_job(job_id)
    job = await with_artifacts.wait_job_status(job_id, RdStatus.COMPLETED)
    assert job.header["configuration_filename"] == "esp32-demo.yaml"
    with tarfile.open(fileobj=io.BytesIO(job.bundle), mode="r:gz") as bundle:
        names = set(bundle.getnames())
    assert {"manifest.json", "esp32-demo.yaml", "common/wifi.yaml", "secrets.yaml"} <= names
    await link_of(loaded).async_wait_for_job(job_id, 5)
    await hass.async_block_till_done()
    assert events[-1].data["configuration"] == "esp32-demo.yaml"
    assert events[-1].data["status"] == "completed"
    assert leftovers(hass) == []


async def test_submit_build_and_wait(
    hass: HomeAssistant, loaded: MockConfigEntry, with_artifacts: ReceiverDouble, esphome_dir: Path
) -> None:
    response = await call(
        hass,
        "submit_build",
        config_entry_id=loaded.entry_id,
        configuration="esp32-demo.yaml",
        wait=True,
    )
    assert response["status"] == "completed"
    assert response["device_name"] == "kitchen"
    assert response["configuration"] == "esp32-demo.yaml"
    assert response["images"][0]["name"] == "firmware.bin"
    for image in response["images"]:
        path = Path(image["path"])
        assert path.is_relative_to(build_root(hass) / response["job_id"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert leftovers(hass) == []


@pytest.mark.parametrize(
    ("script", "key", "output"),
    [
        (JobScript(outcome=RdStatus.FAILED, error_message="boom"), "build_failed", "boom"),
        (
            JobScript(
                lines=["INFO Compiling\n", "src/main.cpp:3: error: x\n", "\r", "FAILED\n"],
                outcome=RdStatus.FAILED,
            ),
            "build_failed",
            "INFO Compiling | src/main.cpp:3: error: x | FAILED",
        ),
        # Nothing to quote: the message shows a dash (it used to say "no reason given").
        (JobScript(outcome=RdStatus.FAILED, lines=[]), "build_failed", "-"),
        (JobScript(hold=True), "build_wait_timeout", None),
    ],
)
async def test_submit_build_and_wait_fails(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    esphome_dir: Path,
    script: JobScript,
    key: str,
    output: str | None,
) -> None:
    rd.job_script = script
    with (
        patch.object(install, "BUILD_WAIT_TIMEOUT", 0.3),
        pytest.raises(HomeAssistantError) as caught,
    ):
        await call(
            hass,
            "submit_build",
            config_entry_id=loaded.entry_id,
            configuration="esp8266-demo.yaml",
            wait=True,
        )
    assert type(caught.value) is HomeAssistantError
    assert caught.value.translation_key == key
    placeholders = caught.value.translation_placeholders
    [job] = rd.jobs.values()
    assert placeholders["job_id"] == job.job_id
    if key == "build_failed":
        # The message names the build, quotes the server's words or the output's tail, and
        # says where the whole output is.
        log = Path(hass.config.path(DOMAIN, "logs", f"{job.job_id}.log"))
        assert placeholders == {
            "job_id": job.job_id,
            "configuration": "esp8266-demo.yaml",
            "output": output,
            "log": str(log),
        }
        assert log.read_text().splitlines()[-1].startswith("# ended: failed")
    assert "{" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("../esp32-demo.yaml", "invalid_configuration"),
        ("/etc/esp32-demo.yaml", "invalid_configuration"),
        ("common/wifi.yaml", "invalid_configuration"),
        ("common\\wifi.yaml", "invalid_configuration"),
        ("esp32-demo.txt", "invalid_configuration"),
        ("secrets.yaml", "invalid_configuration"),
        (".yaml", "invalid_configuration"),
        ("..yaml", "invalid_configuration"),
        ("nul\x00.yaml", "invalid_configuration"),
        ("missing.yaml", "configuration_not_found"),
        ("folder.yaml", "configuration_not_found"),
        ("outside.yaml", "configuration_outside"),
        ("undefined-secret.yaml", "bundle_failed"),
    ],
)
async def test_submit_build_refuses_bad_configurations(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    esphome_dir: Path,
    tmp_path: Path,
    name: str,
    key: str,
) -> None:
    (esphome_dir / "folder.yaml").mkdir()
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("esphome:\n  name: elsewhere\n")
    (esphome_dir / "outside.yaml").symlink_to(elsewhere)
    (esphome_dir / "undefined-secret.yaml").write_text(
        "esphome:\n  name: broken\nwifi:\n  password: !secret not_defined\n"
    )
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "submit_build", config_entry_id=loaded.entry_id, configuration=name)
    assert caught.value.translation_domain == DOMAIN
    assert caught.value.translation_key == key
    assert not rd.jobs
    assert leftovers(hass) == []


# --- download_artifacts ------------------------------------------------------------------


async def test_download_artifacts_once_per_job(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
) -> None:
    rd.add_job(identity.dashboard_id, "job1", artifacts=Artifacts(artifacts))
    first = await call(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="job1")
    second = await call(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id="job1")
    assert first == second
    assert first["job_id"] == "job1"
    assert first["device_name"] == "kitchen"
    assert first["platform"] == "esp32"
    assert first["firmware_offset"] == "0x10000"
    assert [image["name"] for image in first["images"]][:4] == [
        "firmware.bin",
        "bootloader.bin",
        "partitions.bin",
        "ota_data_initial.bin",
    ]
    session = rd.session(identity.dashboard_id)
    assert len([f for f in session.received if f.get("type") == "download_artifacts"]) == 1
    assert leftovers(hass) == []


# Two calls at once: the same job is downloaded once, two jobs one after the other (the
# server streams one download per session).  Before 8ef2c7d the link's download lock did
# this; at 8ef2c7d the second call failed with download_busy.
@pytest.mark.parametrize("job_ids", [("job1", "job1"), ("job1", "job2")], ids=["same", "two"])
async def test_concurrent_downloads_are_serialised(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
    job_ids: tuple[str, str],
) -> None:
    for job_id in set(job_ids):
        rd.add_job(identity.dashboard_id, job_id, artifacts=Artifacts(artifacts))
    results = await asyncio.gather(
        *(
            call(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id=job_id)
            for job_id in job_ids
        ),
        return_exceptions=True,  # both calls end inside the test, whatever happens
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    assert [result["job_id"] for result in results] == list(job_ids)  # type: ignore[index]
    session = rd.session(identity.dashboard_id)
    downloads = [f for f in session.received if f.get("type") == "download_artifacts"]
    assert len(downloads) == len(set(job_ids))  # one stream per job, never two at once
    assert leftovers(hass) == []


async def test_download_applies_retention(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
) -> None:
    hass.config_entries.async_update_entry(loaded, options={CONF_KEEP_LAST: 1})
    for job_id in ("old", "new"):
        rd.add_job(identity.dashboard_id, job_id, artifacts=Artifacts(artifacts))
        await call(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id=job_id)
    assert not (build_root(hass) / "old").exists()
    assert (build_root(hass) / "new").is_dir()


async def test_download_retention_defaults_to_three(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
) -> None:
    """Without the option the entry keeps DEFAULT_KEEP_LAST (the store has no default)."""
    assert CONF_KEEP_LAST not in loaded.options
    for job_id in ("b1", "b2", "b3", "b4"):
        rd.add_job(identity.dashboard_id, job_id, artifacts=Artifacts(artifacts))
        await call(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id=job_id)
    assert not (build_root(hass) / "b1").exists()
    assert all((build_root(hass) / job_id).is_dir() for job_id in ("b2", "b3", "b4"))


def _seed(
    status: RdStatus = RdStatus.COMPLETED, *, artifacts: bytes | None = None
) -> Callable[[ReceiverDouble, str, bytes], str]:
    def seed(rd: ReceiverDouble, dashboard_id: str, tarball: bytes) -> str:
        rd.add_job(dashboard_id, "job1", status=status, artifacts=Artifacts(artifacts or tarball))
        return "job1"

    return seed


def _refuse(reason: str) -> Callable[[ReceiverDouble, str, bytes], str]:
    def seed(rd: ReceiverDouble, dashboard_id: str, tarball: bytes) -> str:
        rd.faults.download.refusal = (reason, "detail")
        return _seed()(rd, dashboard_id, tarball)

    return seed


def _corrupt_hash(rd: ReceiverDouble, dashboard_id: str, tarball: bytes) -> str:
    rd.faults.download.wrong_sha256 = True
    return _seed()(rd, dashboard_id, tarball)


@pytest.mark.parametrize(
    ("seed", "error", "key"),
    [
        (lambda *_: "nojob", ServiceValidationError, "unknown_job"),
        (lambda *_: "../x", ServiceValidationError, "invalid_job_id"),
        (_seed(RdStatus.RUNNING), ServiceValidationError, "job_not_completed"),
        (_refuse("busy"), HomeAssistantError, "download_busy"),
        (_refuse("pack_failed"), HomeAssistantError, "download_rejected"),
        (_corrupt_hash, HomeAssistantError, "download_integrity"),
        # The artifacts package's own error, no longer wrapped as the store's.
        (_seed(artifacts=gzip.compress(b"not a tar")), HomeAssistantError, "invalid_artifacts"),
    ],
)
async def test_download_errors(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
    seed: Callable[[ReceiverDouble, str, bytes], str],
    error: type[HomeAssistantError],
    key: str,
) -> None:
    job_id = seed(rd, identity.dashboard_id, artifacts)
    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id=job_id)
    assert type(caught.value) is error
    assert caught.value.translation_domain == DOMAIN
    assert caught.value.translation_key == key
    assert leftovers(hass) == []


# --- cancel_build ------------------------------------------------------------------------


async def test_cancel_build(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, esphome_dir: Path
) -> None:
    rd.job_script = JobScript(hold=True)
    events = async_capture_events(hass, EVENT_JOB)
    submitted = await call(
        hass, "submit_build", config_entry_id=loaded.entry_id, configuration="esp32-demo.yaml"
    )
    job_id = submitted["job_id"]
    await rd.wait_job_status(job_id, RdStatus.RUNNING)
    response = await call(hass, "cancel_build", config_entry_id=loaded.entry_id, job_id=job_id)
    assert response["job_id"] == job_id
    final = await link_of(loaded).async_wait_for_job(job_id, 5)
    assert final.status.value == "cancelled"
    await hass.async_block_till_done()
    assert events[-1].data["status"] == "cancelled"

    unknown = await call(hass, "cancel_build", config_entry_id=loaded.entry_id, job_id="nojob")
    assert unknown == {"job_id": "nojob", "status": None}


# --- a server that is not there ----------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("submit_build", {"configuration": "esp32-demo.yaml"}),
        ("download_artifacts", {"job_id": "job1"}),
        ("cancel_build", {"job_id": "job1"}),
    ],
)
async def test_actions_need_a_connected_server(
    hass: HomeAssistant,
    rd: ReceiverDouble,
    entry: MockConfigEntry,
    esphome_dir: Path,
    service: str,
    data: dict[str, Any],
) -> None:
    # Not paired: the server refuses the session and the link stops for good.
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_stopped(entry)
    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, service, config_entry_id=entry.entry_id, **data)
    assert caught.value.translation_key == "not_connected"


async def test_actions_wait_briefly_for_a_reconnecting_server(
    hass: HomeAssistant, loaded: MockConfigEntry, rd: ReceiverDouble, identity: Identity
) -> None:
    recorder = Recorder()
    client_of(loaded).subscribe(recorder)
    rd.faults.handshake = HandshakeFault.CLOSE_AFTER_MSG1  # reconnects keep failing
    await rd.session(identity.dashboard_id).drop()
    await recorder.wait_count(Disconnected, 1)
    with (
        patch("custom_components.esphome_remote_build.link.CONNECT_WAIT", 0.05),
        pytest.raises(HomeAssistantError) as caught,
    ):
        await call(hass, "cancel_build", config_entry_id=loaded.entry_id, job_id="job1")
    assert caught.value.translation_key == "not_connected"


async def test_unknown_config_entry(hass: HomeAssistant, loaded: MockConfigEntry) -> None:
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "cancel_build", config_entry_id="nope", job_id="job1")
    assert caught.value.translation_key == "service_config_entry_not_found"


# --- delete_artifacts --------------------------------------------------------------------


async def test_delete_artifacts(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    rd: ReceiverDouble,
    identity: Identity,
    artifacts: bytes,
) -> None:
    for job_id in ("a", "b", "c"):
        rd.add_job(identity.dashboard_id, job_id, artifacts=Artifacts(artifacts))
        await call(hass, "download_artifacts", config_entry_id=loaded.entry_id, job_id=job_id)

    assert await call(hass, "delete_artifacts", job_id="c") == {"deleted": ["c"]}
    assert not (build_root(hass) / "c").exists()
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "delete_artifacts", job_id="c")
    assert caught.value.translation_key == "build_not_found"

    assert await call(hass, "delete_artifacts", keep_last=1, device_name="other") == {"deleted": []}
    assert await call(hass, "delete_artifacts", keep_last=1) == {"deleted": ["a"]}


@pytest.mark.parametrize("data", [{}, {"job_id": "a", "keep_last": 1}])
async def test_delete_artifacts_needs_one_target(hass: HomeAssistant, data: dict[str, Any]) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "delete_artifacts", **data)
    assert caught.value.translation_key == "delete_target"


async def test_delete_artifacts_without_any_server(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, DOMAIN, {})
    assert await call(hass, "delete_artifacts", keep_last=3) == {"deleted": []}
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "delete_artifacts", job_id="../../etc")
    assert caught.value.translation_key == "invalid_job_id"


# --- the one error rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "key", "validation"),
    [
        (UnknownJobError("unknown_job"), "unknown_job", True),
        (JobNotCompletedError("job_not_completed"), "job_not_completed", True),
        (DownloadBusyError("busy"), "download_busy", False),
        (DownloadRejectedError("pack_failed", "oops"), "download_rejected", False),
        (DownloadIntegrityError("sha256_mismatch"), "download_integrity", False),
        (DownloadTimeoutError("chunk_timeout"), "download_timeout", False),
        (DownloadError("session_lost"), "download_failed", False),
        (SubmitRejectedError("oversized"), "submit_rejected", False),
        (SubmitTimeoutError("no ack"), "submit_timeout", False),
        (NotConnectedError("down"), "not_connected", False),
        (SessionLostError("gone"), "session_lost", False),
        (NotPairedError("no_approved_peer"), "not_paired", False),
        # A changed key has its own message now (it pointed at not_paired before).
        (PinMismatchError("ab" * 32, "cd" * 32), "server_key_changed", False),
        (CannotConnectError("refused"), "cannot_connect", False),
        (ProtocolError("bad frame"), "protocol_error", False),
        (PeerLinkError("other"), "peer_link_failed", False),
        (BundleError("missing include"), "bundle_failed", True),
        # Artifacts errors keep their own keys (a plain one meant invalid_artifacts before).
        (ArtifactsError("disk full"), "artifacts_failed", False),
        (InvalidArtifactsError("no firmware"), "invalid_artifacts", False),
        (UnsafeTarballError("symlink"), "unsafe_tarball", False),
        (ArtifactsMismatchError("changed"), "artifacts_mismatch", False),
        (InvalidJobIdError("../x"), "invalid_job_id", True),
        (CorruptBuildError("stored build x: no images"), "corrupt_build", False),
        (ForeignBuildError("job1", "cd" * 32), "build_of_other_server", True),
        (StoreError("disk full"), "store_failed", False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_translate_error(error: Exception, key: str, validation: bool) -> None:
    translated = translate(error, job_id="job1", server="build-box")  # type: ignore[arg-type]
    assert type(translated) is (ServiceValidationError if validation else HomeAssistantError)
    assert translated.translation_domain == DOMAIN
    assert translated.translation_key == key
    # The peer's short code is a value a message may quote; the library's text is not.
    assert translated.translation_placeholders == {
        "reason": getattr(error, "reason", ""),
        "code": "",
        "job_id": "job1",
        "server": "build-box",
    }
