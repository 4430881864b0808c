"""The build-log writer on its own: content, bounds, batching, privacy, retention."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
import stat
from unittest.mock import patch

import pytest

from custom_components.esphome_remote_build import build_logs
from custom_components.esphome_remote_build.build_logs import BuildLogs, remove_log
from custom_components.esphome_remote_build.store import BuildStore

from .helpers import StepClock, commit


def _fixed_clock() -> datetime:
    return datetime(2026, 10, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def logs_root(tmp_path: Path) -> Path:
    return tmp_path / "config" / "esphome_remote_build" / "logs"


@pytest.fixture
def make_logs(logs_root: Path) -> Callable[..., BuildLogs]:
    def make(**kwargs: object) -> BuildLogs:
        options: dict[str, object] = {"flush_delay": 0.01, "clock": _fixed_clock, **kwargs}
        return BuildLogs(logs_root, **options)  # type: ignore[arg-type]

    return make


def _body(text: str) -> list[str]:
    """The output lines of a log, without its # header and footer."""
    return [line for line in text.splitlines() if not line.startswith("# ")]


async def _log(logs: BuildLogs, job_id: str, lines: list[str], outcome: str = "completed") -> str:
    logs.start(job_id, "configuration: kitchen.yaml", {"server": "build-box"})
    for line in lines:
        logs.append(job_id, line)
    logs.end(job_id, outcome)
    path = await logs.async_log_of(job_id)
    assert path is not None
    return path.read_text()


async def test_header_lines_and_footer(make_logs: Callable[..., BuildLogs]) -> None:
    logs = make_logs()
    text = await _log(
        logs, "job1", ["INFO Reading\n", "err\r\n", "plain"], outcome="failed: boom\nsecond line"
    )
    assert text.splitlines() == [
        "# ESPHome Remote Build: output of job job1",
        "# configuration: kitchen.yaml",
        "# server: build-box",
        "# started: 2026-10-20T12:00:00+00:00",
        "INFO Reading",
        "err",
        "plain",
        "# ended: failed: boom second line (2026-10-20T12:00:00+00:00)",
    ]


@pytest.mark.parametrize(
    ("lines", "kept"),
    [
        # each progress state replaces the previous one; the last is kept before the next line
        (
            ["Compiling 1%\r", "Compiling 50%\r", "Compiling 100%\r", "Linking\n"],
            ["Compiling 100%", "Linking"],
        ),
        # a bare carriage return overwrites nothing
        (["10%\r", "\r", "done\n"], ["10%", "done"]),
        # a job that ends in a progress bar keeps its last state
        (["a\n", "1/3\r", "3/3\r"], ["a", "3/3"]),
        # inside a line, a terminal shows what follows the last carriage return
        (["10%\r20%\r30%\n"], ["30%"]),
        # colour codes go, real ones and the text ESPHome writes for them with --dashboard
        (
            ["\\033[32mINFO Done!\\033[0m\n", "\x1b[1;31mERROR x\x1b[0m\n", "list[1m]\n"],
            ["INFO Done!", "ERROR x", "list[1m]"],
        ),
        # empty lines are output too
        (["a\n", "\n", "b\r\n"], ["a", "", "b"]),
    ],
)
async def test_progress_bars_collapse(
    make_logs: Callable[..., BuildLogs], lines: list[str], kept: list[str]
) -> None:
    assert _body(await _log(make_logs(), "job1", lines)) == kept


async def test_unwritable_characters_are_replaced(make_logs: Callable[..., BuildLogs]) -> None:
    text = await _log(make_logs(), "job1", ["bad \ud800 surrogate\n", "ü\n"])
    assert _body(text) == ["bad ? surrogate", "ü"]


async def test_a_long_output_keeps_its_beginning_and_its_end(
    make_logs: Callable[..., BuildLogs],
) -> None:
    max_bytes, tail = 64 * 1024, 8 * 1024
    logs = make_logs(max_bytes=max_bytes, tail_bytes=tail)
    lines = [f"line {n:06d} {'x' * 90}\n" for n in range(5000)]  # ~500 KiB
    text = await _log(logs, "job1", lines, outcome="failed")
    assert len(text.encode()) <= max_bytes
    body = _body(text)
    assert body[0] == lines[0].rstrip("\n")
    assert body[-1] == lines[-1].rstrip("\n")
    [note] = [line for line in text.splitlines() if line.startswith("# … ")]
    assert "lines" in note
    assert "left out" in note
    kept = {line.split()[1] for line in body}
    assert len(kept) == len(body)  # nothing twice
    assert text.splitlines()[-1].startswith("# ended: failed")


