"""``TrainConfig``: every training setting in one typed dataclass, with the reason for each default.

One config path: dataclass defaults -> ``--config FILE`` (JSON or TOML) -> command-line flags ->
saved next to the outputs as the guide's ``config.txt`` and as ``config.json``. A resumed run
starts from the saved ``config.json`` instead of the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from torchstyle import extras
from torchstyle.choices import AMP_MODES, OPTIMIZERS, SCHEDULERS, STRATEGIES
from torchstyle.errors import UserError

NAN_POLICIES = ("stop", "skip")
DECODERS = ("cpu", "gpu")
TRACKERS = ("none", "mlflow")  # torchstyle.experiments.tracking.TRACKERS


# Choices of the engine's tables are plain names (``choices.py``); the ones that are the keys
# of a registry are read from it when asked for (imported then, so that building the `lint`
# and `new` commands never imports torch).
def _optimizers() -> list[str]:
    return list(OPTIMIZERS)


def _schedulers() -> list[str]:
    return ["none", *SCHEDULERS]


def _amp_modes() -> list[str]:
    return list(AMP_MODES)


def _strategies() -> list[str]:
    return ["auto", *STRATEGIES]


def _augments() -> list[str]:
    from torchstyle.data.augment import AUGMENTS

    return list(AUGMENTS)


def _sources_help() -> str:
    from torchstyle.data.registry import sources_help

    return sources_help()


def _models() -> list[str]:
    from torchstyle.models import list_models

    return list_models()


#: Each registry-backed setting and where its choices come from.
REGISTRY_CHOICES: dict[str, Callable[[], list[str]]] = {
    "optimizer": _optimizers,
    "scheduler": _schedulers,
    "amp": _amp_modes,
    "strategy": _strategies,
    "augment": _augments,
}


def choices_of(name: str) -> list[str] | None:
    """The allowed values of setting ``name`` (None when any value of its type goes)."""
    field_ = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    fixed = field_.metadata.get("choices")
    if fixed is not None:
        return list(fixed)
    if name in REGISTRY_CHOICES:
        return REGISTRY_CHOICES[name]()
    return None


def __getattr__(name: str) -> Any:
    # The augmentation names, for code that read them here; the data package owns the list.
    if name == "AUGMENTS":
        return tuple(_augments())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _opt(default: Any, help_text: str, **kw: Any) -> Any:
    """A dataclass field that carries its command-line help (and optional fixed choices)."""
    meta = {"help": help_text, **kw}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Settings of one training run. Field comments give the reason for each default."""

    # What to train, on what.
    model: str = _opt(
        "classifier",
        "a registered name ({models}; see `torchstyle models`), path/to/file.py:Name, "
        "package.module:Name, torchvision:NAME or timm:NAME",
    )
    model_args: dict[str, Any] = _opt(
        {}, "model constructor argument KEY=VALUE (VALUE parsed as JSON); repeatable"
    )
    weights: str | None = _opt(
        None, "initialise from this local state_dict (.pt) or .safetensors file (fine-tuning)"
    )
    freeze: list[str] = _opt([], "freeze parameters whose names start with PREFIX; repeatable")
    # None: the model's own embedded data (each model declares it), so a bare
    # `torchstyle train --model NAME` runs offline on any machine.
    data: str | None = _opt(
        None,
        "what to train on: {sources} (default: the model's own: digits for classifiers and "
        "GANs, digits-pairs for pix2pix, stdlib for gpt)",
    )
    data_dir: str | None = _opt(None, "where a named dataset (cifar10) lives")
    val_split: float | None = _opt(
        None,
        "hold out this fraction of train for validation (stratified, fixed by --seed); "
        "default: the source's (digits, cifar10: 0.1; folders: their val/ folder)",
    )
    test_split: float | None = _opt(
        None,
        "for a folder with train/ but no test/: hold out this fraction of train as the test "
        "split (stratified by class, fixed by --seed, recorded in data.json)",
    )
    image_size: int | None = _opt(
        None, "resize images to this side (default: the model's or data's)"
    )
    channels: int | None = _opt(
        None,
        "convert every image to 1 (grayscale) or 3 (RGB) channels (default: decided from the images)",
    )
    download: bool = _opt(False, "allow downloading a missing named dataset (cifar10)")
    skip_bad_images: bool = _opt(False, "skip unreadable images (counted) instead of stopping")

    # Optimisation.
    epochs: int = _opt(10, "number of epochs")
    # 64 fits every built-in model on a CPU and is the guide's own example batch size.
    batch_size: int = _opt(64, "global batch size (split across GPUs/processes)")
    lr: float | None = _opt(None, "learning rate (default: the model's own)")
    optimizer: str | None = _opt(None, "optimizer (default: the model's own)")
    weight_decay: float = _opt(0.0, "weight decay")
    # No schedule by default: it is one less thing between the user and their loop.
    scheduler: str = _opt("none", "learning-rate schedule, stepped per optimizer step")
    accumulate: int = _opt(1, "micro-batches per optimizer step (virtual batch = batch-size x N)")
    clip_grad: float | None = _opt(None, "clip the gradient norm to this value")
    amp: str = _opt("off", "mixed precision autocast")

    # The fine-tuning recipe (torchstyle.recipes). None: the --recipe preset's value,
    # else off; the run records what each resolved to.
    recipe: str | None = _opt(
        None,
        "fill the recipe settings with a preset (finetune, scratch); a flag given overrides "
        "its preset value (default: none)",
        choices=("finetune", "scratch"),
    )
    label_smoothing: float | None = _opt(None, "cross-entropy label smoothing (default: 0)")
    mixup: float | None = _opt(None, "mixup with Beta(ALPHA, ALPHA) per batch (default: 0, off)")
    cutmix: float | None = _opt(None, "cutmix with Beta(ALPHA, ALPHA) per batch (default: 0, off)")
    mix_switch_prob: float | None = _opt(
        None, "with --mixup and --cutmix: the probability that a batch uses cutmix (default: 0.5)"
    )
    random_erasing: float | None = _opt(
        None, "erase a random rectangle of each training image with probability P (default: 0)"
    )
    warmup_epochs: float | None = _opt(
        None, "linear learning-rate warm-up over N epochs, before any --scheduler (default: 0)"
    )
    warmup_steps: int | None = _opt(
        None, "linear warm-up over N optimizer steps (instead of --warmup-epochs)"
    )
    ema: float | None = _opt(
        None, "keep an exponential moving average of the weights with this DECAY (default: off)"
    )
    ema_eval: bool = _opt(
        False, "with --ema: evaluate the averaged weights; they pick best.pt and are tested"
    )
    layer_decay: float | None = _opt(
        None, "layer-wise learning-rate decay (timm models: their layer groups) (default: off)"
    )
    drop_path: float | None = _opt(
        None, "stochastic depth rate, for models that have it (timm, some torchvision) (default: 0)"
    )
    decay_norms_and_biases: bool = _opt(
        False, "also apply --weight-decay to normalisation weights and biases"
    )
    normalize: str | None = _opt(
        None,
        "input normalisation: imagenet, none, or MEAN,STD (one value, or one per channel, "
        "each) (default: the weights' own for torchvision/timm models with --weights, else none)",
    )

    # Data loading. None picks: 0 for in-memory data (workers only add IPC), else min(8, CPUs).
    workers: int | None = _opt(None, "DataLoader worker processes (default: auto)")
    # None: the source's own (digits none, cifar10 crop-flip, folders flip).
    augment: str | None = _opt(None, "training augmentation policy (default: the data source's)")
    data_on_device: bool = _opt(
        False, "hold the whole dataset in device memory; batches and augmentation as device ops"
    )
    # cpu: decode in DataLoader workers (the stock path).
    decode: str = _opt(
        "cpu",
        "where JPEGs are decoded: cpu (workers) or gpu (batched on the compute device)",
        choices=DECODERS,
    )

    # Reproducibility. The guide seeds with 1.
    seed: int = _opt(1, "seed of python, numpy, torch and cuda RNGs and of the data order")
    deterministic: bool = _opt(
        False, "deterministic algorithms only (slower; fails on ops without one)"
    )
    # Off by default: the guide warns it hurts when input shapes vary.
    cudnn_benchmark: bool = _opt(False, "let cuDNN benchmark convolution algorithms (fixed shapes)")

    # Hardware.
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    strategy: str = _opt(
        "auto",
        "one device (single), DataParallel (dp), or DDP or FSDP (sharded) under torchrun",
    )
    cpu_offload: bool = _opt(False, "FSDP: keep the shards in CPU memory")
    activation_checkpointing: bool = _opt(
        False, "FSDP: recompute each block's activations in the backward pass"
    )
    # On: under DDP each process would otherwise normalise only its 1/N of the batch, so the
    # run would train differently from one process (and change when resumed with another
    # number of processes). It costs one small all-reduce per BatchNorm layer and forward.
    sync_batchnorm: bool = _opt(
        True,
        "DDP: BatchNorm statistics over the global batch, as one process computes them "
        "(--no-sync-batchnorm: each process its own share, one all-reduce fewer per layer)",
    )
    compile: bool = _opt(False, "torch.compile the model")
    channels_last: bool = _opt(False, "channels-last memory format (faster convs on tensor cores)")

    # Logging, evaluation, checkpoints.
    # 50 steps: often enough to see curves, rare enough that logging costs nothing measurable.
    log_every: int = _opt(50, "log losses every N optimizer steps")
    eval_every: int = _opt(1, "evaluate every N epochs (0: only at the end)")
    keep: int = _opt(3, "keep the last N epoch checkpoints besides latest and best")
    early_stopping: int = _opt(0, "stop after N evaluations without improvement (0: off)")
    nan_policy: str = _opt(
        "stop", "on a NaN/inf loss: stop, or skip that step", choices=NAN_POLICIES
    )
    max_steps: int | None = _opt(None, "stop after N optimizer steps in total")
    progress: bool = _opt(True, "show the tqdm progress bar")
    tracker: str = _opt(
        "none", "also log to MLflow (MLFLOW_TRACKING_URI, else ./mlruns)", choices=TRACKERS
    )

    # Run folder.
    run_dir: str | None = _opt(None, "run folder (default: runs/MODEL-DATA-TIMESTAMP)")
    resume: str | None = _opt(
        None,
        "resume the run in this folder from its latest checkpoint; 'auto' (with --run-dir) "
        "starts the run, continues it, or says it is finished: the line for a job script",
    )
    overwrite: bool = _opt(False, "replace an existing run folder (only a torchstyle run folder)")
    # Beyond epoch ends. 10 minutes bounds what a SIGKILL or a lost node costs; the write runs
    # in the background, so saving often costs the loop little.
    save_every: int = _opt(0, "also save a checkpoint every N optimizer steps (0: off)")
    save_every_minutes: float = _opt(
        10.0, "also save a checkpoint every M minutes of training (0: off)"
    )

    def validate(self) -> None:
        """Checks value ranges, then makes the paths absolute.

        Raises:
            UserError: A value is out of range; the message names the flag and the fix.
        """
        positive = ("batch_size", "accumulate", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"--{_flag(name)} must be a positive integer, got {value!r}")
        non_negative = ("epochs", "eval_every", "keep", "early_stopping", "save_every")
        for name in non_negative:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"--{_flag(name)} must be an integer >= 0, got {value!r}")
        for name in ("workers", "max_steps", "image_size"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or value < (0 if name == "workers" else 1)
            ):
                raise UserError(f"--{_flag(name)} is out of range: {value!r}")
        if self.channels not in (None, 1, 3):
            raise UserError(f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        if not 0 <= self.save_every_minutes < float("inf"):
            raise UserError(
                f"--save-every-minutes must be a number >= 0, got {self.save_every_minutes!r}"
            )
        for extra in ("timm",):  # checked before the data is built, so before any output
            if str(self.model or "").startswith(f"{extra}:"):
                extras.require(extra, f"--model {extra}:...")
        if self.resume == "auto" and not self.run_dir:
            raise UserError("--resume auto needs --run-dir: the folder the job writes to")
        if isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise UserError(f"--seed must be an integer from 0 to 2**63-1, got {self.seed!r}")
        if self.lr is not None and not (self.lr > 0 and self.lr < float("inf")):
            raise UserError(f"--lr must be a positive number, got {self.lr!r}")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise UserError(f"--clip-grad must be a positive number, got {self.clip_grad!r}")
        if not self.weight_decay >= 0:
            raise UserError(f"--weight-decay must be >= 0, got {self.weight_decay!r}")
        for f in dataclasses.fields(self):
            choices = choices_of(f.name)
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise UserError(
                    f"--{_flag(f.name)} must be one of {', '.join(choices)}, got {value!r}"
                )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise UserError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.data_on_device and self.decode == "gpu":
            raise UserError(
                "--data-on-device and --decode gpu exclude each other: data on the device is already decoded"
            )
        if self.deterministic and self.cudnn_benchmark:
            raise UserError("--deterministic and --cudnn-benchmark contradict each other; pick one")
        from torchstyle.recipes import check_recipe_values

        check_recipe_values(self)
        self._make_paths_absolute()

    def _make_paths_absolute(self) -> None:
        """Records every path absolute, so the run opens from any directory and a later
        value is compared with it after resolving."""
        from torchstyle.data.registry import absolute_data

        if self.data:
            self.data = absolute_data(self.data)
        for name in ("data_dir", "weights", "run_dir", "resume"):
            value = getattr(self, name)
            if value and value != "auto":
                setattr(self, name, str(Path(os.path.expanduser(value)).resolve()))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict."""
        return asdict(self)

    def save(self, run_dir: Path) -> None:
        """Writes the guide's ``config.txt`` (the parsed namespace) and ``config.json``."""
        from torchstyle import writes

        fix = "or pass another --run-dir"
        namespace = str(argparse.Namespace(**self.to_dict())) + "\n"
        writes.atomic_write_text(run_dir / "config.txt", namespace, fix=fix)
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        writes.atomic_write_text(run_dir / "config.json", text, fix=fix)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        """Builds from a dict, refusing unknown keys (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"{source}: {_unknown_settings(unknown, known)}")
        cfg = cls(**d)
        _check_types(cfg, source)
        return cfg


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _unknown_settings(unknown: list[str], known: set[str]) -> str:
    """Names the unknown settings, each with its likely intended name."""
    import difflib

    parts = []
    for name in unknown:
        guess = name.replace("-", "_").lower()
        close = [guess] if guess in known else difflib.get_close_matches(guess, known, n=1)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return (
        f"unknown setting(s) {', '.join(parts)}; settings are named like the flags, with "
        f"underscores: {', '.join(sorted(known))}"
    )


# What a config file may give for each field type (an int is a fine float).
_ACCEPTED = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
    dict: (dict,),
    list: (list,),
}


def _field_type(hint: Any) -> Any:
    """``int | None`` -> int, ``dict[str, Any]`` -> dict, ``str`` -> str."""
    if get_origin(hint) in (dict, list):
        return get_origin(hint)
    args = [a for a in get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _check_types(cfg: TrainConfig, source: str) -> None:
    """Refuses values of the wrong type (config files are untyped; flags are typed by argparse)."""
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None and type(None) in get_args(hints[f.name]):
            continue
        expected = _field_type(hints[f.name])
        ok = isinstance(value, _ACCEPTED[expected]) and (
            expected is bool or not isinstance(value, bool)
        )
        if not ok:
            raise UserError(f"{source}: {f.name} must be {expected.__name__}, got {value!r}")
        if expected is float:
            setattr(cfg, f.name, float(value))


def load_config_file(path: str) -> dict[str, Any]:
    """Reads a JSON or TOML config file into a dict.

    Raises:
        UserError: The file is missing or does not parse.
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"config file {p} is a folder; pass a .json or .toml file")
    if not p.is_file():
        raise UserError(f"config file {p} does not exist")
    if p.suffix.lower() not in (".json", ".toml"):
        raise UserError(
            f"config file {p}: {p.suffix or 'no suffix'} is not a config format torchstyle "
            "reads; write it as JSON (.json) or TOML (.toml)"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(
            f"config file {p} is not text (not UTF-8); pass a .json or .toml file"
        ) from None
    try:
        if p.suffix.lower() == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as e:
        raise UserError(f"config file {p} does not parse: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a table/object of settings")
    return data


def _parse_model_arg(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per TrainConfig field, plus ``--config``.

    Every flag defaults to ``argparse.SUPPRESS`` so that only flags the user typed override the
    config file (or, on resume, the saved run config).
    """
    hints = get_type_hints(TrainConfig)
    parser.add_argument(
        "--config", metavar="FILE", help="JSON or TOML file of settings; flags override it"
    )
    for f in dataclasses.fields(TrainConfig):
        flag = f"--{_flag(f.name)}"
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        help_text = f.metadata["help"]
        if "(default:" not in help_text:  # a help text may say what its None default means
            help_text += f" (default: {default})"
        if f.name == "model":
            help_text = help_text.format(models=", ".join(_models()))
        if f.name == "data":
            help_text = help_text.format(sources=_sources_help())
        kw: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS, "dest": f.name}
        hint = hints[f.name]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if f.name == "model_args":
            parser.add_argument(
                "--model-arg", action="append", type=_parse_model_arg, metavar="KEY=VALUE", **kw
            )
            continue
        if f.name == "freeze":
            parser.add_argument(flag, action="append", metavar="PREFIX", **kw)
            continue
        kw["type"] = _field_type(hint)
        choices = choices_of(f.name)
        if choices is not None:
            kw["choices"] = choices  # argparse lists them in the usage
        else:
            kw["metavar"] = f.name.upper()
        parser.add_argument(flag, **kw)


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """Merges ``base`` (a saved run config, or nothing), ``--config FILE`` and the typed flags."""
    merged: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        merged.update(load_config_file(args.config))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in names:
        if name in vars(args):
            value = getattr(args, name)
            if name == "model_args":
                value = {**merged.get("model_args", {}), **dict(value)}
            merged[name] = value
    from torchstyle.recipes import preset_defaults

    merged = preset_defaults(merged)  # --recipe fills what no flag or file gave
    cfg = TrainConfig.from_dict(merged, source=getattr(args, "config", None) or "flags")
    cfg.validate()
    return cfg
