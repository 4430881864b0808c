"""Turn one interop run per Device Builder release into a version x capability table.

``scripts/interop`` runs ``pytest tests/interop`` once per release with ``--junitxml``
and leaves, per release, a folder ``<results>/<version>/`` holding ``junit.xml``,
``pytest.rc`` (pytest's exit status) and ``versions.json`` (the installed
``esphome-device-builder`` and ``esphome``). This helper maps every test to the
capabilities it proves (``CAPABILITIES``: test-id prefixes), prints one row per release
(Markdown with ``--markdown``) and exits 1 when a release in the supported range
(``--supported-from``) failed, errored, ran no tests, or left a test unmapped.

A cell reads ``pass N`` (all N tests passed), ``FAIL f/N`` (f of them failed or
errored), ``skip N`` or ``pass p, skip s``; ``-`` means no test of that capability ran.
A test counts in every capability it proves, so one failure can mark several cells.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
import json
from pathlib import Path
import re
import sys
import xml.etree.ElementTree as ET

# Capability -> test ids (``<module>::<test name>``) or prefixes of them that prove it.
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "harness": (
        "test_harness::test_headless_builder_serves_with_pairing_window",
        "test_harness::test_restart_keeps_identity_and_ports",
        "test_harness::test_dashboard_mode_operator_api",
        "test_harness::test_builder_job_runner_runs_the_standin",
        "test_harness::test_standin_esp32_factory_image_holds_every_image",
        "test_harness::test_standin_image_size_knobs",
        "test_harness::test_standin_failure_paths",
        "test_harness::test_standin_forwards_other_commands_to_real_esphome",
        "test_harness::test_standin_finds_the_sub_command",
    ),
    "preview": ("test_peerlink_real::test_preview",),
    "pair: key": (
        "test_peerlink_real::test_wrong_pairing_key_is_refused_then_right_key_approves",
        "test_peerlink_real::test_pin_mismatch_stops_before_msg3",
    ),
    "pair: approval": (
        "test_compat_real::test_pairing_via_dashboard_approval",
        "test_peerlink_real::test_dashboard_approval_then_revocation",
    ),
    "revocation": ("test_peerlink_real::test_dashboard_approval_then_revocation",),
    "session": (
        "test_peerlink_real::test_session_stays_alive_on_pongs",
        "test_compat_real::test_paired_client_reconnects_after_builder_restart",
    ),
    # The receiver's own packer run on a stand-in build, then the whole job over the link.
    "build+download ESP8266": (
        "test_harness::test_standin_build_is_what_the_receiver_packs[esp8266]",
        "test_peerlink_real::test_submit_build_download_verify[esp8266",
    ),
    "build+download ESP32": (
        "test_harness::test_standin_build_is_what_the_receiver_packs[esp32]",
        "test_peerlink_real::test_submit_build_download_verify[esp32",
    ),
    "failed build, unknown job": ("test_peerlink_real::test_unknown_job_and_failed_build",),
    "cancel": ("test_peerlink_real::test_cancel_a_running_build",),
    "HA end to end": ("test_ha_real::",),
    "HA update entity": ("test_update_real::",),
    "ESPHome version, clean": ("test_build_options_real::",),
}
UNMAPPED = "unmapped"
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


def version_key(version: str) -> tuple[int, ...]:
    """Numeric key of a release (``1.23.1`` -> ``(1, 23, 1)``); a results folder may add
    ``-esphome-<version>`` (that release with a pinned ESPHome), which sorts after it."""
    release, _, esphome = version.partition("-esphome-")
    return tuple(int(part) for part in re.findall(r"\d+", release)) + tuple(
        int(part) for part in re.findall(r"\d+", esphome)
    )


def release_key(version: str) -> tuple[int, ...]:
    """The Device Builder release alone (what the supported range is about)."""
    return version_key(version.partition("-esphome-")[0])


def case_id(classname: str, name: str) -> str:
    """``tests.interop.test_x`` + ``test_y[p]`` -> ``test_x::test_y[p]``."""
    return f"{classname.rsplit('.', 1)[-1]}::{name}"


def capabilities_of(test: str) -> list[str]:
    found = [
        capability
        for capability, prefixes in CAPABILITIES.items()
        if any(test.startswith(prefix) for prefix in prefixes)
    ]
    return found or [UNMAPPED]


@dataclass
class Run:
    """One release's interop run."""

    version: str
    builder: str = "?"
    esphome: str = "?"
    exit_status: int | None = None
    seconds: float | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # test id -> outcome

    @classmethod
    def load(cls, folder: Path) -> Run:
        run = cls(folder.name)
        versions = folder / "versions.json"
        if versions.is_file():
            installed = json.loads(versions.read_text(encoding="utf-8"))
            run.builder = installed.get("esphome-device-builder", "?")
            run.esphome = installed.get("esphome", "?")
        status = folder / "pytest.rc"
        if status.is_file():
            run.exit_status = int(status.read_text(encoding="ascii").strip())
        seconds = folder / "seconds"
        if seconds.is_file():
            run.seconds = float(seconds.read_text(encoding="ascii").strip())
        junit = folder / "junit.xml"
        if junit.is_file():
            tree = ET.parse(junit)  # noqa: S314 - written by our own pytest run
            for case in tree.getroot().iter("testcase"):
                outcome = PASSED
                if case.find("failure") is not None or case.find("error") is not None:
                    outcome = FAILED
                elif case.find("skipped") is not None:
                    outcome = SKIPPED
                test = case_id(case.get("classname", ""), case.get("name", ""))
                # A test that passed but errored at teardown appears twice: keep the worst.
                if run.outcomes.get(test) != FAILED:
                    run.outcomes[test] = outcome
        return run

    def counts(self) -> dict[str, Counter[str]]:
        per: dict[str, Counter[str]] = {}
        for test, outcome in self.outcomes.items():
            for capability in capabilities_of(test):
                per.setdefault(capability, Counter())[outcome] += 1
        return per

    def failures(self) -> list[str]:
        return sorted(test for test, outcome in self.outcomes.items() if outcome == FAILED)

    def problems(self) -> list[str]:
        """Why this run does not count as a pass (empty when it does)."""
        found = [f"failed: {test}" for test in self.failures()]
        if not self.outcomes:
            found.append("no test results (junit.xml missing or empty)")
        if self.exit_status not in (0, None) and not self.failures():
            found.append(f"pytest exited with status {self.exit_status}")
        if self.exit_status is None:
            found.append("pytest did not run (pytest.rc missing)")
        if UNMAPPED in self.counts():
            unmapped = sorted(t for t in self.outcomes if capabilities_of(t) == [UNMAPPED])
            found.append(f"tests mapped to no capability: {', '.join(unmapped)}")
        return found


