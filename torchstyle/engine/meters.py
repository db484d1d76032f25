"""Throughput and compute efficiency, measured without a host-device sync per step.

Compute efficiency is the share of wall time in which the compute device did *not* wait for
data: ``1 - data_wait / wall``, over the steps since the last report.

* On the CPU the loop itself computes, so the time spent in ``next(loader)`` is the wait.
* On a GPU the host runs ahead of the device; the host blocking on the loader costs nothing
  while the GPU still has queued work. :class:`EfficiencyMeter` records a CUDA event just
  before and just after each fetch. The GPU timestamps an event when it reaches it in its
  queue, so the gap between the two events is exactly the time the GPU sat idle waiting for
  that batch (zero while it was still busy with earlier steps). The events are read only
  when a report is asked for, once every ``log_every`` steps.
"""

from __future__ import annotations

import math
import time

import torch


class EfficiencyMeter:
    """Accumulates data-wait time and wall time between reports.

    Args:
        device: The compute device; CUDA devices are timed with events.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._pool: list[torch.cuda.Event] = []
        self._begin: torch.cuda.Event | None = None
        self.reset()

    def _event(self) -> torch.cuda.Event:
        ev = self._pool.pop() if self._pool else torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def reset(self) -> None:
        """Starts a new measurement window now."""
        self._wait = 0.0
        self._t_start = time.perf_counter()
        self._samples = 0
        if self.cuda:
            for a, b in self._pairs:
                self._pool += [a, b]
            self._pairs = []
            if self._begin is not None:
                self._pool.append(self._begin)
            self._window_start = self._event()

    def fetch_begin(self) -> None:
        """Call right before asking the loader for a batch."""
        if self.cuda:
            self._begin = self._event()
        else:
            self._t_fetch = time.perf_counter()

    def fetch_end(self, num_samples: int) -> None:
        """Call right after the batch is on the device and before the step uses it."""
        self._samples += num_samples
        if self.cuda:
            assert self._begin is not None
            self._pairs.append((self._begin, self._event()))
            self._begin = None
        else:
            self._wait += time.perf_counter() - self._t_fetch

    def report(self) -> tuple[float, float]:
        """Returns ``(compute_efficiency, samples_per_second)`` since the last reset, and resets.

        On CUDA this waits for the device to reach the present point (one sync per report).
        """
        wall = time.perf_counter() - self._t_start
        if self.cuda:
            end = self._event()
            end.synchronize()
            gpu_wall = self._window_start.elapsed_time(end) / 1e3
            wait = sum(a.elapsed_time(b) for a, b in self._pairs) / 1e3
            self._pool.append(end)
            self._pool.append(self._window_start)
            efficiency = 1.0 - wait / gpu_wall if gpu_wall > 0 else 1.0
        else:
            efficiency = 1.0 - self._wait / wall if wall > 0 else 1.0
        rate = self._samples / wall if wall > 0 else 0.0
        self.reset()
        return min(1.0, max(0.0, efficiency)), rate


class MetricBuffer:
    """Per-step training values kept on the device until a report reads them all at once.

    Appending only keeps references (no device op); reading ``log_every`` steps costs one
    stack and one device-to-host copy, and a non-finite loss is found at its exact step.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, torch.Tensor]] = []
        self.first_step = 0

    def append(self, step: int, values: dict[str, torch.Tensor]) -> None:
        """Adds one step's detached scalars (device tensors; no sync)."""
        if not self.rows:
            self.first_step = step
        self.rows.append(values)

    def __len__(self) -> int:
        return len(self.rows)

    def drain(self) -> tuple[dict[str, float], int | None]:
        """Returns the per-key means and the first step with a non-finite value (or None).

        A key missing from some steps (a phase skipped by ``--nan-policy skip``) is averaged
        over the steps that have it.
        """
        if not self.rows:
            return {}, None
        rows, self.rows = self.rows, []
        flat = [v.reshape(()) for row in rows for v in row.values()]
        values = iter(torch.stack(flat).double().tolist())  # the one device-to-host copy
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        bad_step = None
        for i, row in enumerate(rows):
            for k in row:
                v = next(values)
                if bad_step is None and not math.isfinite(v):
                    bad_step = self.first_step + i
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
        return {k: sums[k] / counts[k] for k in sums}, bad_step
