"""The record of what was installed on each device survives a restart, and nothing else."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.core import HomeAssistant
import pytest

from custom_components.esphome_remote_build.installs import (
    STORAGE_KEY,
    InstallRecord,
    InstallRecords,
)

RECORD = InstallRecord(
    job_id="abc123",
    configuration="kitchen.yaml",
    fingerprint="f" * 64,
    esphome_version="2026.10.0",
    compilation_time="2026-10-01 10:00:00 +0000",
    installed_at="2026-10-01T10:01:00+00:00",
    files={"kitchen.yaml": "a" * 64},
)


async def test_records_and_builds_survive_a_restart(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    records = InstallRecords(hass)
    await records.async_load()
    salt = records.secrets_salt
    assert len(salt) == 32
    records.remember_build("abc123", "f" * 64, {"kitchen.yaml": "a" * 64})
    await records.async_set("aa:bb:cc:dd:ee:ff", RECORD)
    await hass.async_block_till_done()

    again = InstallRecords(hass)  # a restart: a new object over the same storage
    await again.async_load()
    assert again.get("aa:bb:cc:dd:ee:ff") == RECORD
    assert again.built_from("abc123") == ("f" * 64, {"kitchen.yaml": "a" * 64})
    assert again.secrets_salt == salt  # the salt stays, or every fingerprint would change
    stored = hass_storage[STORAGE_KEY]["data"]
    assert "password" not in str(stored)


@pytest.mark.parametrize(
    "damaged",
    [
        {"job_id": 1},
        {**{k: v for k, v in asdict(RECORD).items() if k != "files"}, "files": ["x"]},
        {k: v for k, v in asdict(RECORD).items() if k != "job_id"},
    ],
    ids=["wrong-type", "files-not-a-mapping", "missing-field"],
)
async def test_a_damaged_record_is_dropped_not_fatal(
    hass: HomeAssistant, hass_storage: dict[str, Any], damaged: dict[str, Any]
) -> None:
    hass_storage[STORAGE_KEY] = {
        "version": 1,
        "key": STORAGE_KEY,
        "data": {
            "salt": "00" * 32,
            "devices": {"bad": damaged, "good": asdict(RECORD)},
            "builds": {"ok": {"fingerprint": "1" * 64, "files": {}}, "bad": {"files": 3}},
        },
    }
    records = InstallRecords(hass)
    await records.async_load()
    assert records.get("bad") is None
    assert records.get("good") == RECORD
    assert records.built_from("ok") == ("1" * 64, {})
    assert records.built_from("bad") is None
    assert records.secrets_salt == bytes(32)


async def test_builds_remembered_are_bounded(hass: HomeAssistant) -> None:
    records = InstallRecords(hass)
    await records.async_load()
    for number in range(250):
        records.remember_build(f"job{number}", "f" * 64, {})
    assert records.built_from("job0") is None
    assert records.built_from("job249") is not None
