"""Runs ``torchstyle train ARGS`` in this process with one fault injected (crash tests).

Usage: python fault_run.py MODE N train ARGS...

MODE:
  sigterm-at-step    send SIGTERM to this process after optimizer step N
  sigkill-at-step    SIGKILL after optimizer step N
  sigkill-in-save    SIGKILL during the N-th checkpoint write, half of its bytes on disk
  sigkill-before-rename  SIGKILL after the N-th checkpoint file is written and fsynced,
                     before it is renamed over latest.pt
"""

from __future__ import annotations

import io
import os
import signal
import sys

import torch

import torchstyle.engine.checkpoint as checkpoint
import torchstyle.engine.trainer as trainer_module
from torchstyle.cli import main
from torchstyle.engine.callbacks import Callback

mode, n = sys.argv[1], int(sys.argv[2])
argv = sys.argv[3:]


class SignalAtStep(Callback):
    def __init__(self, step: int, sig: int) -> None:
        self.step, self.sig = step, sig

    def on_step_end(self, trainer, step):
        if step == self.step:
            os.kill(os.getpid(), self.sig)


if mode in ("sigterm-at-step", "sigkill-at-step"):
    sig = signal.SIGTERM if mode == "sigterm-at-step" else signal.SIGKILL
    base = trainer_module.Trainer

    class FaultyTrainer(base):
        def __init__(self, cfg, **kw):
            super().__init__(cfg, callbacks=[SignalAtStep(n, sig)], **kw)

    trainer_module.Trainer = FaultyTrainer
else:
    real_save = torch.save
    real_replace = os.replace
    calls = {"save": 0}

    def faulty_save(obj, f, *args, **kwargs):
        calls["save"] += 1
        if mode == "sigkill-in-save" and calls["save"] == n:
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    def faulty_replace(src, dst):
        if (
            mode == "sigkill-before-rename"
            and calls["save"] == n
            and str(dst).endswith("latest.pt")
        ):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)

    checkpoint.torch.save = faulty_save
    checkpoint.os.replace = faulty_replace

sys.exit(main(argv))
