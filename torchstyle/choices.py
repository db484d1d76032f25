"""The names training settings choose from: optimizers, schedules, strategies, AMP modes.

A leaf: ``config`` checks flags against these names and the engine keys its tables by them
(``models.base.OPTIMIZERS``, ``engine.schedulers.SCHEDULERS``, ``engine.strategies.STRATEGIES``
and ``AMP_DTYPES``; ``tests/engine/test_config.py`` checks they agree), so neither ``config``
nor ``engine`` imports the other for them, and listing them imports no torch.
"""

from __future__ import annotations

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("cosine", "step", "onecycle", "plateau")
STRATEGIES = ("single", "dp", "ddp", "fsdp")
AMP_MODES = ("off", "bf16", "fp16")
