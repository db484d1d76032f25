"""Runs ``torchstyle train ARGS`` in this process with one fault injected (crash tests).

Usage: python fault_run.py MODE N train ARGS...

MODE:
  sigterm-at-step    send SIGTERM to this process after optimizer step N
  sigkill-at-step    SIGKILL after optimizer step N
  sigkill-in-save    SIGKILL during the N-th checkpoint write, half of its bytes on disk
  sigkill-before-rename  SIGKILL after the N-th checkpoint file is written and fsynced,
                     before it is renamed over latest.pt
  sigusr1-at-step    send SIGUSR1 (SLURM's warning before a time limit) after step N
  rmtree-at-step     delete the run folder after optimizer step N
  kill-random        N seeds a random moment: an even N kills after the 1st to 4th step of
                     this process, an odd N during its 1st or 2nd background checkpoint write
                     (half of the bytes on disk); says which on stderr before the kill
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import sys
import threading

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


class RemoveFolderAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, step):
        if step == self.step:
            trainer.checkpoints.wait()
            shutil.rmtree(trainer.run_dir)


class KillAfterSteps(Callback):
    def __init__(self, steps: int) -> None:
        self.left = steps

    def on_step_end(self, trainer, step):
        self.left -= 1
        if self.left == 0:
            os.write(2, f"fault: SIGKILL after step {step}\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)


def with_callback(callback: Callback) -> None:
    base = trainer_module.Trainer

    class FaultyTrainer(base):
        def __init__(self, cfg, *, callbacks=(), **kw):
            super().__init__(cfg, callbacks=[*callbacks, callback], **kw)

    trainer_module.Trainer = FaultyTrainer


rng = random.Random(n)
if mode in ("sigterm-at-step", "sigkill-at-step", "sigusr1-at-step"):
    sig = {"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL, "sigusr1": signal.SIGUSR1}
    with_callback(SignalAtStep(n, sig[mode.split("-")[0]]))
elif mode == "rmtree-at-step":
    with_callback(RemoveFolderAtStep(n))
elif mode == "kill-random" and n % 2 == 0:
    with_callback(KillAfterSteps(rng.randint(1, 4)))
else:
    real_save = torch.save
    real_replace = os.replace
    calls = {"save": 0, "background": 0}
    background_kill = rng.randint(1, 2)

    def faulty_save(obj, f, *args, **kwargs):
        calls["save"] += 1
        in_background = False
        if threading.current_thread().name == "checkpoint-writer":
            calls["background"] += 1
            in_background = mode == "kill-random" and calls["background"] == background_kill
        if in_background:
            os.write(2, f"fault: SIGKILL during background write {background_kill}\n".encode())
        if (mode == "sigkill-in-save" and calls["save"] == n) or in_background:
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            f.sync() if hasattr(f, "sync") else os.fsync(f.fileno())
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
