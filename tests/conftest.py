"""Fixtures for every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zeroconf

_SENTINEL = object()


@pytest.fixture(autouse=True)
def _zeroconf_class_restored() -> Iterator[None]:
    """Undo Home Assistant's shared-instance catcher on the ``Zeroconf`` class.

    Once its zeroconf component ran in a process, ``Zeroconf()`` returns that test's
    (mocked) shared instance for ever after; the device emulator and the mDNS tests need
    real ones, whatever ran before them on the same worker.
    """
    saved = {name: vars(zeroconf.Zeroconf).get(name, _SENTINEL) for name in ("__new__", "__init__")}
    yield
    for name, value in saved.items():
        if vars(zeroconf.Zeroconf).get(name, _SENTINEL) is value:
            continue
        if value is not _SENTINEL:
            setattr(zeroconf.Zeroconf, name, value)
        else:  # inherited originally; a deleted slot would not fall back cleanly
            setattr(zeroconf.Zeroconf, name, _plain_new)


def _plain_new(cls: type, *_args: object, **_kwargs: object) -> object:
    """What ``Zeroconf()`` allocates with when nothing overrides it."""
    return object.__new__(cls)
