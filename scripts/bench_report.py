"""The benchmark's figures: samples from the workers, their summaries, the goals, the output.

Kept apart from the orchestration so what is compared, and how a goal is judged, reads
in one place. Throughput is MiB/s of tarball bytes over the *stream* window (first
artifacts frame to the end; see ``bench_download.py``); the end-to-end figure, which
adds the server's packing time, is shown next to it. Per (size, client) the benchmark
reports medians over the repetitions, and the worst value for peak RSS growth and for
event-loop stalls, since those goals are limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
import json
import statistics
from typing import Any

MIB = 1024 * 1024
THROUGHPUT_RATIO_GOAL = 0.90
RSS_GROWTH_GOAL = 16 * MIB
RSS_GOAL_SIZE_MIB = 64.0
STALL_GOAL_MS = 20.0
OTA_RATIO_GOAL = 0.95


def worst(values: Iterable[float | None]) -> float | None:
    """The largest value, or ``None`` if any run could not measure it."""
    known = list(values)
    return None if any(v is None for v in known) else max(v for v in known if v is not None)


def stall_text(wall_ms: float | None, own_ms: float | None) -> str:
    if wall_ms is None:
        return "-"
    return f"{wall_ms:.1f} ms" + ("" if own_ms is None else f" (own {own_ms:.1f})")


@dataclass(frozen=True, slots=True)
class DownloadSample:
    """One download, as a worker measured it."""

    kind: str
    bytes: int
    sha256: str
    seconds: float
    stream_seconds: float
    cpu_seconds: float
    stream_cpu_seconds: float
    rss_growth_bytes: int
    rss_method: str
    max_stall_ms: float
    max_own_stall_ms: float | None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DownloadSample:
        return cls(**{field.name: raw[field.name] for field in fields(cls)})


@dataclass(frozen=True, slots=True)
class DownloadSummary:
    """One client at one size, over the repetitions."""

    size_mib: float
    kind: str
    runs: int
    tarball_bytes: int
    stream_mib_s: float
    stream_min_mib_s: float
    stream_max_mib_s: float
    end_to_end_mib_s: float
    cpu_s_per_mib: float
    peak_rss_growth_bytes: int
    max_stall_ms: float
    max_own_stall_ms: float | None

    @classmethod
    def of(cls, size_mib: float, samples: list[DownloadSample]) -> DownloadSummary:
        mib = samples[0].bytes / MIB
        streams = [mib / s.stream_seconds for s in samples]
        return cls(
            size_mib=size_mib,
            kind=samples[0].kind,
            runs=len(samples),
            tarball_bytes=samples[0].bytes,
            stream_mib_s=statistics.median(streams),
            stream_min_mib_s=min(streams),
            stream_max_mib_s=max(streams),
            end_to_end_mib_s=statistics.median(mib / s.seconds for s in samples),
            cpu_s_per_mib=statistics.median(s.stream_cpu_seconds / mib for s in samples),
            peak_rss_growth_bytes=max(s.rss_growth_bytes for s in samples),
            max_stall_ms=max(s.max_stall_ms for s in samples),
            max_own_stall_ms=worst(s.max_own_stall_ms for s in samples),
        )


@dataclass(frozen=True, slots=True)
class OtaSummary:
    """One OTA client over the repetitions (seconds around the upload call)."""

    client: str
    runs: int
    median_s: float
    min_s: float
    max_s: float
    mib_s: float
    cpu_ms: float
    max_stall_ms: float | None
    max_own_stall_ms: float | None

    @classmethod
    def of(
        cls,
        client: str,
        image_bytes: int,
        samples: list[dict[str, Any]],
        probed: list[dict[str, Any]],
    ) -> OtaSummary:
        """Time from ``samples``; stalls from ``probed`` uploads (none: not measured)."""
        seconds = [sample["seconds"] for sample in samples]
        median = statistics.median(seconds)
        return cls(
            client=client,
            runs=len(seconds),
            median_s=median,
            min_s=min(seconds),
            max_s=max(seconds),
            mib_s=image_bytes / MIB / median,
            cpu_ms=statistics.median(sample["cpu_seconds"] for sample in samples) * 1000,
            max_stall_ms=max(p["max_stall_ms"] for p in probed) if probed else None,
            max_own_stall_ms=worst(p["max_own_stall_ms"] for p in probed) if probed else None,
        )


@dataclass(frozen=True, slots=True)
class Goal:
    """A target and whether this run met it (``None``: not measured in this run)."""

    name: str
    measured: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


def judge(
    downloads: dict[float, dict[str, DownloadSummary]], ota: list[OtaSummary] | None
) -> list[Goal]:
    """Hold the figures against the goals of issue #5 (those of the parts that ran).

    ``ota`` is ours then ESPHome's ``espota2``; empty (or ``None``) where that part did
    not run, like ``downloads`` (``--only``).
    """
    goals: list[Goal] = []
    ours_ota, espota = (ota[0], ota[1]) if ota else (None, None)
    for size, pair in downloads.items():
        ratio = pair["ours"].stream_mib_s / pair["baseline"].stream_mib_s
        goals.append(
            Goal(
                f"download {size:g} MiB >= {THROUGHPUT_RATIO_GOAL:.0%} of baseline",
                f"{ratio:.1%}",
                ratio >= THROUGHPUT_RATIO_GOAL,
            )
        )
    if downloads:
        big = downloads.get(RSS_GOAL_SIZE_MIB)
        growth = None if big is None else big["ours"].peak_rss_growth_bytes
        goals.append(
            Goal(
                f"peak RSS growth < {RSS_GROWTH_GOAL // MIB} MiB at {RSS_GOAL_SIZE_MIB:g} MiB",
                "not run" if growth is None else f"{growth / MIB:.1f} MiB",
                None if growth is None else growth < RSS_GROWTH_GOAL,
            )
        )
    ours = [pair["ours"] for pair in downloads.values()]
    if ours or ours_ota is not None:
        ota_stall = [] if ours_ota is None else [ours_ota]
        wall = max([row.max_stall_ms for row in ours] + [o.max_stall_ms or 0.0 for o in ota_stall])
        own = worst(
            [row.max_own_stall_ms for row in ours] + [o.max_own_stall_ms for o in ota_stall]
        )
        judged = wall if own is None else own
        goals.append(
            Goal(
                f"no event-loop stall > {STALL_GOAL_MS:g} ms (our downloads and OTA"
                + ("" if own is None else "; own = minus time the loop waited for a CPU")
                + ")",
                stall_text(wall, own),
                judged <= STALL_GOAL_MS,
            )
        )
    if ours_ota is not None and espota is not None:
        ratio = espota.median_s / ours_ota.median_s
        goals.append(
            Goal(
                f"OTA speed >= {OTA_RATIO_GOAL:g}x ESPHome's espota2",
                f"{ratio:.2f}x",
                ratio >= OTA_RATIO_GOAL,
            )
        )
    return goals


def table(header: list[str], rows: list[list[str]], labels: int = 2) -> list[str]:
    """Align columns: the first ``labels`` to the left, the figures to the right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(width) if i < labels else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]


