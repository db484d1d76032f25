"""The training recipe (a leaf module: the config and the engine both read it): presets (``--recipe``), their resolution, and the checks of each value.

A recipe setting left unset (None) takes the value of the ``--recipe`` preset, else its
"off" value; a flag (or config-file key) given always wins over the preset. Presets may also
fill ordinary settings (optimizer, schedule, weight decay), but only those the user did not
give (:func:`preset_defaults`, used where flags are merged). The resolved values are written
into the run's config, so ``config.json`` says what ran and a resume compares like with like.
"""

from __future__ import annotations

import math
from typing import Any

from torchstyle.errors import UserError

# The settings (a torchstyle.config.TrainConfig); this module imports nothing of ours but the
# errors, so that the config and the engine may both import it.
TrainConfig = Any

#: The value each recipe setting takes when neither a flag nor a preset gives one.
OFF: dict[str, Any] = {
    "label_smoothing": 0.0,
    "mixup": 0.0,
    "cutmix": 0.0,
    "mix_switch_prob": 0.5,
    "random_erasing": 0.0,
    "warmup_epochs": 0.0,
    "warmup_steps": 0,
    "ema": 0.0,
    "layer_decay": 0.0,
    "drop_path": 0.0,
}

#: What a run saved before these settings existed ran with (compared on resume).
BEFORE_RECIPES: dict[str, Any] = {
    **OFF,
    "ema_eval": False,
    "decay_norms_and_biases": False,
    "normalize": "none",
}

#: Presets. ``finetune``: a pretrained model on a small dataset (light regularisation, a
#: short warm-up, cosine decay); ``scratch``: random weights (strong augmentation and mixing,
#: longer warm-up), after timm's and DeiT's recipes scaled to short runs.
PRESETS: dict[str, dict[str, Any]] = {
    "finetune": {
        "optimizer": "adamw",
        "weight_decay": 0.05,
        "scheduler": "cosine",
        "warmup_epochs": 1.0,
        "label_smoothing": 0.1,
    },
    "scratch": {
        "optimizer": "adamw",
        "weight_decay": 0.05,
        "scheduler": "cosine",
        "warmup_epochs": 2.0,
        "label_smoothing": 0.1,
        "mixup": 0.8,
        "cutmix": 1.0,
        "mix_switch_prob": 0.5,
        "augment": "randaugment",
        "random_erasing": 0.25,
    },
}

# Settings a preset fills only where they were not given (their dataclass default is a value,
# so "not given" is only known where flags and config files are merged).
_ORDINARY = ("optimizer", "weight_decay", "scheduler", "augment")


def preset_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (merged flags and config file) completed with its ``recipe`` preset's values.

    Only keys absent from ``given`` are filled: any flag typed overrides its preset value.
    """
    name = given.get("recipe")
    if name not in PRESETS:  # none, or a bad name that validate() reports
        return given
    filled = dict(given)
    for key, value in PRESETS[name].items():
        if key in _ORDINARY and key not in filled:
            filled[key] = value
    return filled


def resolve(cfg: TrainConfig) -> None:
    """Sets every unset recipe setting to its preset's value, else its off value (in place)."""
    preset = PRESETS.get(cfg.recipe or "", {})
    for key, off in OFF.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, preset.get(key, off))


def _in_range(cfg: TrainConfig, name: str, low: float, high: float, *, closed: bool) -> None:
    value = getattr(cfg, name)
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and low <= value and (value <= high if closed else value < high)
    if not ok:
        bracket = "]" if closed else ")"
        raise UserError(
            f"--{name.replace('_', '-')} must be a number in [{low}, {high}{bracket}, got {value!r}"
        )


