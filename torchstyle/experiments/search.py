"""A sweep's search: what varies, what is fixed, what is optimized and how trials are pruned.

``parse_spec`` checks a sweep config (every name a ``torchstyle train`` flag, every range
sound); the rest turns a trial's parameters into Optuna distributions and back into the
``torchstyle train`` flags of the trial.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from torchstyle.errors import UserError

PRUNERS = ("median", "hyperband", "none")
# Flags a sweep owns: each trial gets its own folder and no progress bar.
RESERVED = frozenset({"run_dir", "resume", "overwrite", "progress", "config"})
_SPACE_KEYS = {
    "int": {"type", "low", "high", "step", "log"},
    "float": {"type", "low", "high", "step", "log"},
    "categorical": {"type", "choices"},
}


@dataclass
class SweepSpec:
    """A sweep's search: what varies, what is fixed, what is optimized and how trials are pruned."""

    space: dict[str, dict[str, Any]]
    fixed: dict[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"
    direction: str = "maximize"
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "median"})
    seed: int | None = None
    trials: int = 10
    jobs: int = 1
    study: str | None = None

    def search(self) -> dict[str, Any]:
        """The part that must not change between a sweep and its continuation."""
        d = dataclasses.asdict(self)
        return {k: d[k] for k in ("space", "fixed", "metric", "direction", "pruner", "seed")}


def _flag_names() -> set[str]:
    from torchstyle.config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def _check_flag(name: str, where: str, known: set[str]) -> str:
    """Normalizes ``batch-size`` to ``batch_size``; refuses unknown and sweep-owned flags."""
    key = name.replace("-", "_")
    if key.startswith("model_args.") or key.startswith("model_arg."):
        return "model_args." + key.split(".", 1)[1]
    if key not in known:
        raise UserError(
            f"{where}: {name!r} is not a train flag; use a `torchstyle train` flag name "
            "(e.g. lr, batch_size, optimizer) or model_args.NAME"
        )
    if key in RESERVED:
        raise UserError(f"{where}: {name!r} is set by the sweep itself; remove it")
    return key


def _check_space(name: str, spec: Any, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict) or spec.get("type") not in _SPACE_KEYS:
        raise UserError(
            f'{where}.{name}: give a table with type = "int", "float" or "categorical", '
            'e.g. {type = "float", low = 1e-4, high = 0.1, log = true}'
        )
    kind = spec["type"]
    extra = sorted(set(spec) - _SPACE_KEYS[kind])
    if extra:
        raise UserError(f"{where}.{name}: unknown key(s) {', '.join(extra)} for a {kind} parameter")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}.{name}: choices must be a non-empty list")
        return {"type": kind, "choices": choices}
    number = int if kind == "int" else (int, float)
    low, high = spec.get("low"), spec.get("high")
    ok = all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high))
    if not ok or low is None or high is None or low >= high:
        raise UserError(
            f"{where}.{name}: a {kind} parameter needs numbers low < high, got {low!r}, {high!r}"
        )
    if spec.get("log") and float(low) <= 0:
        raise UserError(f"{where}.{name}: a log-scale range needs low > 0, got {low!r}")
    if spec.get("log") and spec.get("step") is not None:
        raise UserError(f"{where}.{name}: pick log or step, not both")
    return {k: spec[k] for k in ("type", "low", "high", "step", "log") if k in spec}


