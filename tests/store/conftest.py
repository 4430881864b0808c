"""Fixtures of the build store tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
import itertools
import os
from pathlib import Path

import pytest

from custom_components.esphome_remote_build.store import BuildStore

from .helpers import Member, StepClock, Tarball, esp32_members, write_tarball


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "config" / "esphome_remote_build" / "builds"


@pytest.fixture
def store(root: Path) -> BuildStore:
    return BuildStore(root, clock=StepClock())


@pytest.fixture
def make_tarball(tmp_path: Path) -> Callable[..., Tarball]:
    counter = itertools.count()

    def make(members: list[Member] | None = None, firmware_offset: str = "0x10000") -> Tarball:
        path = tmp_path / "downloads" / f"artifacts-{next(counter)}.tar.gz"
        path.parent.mkdir(exist_ok=True)
        return write_tarball(path, esp32_members() if members is None else members, firmware_offset)

    return make


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(previous)