def cell(counts: Counter[str] | None) -> str:
    if not counts:
        return "-"
    total = sum(counts.values())
    if counts[FAILED]:
        return f"FAIL {counts[FAILED]}/{total}"
    if counts[SKIPPED] and counts[PASSED]:
        return f"pass {counts[PASSED]}, skip {counts[SKIPPED]}"
    if counts[SKIPPED]:
        return f"skip {total}"
    return f"pass {total}"


def table(runs: Sequence[Run], supported_from: str, *, markdown: bool) -> str:
    columns = list(CAPABILITIES)
    if any(UNMAPPED in run.counts() for run in runs):
        columns.append(UNMAPPED)
    header = ["Device Builder", "ESPHome", "supported", *columns, "tests", "time"]
    rows = []
    for run in runs:
        counts = run.counts()
        supported = release_key(run.version) >= release_key(supported_from)
        verdict = "FAIL" if run.problems() else "pass"
        rows.append(
            [
                run.builder if run.builder != "?" else run.version,
                run.esphome,
                "yes" if supported else "no",
                *(cell(counts.get(column)) for column in columns),
                f"{verdict} ({len(run.outcomes)})",
                "?" if run.seconds is None else f"{run.seconds:.0f} s",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("results", type=Path, help="folder with one sub-folder per release")
    parser.add_argument(
        "versions", nargs="*", help="releases to show, in this order (default: every folder)"
    )
    parser.add_argument("--supported-from", default="1.23.1", help="oldest supported release")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)

    versions = args.versions or sorted(
        (p.name for p in args.results.iterdir() if p.is_dir()), key=version_key
    )
    runs = [Run.load(args.results / version) for version in versions]
    print(table(runs, args.supported_from, markdown=args.markdown))
    status = 0
    for run in runs:
        problems = run.problems()
        if not problems:
            continue
        supported = release_key(run.version) >= release_key(args.supported_from)
        if supported:
            status = 1
        label = "" if supported else " (outside the supported range: informative)"
        print(f"\n{run.version}{label}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
