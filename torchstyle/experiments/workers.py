"""How one worker of a sweep shares its study and launches each trial.

A trial is ``python -m torchstyle train`` in a subprocess of its own, or a job of a launcher
(torchrun for ``--nproc`` above 1, or any ``--launcher`` template).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

from torchstyle.errors import UserError

# The study's name when ``--study`` names none.
STUDY_NAME = "sweep"


@dataclass
class Workers:
    """How this worker shares its study with others, and how each trial is launched.

    Attributes:
        storage: A resolved storage URL (password included); None for ``SWEEP/study.db``.
        study: The study's name.
        max_retries: Times a trial whose worker was lost is taken over before it is failed.
        heartbeat: Seconds between a running trial's heartbeats.
        grace: Seconds without a heartbeat after which another worker takes a trial over.
        nproc: Processes per trial (started with torchrun, or ``launcher``).
        launcher: A command template with ``{args}`` (the train flags), ``{cmd}`` (the whole
            ``python -m torchstyle train`` line), ``{nproc}`` and ``{python}``.
    """

    storage: str | None = None
    study: str = STUDY_NAME
    max_retries: int = 3
    heartbeat: float = 10.0
    grace: float = 60.0
    nproc: int = 1
    launcher: str | None = None


_TORCHRUN = "{python} -m torch.distributed.run --standalone --nproc-per-node {nproc} -m torchstyle train {args}"
# Run before the launcher's exec: it dies with this worker (Linux), so a killed worker leaves
# no trial training that another worker would then run twice.
_EXEC_DYING_WITH_PARENT = (
    "import ctypes,os,sys; getattr(ctypes.CDLL(None), 'prctl', lambda *a: 0)(1, 9); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def launcher_command(workers: Workers, args: list[str]) -> list[str]:
    """The command that starts one trial with train flags ``args``.

    Raises:
        UserError: A launcher template with an unknown placeholder or without the train flags.
    """
    train = [sys.executable, "-m", "torchstyle", "train", *args]
    if workers.nproc == 1 and not workers.launcher:
        return train
    template = workers.launcher or _TORCHRUN
    if "{args}" not in template and "{cmd}" not in template:
        raise UserError(f"--launcher {template!r}: put {{args}} or {{cmd}} where the trial goes")
    try:
        line = template.format(
            python=shlex.quote(sys.executable),
            nproc=workers.nproc,
            args=shlex.join(args),
            cmd=shlex.join(train),
        )
    except (KeyError, IndexError, ValueError) as e:
        raise UserError(
            f"--launcher {template!r}: unknown placeholder {e}; use {{args}}, {{cmd}}, {{nproc}} or {{python}}"
        ) from None
    return [sys.executable, "-c", _EXEC_DYING_WITH_PARENT, *shlex.split(line)]