def parse_spec(data: dict[str, Any], source: str) -> SweepSpec:
    """Validates a sweep config (the parsed TOML/JSON).

    Raises:
        UserError: An unknown key, flag or parameter type, or a bad range; the message says where.
    """
    allowed = {"space", "fixed", "metric", "direction", "pruner", "seed", "trials", "jobs", "study"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )
    known = _flag_names()
    space_in = data.get("space")
    if not isinstance(space_in, dict) or not space_in:
        raise UserError(
            f'{source}: add a [space] table, e.g. lr = {{type = "float", low = 1e-4, high = 0.1, log = true}}'
        )
    space = {
        _check_flag(k, f"{source} [space]", known): _check_space(k, v, f"{source} [space]")
        for k, v in space_in.items()
    }
    fixed: dict[str, Any] = {}
    for k, v in (data.get("fixed") or {}).items():
        key = _check_flag(k, f"{source} [fixed]", known)
        if key == "model_args" and isinstance(v, dict):
            fixed.update({f"model_args.{a}": b for a, b in v.items()})
        else:
            fixed[key] = v
    both = sorted(set(space) & set(fixed))
    if both:
        raise UserError(f"{source}: {', '.join(both)} both fixed and searched; keep one")
    pruner = data.get("pruner", {"type": "median"})
    if isinstance(pruner, str):
        pruner = {"type": pruner}
    if not isinstance(pruner, dict) or pruner.get("type", "median") not in PRUNERS:
        raise UserError(f"{source}: pruner type must be one of {', '.join(PRUNERS)}")
    pruner = {"type": "median", **pruner}
    if pruner["type"] == "hyperband" and "max_epochs" not in pruner and "epochs" in fixed:
        pruner["max_epochs"] = int(fixed["epochs"])
    direction = data.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise UserError(f"{source}: direction must be maximize or minimize, got {direction!r}")
    spec = SweepSpec(
        space=space,
        fixed=fixed,
        metric=str(data.get("metric", "accuracy")),
        direction=direction,
        pruner=pruner,
        seed=data.get("seed"),
    )
    study = data.get("study")
    if study is not None and (not isinstance(study, str) or not study.strip()):
        raise UserError(f"{source}: study must be a non-empty name, got {study!r}")
    spec.study = study
    for name in ("trials", "jobs"):
        if name in data:
            setattr(spec, name, positive(data[name], f"{source}: {name}"))
    return spec


def positive(value: Any, what: str) -> int:
    """``value`` when it is a whole number of at least 1.

    Raises:
        UserError: Names ``what`` and the value.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{what} must be a positive integer, got {value!r}")
    return value


def distribution(spec: dict[str, Any]) -> Any:
    """The Optuna distribution of one checked ``[space]`` entry."""
    import optuna.distributions as d

    if spec["type"] == "categorical":  # lists (hidden = [64, 64]) are stored as JSON text
        return d.CategoricalDistribution([_encode(c) for c in spec["choices"]])
    log = bool(spec.get("log", False))
    step = spec.get("step")
    if spec["type"] == "int":
        return d.IntDistribution(
            spec["low"], spec["high"], log=log, step=1 if step is None else step
        )
    return d.FloatDistribution(spec["low"], spec["high"], log=log, step=step)


def _encode(choice: Any) -> Any:
    return (
        choice
        if choice is None or isinstance(choice, (bool, int, float, str))
        else json.dumps(choice)
    )


def decode_params(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as flag values: JSON-encoded categorical choices decoded."""
    out = {}
    for key, value in params.items():
        space = spec.space.get(key, {})
        choices = space.get("choices") or []
        out[key] = next((c for c in choices if _encode(c) == value), value)
    return out


def to_flags(settings: dict[str, Any]) -> list[str]:
    """``torchstyle train`` arguments for flat settings (``model_args.X`` -> ``--model-arg X=V``)."""
    args: list[str] = []
    for key, value in settings.items():
        if key.startswith("model_args."):
            args += ["--model-arg", f"{key.split('.', 1)[1]}={json.dumps(value)}"]
        elif isinstance(value, bool):
            args.append(f"--{'' if value else 'no-'}{key.replace('_', '-')}")
        elif value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def command_line(spec: SweepSpec, params: dict[str, Any]) -> str:
    """The full ``torchstyle train`` command of a trial, ready to paste."""
    settings = {**spec.fixed, **decode_params(spec, params)}
    return shlex.join(["torchstyle", "train", *to_flags(settings)])
