"""Benchmark helper inside the measured Home Assistant: its heap, as seen from the inside.

``scripts/bench`` links this folder into the benchmark's ``custom_components`` as
``erb_bench_probe`` and loads it in every Home Assistant it measures (with and without
the integration under test), so it costs both the same. It registers one action that
answers with data: ``erb_bench_probe.memory`` with ``op`` = ``collect`` (a full garbage
collection, then the counts), ``trace_start`` (tracemalloc on, 1 frame), ``trace_read``
(the traced peak, then a full garbage collection and what is still traced: what the
window kept, not garbage waiting for the collector) or ``trace_stop``. Nothing runs
unless it is called.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse

DOMAIN = "erb_bench_probe"


def _memory(call: ServiceCall) -> ServiceResponse:
    """Answer first, allocate after: the traced figures must not include this call's own."""
    op = call.data.get("op", "collect")
    traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else None
    answer: dict[str, Any] = {"op": op}
    if traced is not None:
        answer |= {"traced_current": traced[0], "traced_peak": traced[1]}
    if op == "collect":
        answer["collected"] = gc.collect()
        # Counted only here, never while tracing: the list itself is megabytes.
        answer["gc_objects"] = len(gc.get_objects())
    elif op == "trace_start":
        tracemalloc.start(1)
    elif op == "trace_read":
        answer["collected"] = gc.collect()
        answer["traced_kept"] = tracemalloc.get_traced_memory()[0]
    elif op == "trace_stop":
        tracemalloc.stop()
    else:
        raise ValueError(f"unknown op {op!r}")
    return answer


async def async_setup(hass: HomeAssistant, config: dict[str, Any]) -> bool:
    """Register the probe's action (configuration.yaml: ``erb_bench_probe:``)."""
    hass.services.async_register(DOMAIN, "memory", _memory, supports_response=SupportsResponse.ONLY)
    return True