def _download_rows(downloads: dict[float, dict[str, DownloadSummary]]) -> list[list[str]]:
    rows = []
    for size, pair in downloads.items():
        ratio = pair["ours"].stream_mib_s / pair["baseline"].stream_mib_s
        for kind in ("ours", "baseline"):
            row = pair[kind]
            rows.append(
                [
                    f"{size:g} MiB",
                    kind,
                    f"{row.tarball_bytes / MIB:.2f} MiB",
                    (
                        f"{row.stream_mib_s:.1f} MiB/s "
                        f"({row.stream_min_mib_s:.0f}-{row.stream_max_mib_s:.0f})"
                    ),
                    f"{row.end_to_end_mib_s:.1f} MiB/s",
                    f"{row.cpu_s_per_mib * 1000:.2f} ms",
                    f"{row.peak_rss_growth_bytes / MIB:.1f} MiB",
                    stall_text(row.max_stall_ms, row.max_own_stall_ms),
                    f"{ratio:.1%}" if kind == "ours" else "",
                ]
            )
    return rows


def _ota_rows(ota: list[OtaSummary]) -> list[list[str]]:
    return [
        [
            client.client,
            str(client.runs),
            f"{client.median_s * 1000:.1f} ms",
            f"{client.min_s * 1000:.1f}-{client.max_s * 1000:.1f} ms",
            f"{client.mib_s:.1f} MiB/s",
            f"{client.cpu_ms:.1f} ms",
            stall_text(client.max_stall_ms, client.max_own_stall_ms),
        ]
        for client in ota
    ]


def render(
    machine: dict[str, Any],
    downloads: dict[float, dict[str, DownloadSummary]],
    ota: list[OtaSummary],
    goals: list[Goal],
    notes: list[str],
    sections: list[list[str]] | None = None,
) -> str:
    """The human-readable report: the parts that ran, then ``sections`` (more tables)."""
    facts = [
        f"nproc {machine['nproc']}",
        machine["cpu_model"],
        f"load {machine['loadavg_start']} (start) / {machine['loadavg_end']} (end)",
        f"Python {machine['python']}",
        f"Linux {machine['kernel']}",
    ]
    download_header = [
        "size",
        "client",
        "tarball",
        "stream",
        "end-to-end",
        "CPU/MiB",
        "peak RSS +",
        "max stall",
        "ours/base",
    ]
    busy = [
        (
            f"NOTE: load {machine['loadavg_start'].split()[0]} on {machine['nproc']} CPUs "
            "before the run: other processes competed for the CPUs, so wall-clock figures "
            "are noisy; CPU per MiB and the 'own' stall are robust to that"
        ),
        "",
    ]
    busy = busy if float(machine["loadavg_start"].split()[0]) >= machine["nproc"] / 2 else []
    ota_header = ["client", "uploads", "median", "range", "throughput", "CPU", "max stall"]
    parts: list[str] = []
    if downloads:
        parts += [
            "Downloads from the real Device Builder (stand-in ESP8266 builds, incompressible)",
            *table(download_header, _download_rows(downloads)),
            "",
        ]
    if ota:
        parts += ["OTA to the device emulator", *table(ota_header, _ota_rows(ota)), ""]
    for section in sections or []:
        parts += [*section, ""]
    if goals:
        parts += [
            "Goals",
            *(f"  {goal.verdict:<4}  {goal.name}: {goal.measured}" for goal in goals),
            "",
        ]
    return "\n".join(
        [
            "Machine: " + ", ".join(facts),
            "",
            *busy,
            *parts,
            "Method",
            *(f"  * {note}" for note in notes),
        ]
    )


def as_json(
    machine: dict[str, Any],
    downloads: dict[float, dict[str, DownloadSummary]],
    ota: list[OtaSummary],
    goals: list[Goal],
    samples: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> str:
    """The machine-readable report: one JSON line (``extra``: more top-level keys)."""
    return json.dumps(
        {
            "machine": machine,
            "downloads": [asdict(row) for pair in downloads.values() for row in pair.values()],
            "ota": [asdict(row) for row in ota],
            "goals": [{**asdict(goal), "verdict": goal.verdict} for goal in goals],
            **(extra or {}),
            "samples": samples,
        },
        separators=(",", ":"),
    )