async def test_a_huge_line_is_cut(make_logs: Callable[..., BuildLogs]) -> None:
    text = await _log(make_logs(), "job1", ["y" * 100_000 + "\n"])
    [line] = _body(text)
    assert line == "y" * build_logs.LINE_MAX_CHARS + "…"


async def test_lines_are_written_in_batches(make_logs: Callable[..., BuildLogs]) -> None:
    logs = make_logs(flush_delay=0.05)
    real = BuildLogs._write_blocking
    calls: list[int] = []

    def counting(self: BuildLogs, batch: list[object], *args: object) -> None:
        calls.append(len(batch))
        real(self, batch, *args)  # type: ignore[arg-type]

    logs.start("job1", "configuration: a.yaml")
    with patch.object(BuildLogs, "_write_blocking", counting):
        for n in range(2000):
            logs.append("job1", f"line {n}\n")
            if n % 500 == 0:
                await asyncio.sleep(0)  # lines arrive over several loop iterations
        logs.end("job1", "completed")
        path = await logs.async_log_of("job1")
    assert path is not None
    assert len(_body(path.read_text())) == 2000
    assert 1 <= len(calls) <= 3  # a handful of thread hops, not one per line


async def test_flush_makes_lines_readable_before_the_job_ends(
    make_logs: Callable[..., BuildLogs],
) -> None:
    logs = make_logs(flush_delay=60)  # only a flush writes in this test
    logs.start("job1", "configuration: a.yaml")
    logs.append("job1", "first\n")
    await logs.async_flush()
    path = logs.path("job1")
    assert _body(path.read_text()) == ["first"]
    logs.append("job1", "second\n")
    logs.append("job1", "third\r")  # a progress state is not final yet
    await logs.async_flush()
    assert _body(path.read_text()) == ["first", "second"]
    assert logs.is_open("job1")
    logs.end("job1", "cancelled")
    await logs.async_flush()
    assert _body(path.read_text()) == ["first", "second", "third"]
    assert not logs.is_open("job1")
    logs.append("job1", "late\n")  # after the end: ignored
    await logs.async_flush()
    assert _body(path.read_text()) == ["first", "second", "third"]


