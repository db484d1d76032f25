"""The efficiency meter's CUDA branch, run on any machine with stand-in events and clocks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from torchstyle.engine import meters
from torchstyle.engine.meters import EfficiencyMeter


class Clocks:
    """The device's clock (what an event records) and the host's, both set by the test."""

    def __init__(self) -> None:
        self.device_ms = 0.0
        self.host_s = 0.0
        self.events_made = 0


@pytest.fixture
def clocks(monkeypatch):
    """Replaces ``torch.cuda.Event`` and the meter's host clock with ones the test moves."""
    c = Clocks()

    class StandInEvent:
        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing, "the meter must ask for timing events"
            c.events_made += 1
            self.at: float | None = None
            self.synchronized = False

        def record(self) -> None:
            self.at = c.device_ms

        def synchronize(self) -> None:
            self.synchronized = True

        def elapsed_time(self, end: StandInEvent) -> float:
            assert self.at is not None and end.at is not None, "an event was never recorded"
            return end.at - self.at

    monkeypatch.setattr(torch.cuda, "Event", StandInEvent)
    monkeypatch.setattr(meters, "time", SimpleNamespace(perf_counter=lambda: c.host_s))
    return c


def _step(meter: EfficiencyMeter, clocks: Clocks, *, idle_ms: float, busy_ms: float) -> None:
    """One batch: the device waits ``idle_ms`` for it, then computes ``busy_ms``."""
    meter.fetch_begin()
    clocks.device_ms += idle_ms
    meter.fetch_end(16)
    clocks.device_ms += busy_ms


def test_cuda_branch_counts_only_the_time_the_device_waited(clocks):
    meter = EfficiencyMeter(torch.device("cuda"))
    assert meter.cuda
    _step(meter, clocks, idle_ms=3.0, busy_ms=7.0)  # the device waited for the first batch
    _step(meter, clocks, idle_ms=0.0, busy_ms=10.0)  # the next was there before it was needed
    clocks.host_s = 0.040  # the host's own time: what samples per second is over
    efficiency, rate = meter.report()
    assert efficiency == pytest.approx(1 - 3.0 / 20.0)
    assert rate == pytest.approx(32 / 0.040)

    # A new window starts at the report; its events come from the pool, not new allocations.
    made = clocks.events_made
    _step(meter, clocks, idle_ms=5.0, busy_ms=5.0)
    clocks.host_s = 0.050
    efficiency, rate = meter.report()
    assert efficiency == pytest.approx(0.5)
    assert rate == pytest.approx(16 / 0.010)
    assert clocks.events_made == made


def test_cuda_branch_with_no_device_time_reports_full_efficiency(clocks):
    meter = EfficiencyMeter(torch.device("cuda"))
    efficiency, rate = meter.report()
    assert (efficiency, rate) == (1.0, 0.0)


def test_cpu_branch_counts_the_time_spent_fetching(clocks):
    meter = EfficiencyMeter(torch.device("cpu"))
    assert not meter.cuda
    meter.fetch_begin()
    clocks.host_s += 0.004
    meter.fetch_end(16)
    clocks.host_s += 0.012
    efficiency, rate = meter.report()
    assert efficiency == pytest.approx(0.75)
    assert rate == pytest.approx(16 / 0.016)
    assert clocks.events_made == 0  # no CUDA event on the CPU