def check_recipe_values(cfg: TrainConfig) -> None:
    """Refuses recipe values out of range, or that contradict each other.

    Raises:
        UserError: Names the flag and the range it takes.
    """
    for name in ("label_smoothing", "random_erasing", "mix_switch_prob", "drop_path"):
        _in_range(cfg, name, 0.0, 1.0, closed=name != "label_smoothing")
    _in_range(cfg, "ema", 0.0, 1.0, closed=False)
    _in_range(cfg, "layer_decay", 0.0, 1.0, closed=True)
    for name in ("mixup", "cutmix", "warmup_epochs"):
        _in_range(cfg, name, 0.0, float("inf"), closed=False)
    if cfg.warmup_steps is not None and (
        isinstance(cfg.warmup_steps, bool) or cfg.warmup_steps < 0
    ):
        raise UserError(f"--warmup-steps must be an integer >= 0, got {cfg.warmup_steps!r}")
    if cfg.warmup_steps and cfg.warmup_epochs:
        raise UserError("--warmup-epochs and --warmup-steps say the same thing; give one")
    if cfg.ema_eval and not cfg.ema:
        raise UserError("--ema-eval evaluates the averaged weights: give --ema DECAY (0.999, say)")
    if cfg.normalize is not None:
        parse_normalize(cfg.normalize)


def parse_normalize(text: str) -> tuple[list[float], list[float]] | str:
    """``imagenet`` / ``none`` as they are, or ``MEAN,STD`` (2 or 2*C numbers) as lists.

    Raises:
        UserError: Not one of those forms, or a standard deviation that is not positive.
    """
    if text in ("imagenet", "none"):
        return text
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) < 2 or len(values) % 2:
        raise UserError(
            f"--normalize {text!r}: give imagenet, none, or MEAN,STD (for example 0.5,0.25, "
            "or 0.485,0.456,0.406,0.229,0.224,0.225 for three channels)"
        )
    half = len(values) // 2
    mean, std = values[:half], values[half:]
    if not all(s > 0 for s in std):
        raise UserError(f"--normalize {text!r}: every standard deviation must be positive")
    return mean, std


# torchvision builders whose stochastic depth is the ``stochastic_depth_prob`` argument.
_TORCHVISION_DEPTH = ("convnext", "efficientnet", "swin", "maxvit")


def apply_drop_path(cfg: TrainConfig) -> None:
    """Passes ``--drop-path`` to the model's own argument (in place, into ``model_args``).

    Raises:
        UserError: The model has no stochastic depth that torchstyle knows of.
    """
    rate = cfg.drop_path
    if not rate:
        return
    lib, _, name = cfg.model.partition(":")
    if lib == "timm":
        arg = "drop_path_rate"
    elif lib == "torchvision" and name.startswith(_TORCHVISION_DEPTH):
        arg = "stochastic_depth_prob"
    else:
        raise UserError(
            f"--drop-path: {cfg.model} has no stochastic depth torchstyle knows of (timm models "
            f"and torchvision {', '.join(_TORCHVISION_DEPTH)} have); drop --drop-path, or pass "
            "the model's own argument with --model-arg"
        )
    given = cfg.model_args.get(arg)
    if given is not None and given != rate:
        raise UserError(f"--drop-path {rate} and --model-arg {arg}={given} disagree; give one")
    cfg.model_args = {**cfg.model_args, arg: rate}


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The warm-up's length in optimizer steps (``--warmup-steps``, or epochs rounded up)."""
    if cfg.warmup_steps:
        return int(cfg.warmup_steps)
    return math.ceil(float(cfg.warmup_epochs or 0.0) * steps_per_epoch)


def describe(cfg: TrainConfig) -> list[str]:
    """The start-up summary's recipe lines (what each setting resolved to)."""
    head = f"recipe:   {cfg.recipe or 'none'}; optimizer {cfg.optimizer or 'model default'}, "
    head += f"weight decay {cfg.weight_decay:g}"
    head += " (norms and biases too)" if cfg.decay_norms_and_biases else " (not on norms, biases)"
    head += f", schedule {cfg.scheduler}"
    warm = f"{cfg.warmup_steps} steps" if cfg.warmup_steps else f"{cfg.warmup_epochs:g} epochs"
    return [
        head,
        f"          warm-up {warm}, label smoothing {cfg.label_smoothing:g}, mixup "
        f"{cfg.mixup:g}, cutmix {cfg.cutmix:g} (switch {cfg.mix_switch_prob:g}), random "
        f"erasing {cfg.random_erasing:g}",
        f"          EMA {cfg.ema:g}{' (evaluated)' if cfg.ema_eval else ''}, layer decay "
        f"{cfg.layer_decay:g}, drop path {cfg.drop_path:g}, normalize {cfg.normalize}",
    ]
