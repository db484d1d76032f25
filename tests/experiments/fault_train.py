"""Runs ``torchstyle train ARGS`` in this process with one fault at an optimizer step.

Usage: python fault_train.py MODE N train ARGS...

MODE:
  raise     raise RuntimeError("injected fault") after step N (an unexpected error)
  sigterm   send SIGTERM to this process after step N (a clean interrupt)
  sigkill   SIGKILL this process after step N (no chance to record anything)
  hold      sleep after step N until killed (a run that is still running)
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torchstyle.engine.trainer as trainer_module
from torchstyle.cli import main
from torchstyle.engine.callbacks import Callback

mode, n = sys.argv[1], int(sys.argv[2])


class Fault(Callback):
    def on_step_end(self, trainer, step):
        if step != n:
            return
        if mode == "raise":
            raise RuntimeError("injected fault")
        if mode == "hold":
            (trainer.run_dir / "holding").write_text("")
            time.sleep(3600)  # until the test kills it
        os.kill(os.getpid(), signal.SIGTERM if mode == "sigterm" else signal.SIGKILL)


base = trainer_module.Trainer


class FaultyTrainer(base):
    def __init__(self, cfg, *, callbacks=(), **kw):
        super().__init__(cfg, callbacks=[*callbacks, Fault()], **kw)


trainer_module.Trainer = FaultyTrainer
sys.exit(main(sys.argv[3:]))