async def test_private_modes(
    make_logs: Callable[..., BuildLogs], logs_root: Path, umask: Callable[[int], None]
) -> None:
    umask(0o000)
    await _log(make_logs(), "job1", ["x\n"])
    assert stat.S_IMODE(logs_root.stat().st_mode) == 0o700
    assert stat.S_IMODE(logs_root.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((logs_root / "job1.log").stat().st_mode) == 0o600


async def test_an_old_file_of_the_same_job_is_replaced(
    make_logs: Callable[..., BuildLogs], logs_root: Path
) -> None:
    logs_root.mkdir(parents=True)
    (logs_root / "job1.log").write_text("stale\n")
    assert _body(await _log(make_logs(), "job1", ["new\n"])) == ["new"]


async def test_a_symlink_is_never_followed(
    make_logs: Callable[..., BuildLogs], logs_root: Path, tmp_path: Path
) -> None:
    logs_root.mkdir(parents=True)
    target = tmp_path / "elsewhere.txt"
    target.write_text("mine\n")
    (logs_root / "job1.log").symlink_to(target)
    logs = make_logs()
    logs.start("job1", "configuration: a.yaml")
    logs.end("job1", "completed")
    assert await logs.async_log_of("job1") is None  # not written, and not a log
    assert target.read_text() == "mine\n"


async def test_a_discarded_job_leaves_nothing(
    make_logs: Callable[..., BuildLogs], logs_root: Path
) -> None:
    logs = make_logs()
    logs.start("job1", "configuration: a.yaml")
    await logs.async_flush()
    assert (logs_root / "job1.log").exists()
    logs.discard("job1")
    assert await logs.async_log_of("job1") is None
    assert not logs.is_open("job1")


async def test_lines_of_unknown_jobs_are_ignored(
    make_logs: Callable[..., BuildLogs], logs_root: Path
) -> None:
    logs = make_logs()
    logs.append("nobody", "x\n")
    logs.end("nobody", "completed")
    await logs.async_flush()
    assert not logs_root.exists()
    assert await logs.async_log_of("../etc/passwd") is None
    with pytest.raises(ValueError):
        logs.start("../x", "configuration: a.yaml")


async def test_a_disk_that_refuses_loses_the_log_not_the_link(
    make_logs: Callable[..., BuildLogs], logs_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logs_root.parent.mkdir(parents=True)
    logs_root.write_text("a file where the folder should be")
    logs = make_logs()
    logs.start("job1", "configuration: a.yaml")
    logs.append("job1", "x\n")
    logs.end("job1", "failed")
    assert await logs.async_log_of("job1") is None
    assert "Cannot write the build log of job job1" in caplog.text


def test_limits_must_leave_room() -> None:
    with pytest.raises(ValueError):
        BuildLogs(Path("/nonexistent"), max_bytes=1000, tail_bytes=500)


# --- retention ----------------------------------------------------------------------------


async def _ended(logs: BuildLogs, job_id: str, configuration: str) -> None:
    logs.start(job_id, f"configuration: {configuration}")
    logs.append(job_id, "error\n")
    logs.end(job_id, "failed")
    await logs.async_flush()
    await asyncio.sleep(0.02)  # distinct modification times


async def test_logs_without_a_build_are_kept_per_configuration(
    make_logs: Callable[..., BuildLogs], logs_root: Path
) -> None:
    stored = {"built"}
    logs = make_logs(keep_per_subject=2, keep_unstored=4, is_stored=stored.__contains__)
    await _ended(logs, "built", "a.yaml")  # has a stored build: never pruned here
    for n in range(4):
        await _ended(logs, f"a{n}", "a.yaml")
    assert sorted(p.stem for p in logs_root.iterdir()) == ["a2", "a3", "built"]
    for n in range(3):
        await _ended(logs, f"b{n}", "b.yaml")
    assert sorted(p.stem for p in logs_root.iterdir()) == ["a2", "a3", "b1", "b2", "built"]
    await _ended(logs, "c0", "c.yaml")  # the overall cap: the oldest unstored log goes
    assert sorted(p.stem for p in logs_root.iterdir()) == ["a3", "b1", "b2", "built", "c0"]


async def test_open_logs_and_other_files_are_never_pruned(
    make_logs: Callable[..., BuildLogs], logs_root: Path
) -> None:
    logs = make_logs(keep_per_subject=1)
    logs.start("running", "configuration: a.yaml")
    await logs.async_flush()
    logs_root.joinpath("notes.txt").write_text("mine")
    logs_root.joinpath("bad name.log").write_text("mine")
    await _ended(logs, "a1", "a.yaml")
    await _ended(logs, "a2", "a.yaml")
    assert sorted(p.name for p in logs_root.iterdir()) == [
        "a2.log",
        "bad name.log",
        "notes.txt",
        "running.log",
    ]


async def test_deleting_a_build_removes_its_log(
    logs_root: Path, root: Path, make_tarball: Callable[..., object]
) -> None:
    store = BuildStore(
        root, clock=StepClock(), on_delete=lambda job_id: remove_log(logs_root, job_id)
    )
    logs = BuildLogs(logs_root, is_stored=store.holds, flush_delay=0.01)
    for job_id in ("old", "new"):
        await _ended(logs, job_id, "kitchen.yaml")
        await commit(store, make_tarball(), job_id)  # type: ignore[arg-type]
        assert store.holds(job_id)
    assert store.holds("old")
    assert not store.holds("nope")
    assert not store.holds("../x")
    assert await store.async_keep_last(1) == ["old"]
    assert sorted(p.stem for p in logs_root.iterdir()) == ["new"]
    assert await store.async_delete("new")
    assert list(logs_root.iterdir()) == []
    remove_log(logs_root, "new")  # twice is fine
