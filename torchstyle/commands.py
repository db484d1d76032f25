"""CLI glue for ``torchstyle train | test | predict``: parse, call the engine, report.

torch is imported inside the ``run_*`` functions so ``torchstyle lint`` and ``--help`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from torchstyle.config import add_train_arguments as _add_config_flags
from torchstyle.errors import UserError
from torchstyle.output import CommandOutput


def _setup_logging() -> None:
    # Under torchrun rank 0 speaks; the others log only warnings and errors of their own.
    rank = int(os.environ.get("RANK", "0") or 0)
    level = logging.INFO if rank == 0 else logging.WARNING
    prefix = "" if rank == 0 else f"[rank {rank}] "
    logging.basicConfig(level=level, format=f"{prefix}%(message)s", stream=sys.stderr)


# ---------------------------------------------------------------------------------- train
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``train`` flags (one per TrainConfig field)."""
    parser.epilog = (
        "Settings merge as: defaults, then --config FILE, then flags. With --resume RUN the "
        "run's saved config.json replaces the defaults, so only flags you type change it."
    )
    _add_config_flags(parser)


def run_train(args: argparse.Namespace) -> CommandOutput:
    """Trains; the output is the run's summary."""
    from torchstyle.config import config_from_args
    from torchstyle.errors import RunInterruptedError

    cfg = config_from_args(args, _resume_base(args))
    _setup_logging()
    from torchstyle.engine.trainer import Trainer
    from torchstyle.experiments.callbacks import train_callbacks

    trainer = Trainer(cfg, callbacks=train_callbacks(cfg))
    strategy, run_dir = trainer.strategy, trainer.run_dir
    interrupted: RunInterruptedError | None = None
    try:  # how the run ended reaches status.json through the engine's on_exception
        result = trainer.fit()
    except RunInterruptedError as e:  # every rank stops at the same step: leaving is safe
        interrupted = RunInterruptedError(e.signum, e.checkpoint)
    # Only the strategy outlives the trainer: it drops its wrapper, then leaves the group.
    del trainer
    strategy.teardown()
    if interrupted is not None:  # every rank exits 128+signum; rank 0 says how to go on
        message = f"torchstyle train: {interrupted}; continue with: {resume_command(run_dir)}\n"
        return CommandOutput(
            code=128 + interrupted.signum, stderr=message if strategy.is_main else ""
        )
    return CommandOutput(stdout=format_summary(result) + "\n" if strategy.is_main else "")


def resume_command(run_dir: Path) -> str:
    """The shell line that continues the run: under torchrun, the torchrun line of this launch.

    torchrun's environment gives the processes per node (``LOCAL_WORLD_SIZE``) and, with
    ``WORLD_SIZE``, the number of nodes; a multi-node job also needs its rendezvous flags,
    which only the job script knows.
    """
    tail = f"-m torchstyle train --resume {shlex.quote(str(run_dir))}"
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if "LOCAL_WORLD_SIZE" not in os.environ or world <= 1:
        return f"torchstyle train --resume {shlex.quote(str(run_dir))}"
    per_node = max(1, int(os.environ["LOCAL_WORLD_SIZE"]))
    nodes = max(1, world // per_node)
    if nodes == 1:
        return f"torchrun --nproc_per_node {per_node} {tail}"
    return (
        f"torchrun --nnodes {nodes} --nproc_per_node {per_node} {tail} "
        "(on every node, with the job's rendezvous flags)"
    )


def _resume_base(args: argparse.Namespace) -> dict[str, Any] | None:
    """The saved config a resume starts from (None for a new run).

    ``--resume auto`` resumes when its ``--run-dir`` has a checkpoint. The run's folder is
    where it is now (it may have been moved), and a saved ``--overwrite`` is not repeated.
    """
    from torchstyle.config import config_from_args
    from torchstyle.engine.checkpoint import LATEST

    resume = getattr(args, "resume", None)
    if not resume:
        return None
    if resume == "auto":
        run_dir = config_from_args(args).run_dir  # typed, or from --config
        if not run_dir or not (Path(run_dir) / "checkpoints" / LATEST).is_file():
            return None
        folder = Path(run_dir)
    else:
        folder = Path(resume)
    base = _saved_config(folder)
    if base is not None:
        base.update(run_dir=str(folder), overwrite=False)
    return base


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise UserError(
            f"--resume {run_dir}: no such run folder; check the path, or drop --resume to start a new run"
        )
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(
            f"{path} does not parse ({e}); fix it or pass every setting as flags"
        ) from None
    if not isinstance(saved, dict):
        raise UserError(
            f"{path} must hold an object of settings; fix it or pass every setting as flags"
        )
    saved.pop("environment", None)  # recorded by the run, not a setting
    return saved


def format_summary(result: Any) -> str:
    """The few lines printed at the end of training (as ``torchstyle.fit`` shows them)."""
    from torchstyle.engine.summary import result_lines

    return "\n".join(result_lines(result))


# ---------------------------------------------------------------------------------- test
def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder written by `torchstyle train`")
    parser.add_argument(
        "--checkpoint", default="best", help="best, latest, or a checkpoint file (default: best)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="evaluation batch size (default: 256)"
    )


def add_test_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``test`` flags."""
    _add_run_arguments(parser)
    parser.add_argument("--data", help="evaluate on this data instead of the run's own")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run_test(args: argparse.Namespace) -> CommandOutput:
    """Evaluates a run's checkpoint on the test split with the engine's own batches and
    evaluation (``setup.build_batches``, ``evaluation.evaluate_split``); prints the metrics."""
    from torchstyle.data import DataOptions, build_data
    from torchstyle.data.checks import check_data_fits_run
    from torchstyle.engine import evaluation
    from torchstyle.engine.finetune import recorded_resize
    from torchstyle.engine.metrics import EvaluationMetrics, format_table
    from torchstyle.engine.setup import BatchSettings, build_batches
    from torchstyle.engine.strategies import SingleDeviceStrategy

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {args.batch_size}")
    strategy = SingleDeviceStrategy.create(args.device, amp="off")
    path = evaluation.checkpoint_path(Path(args.run), args.checkpoint)
    model, state = evaluation.load_run_model(path, strategy.device, run_dir=Path(args.run))
    cfg, spec = state["config"], evaluation.run_spec(state)
    if cfg["data"] == "python" and not args.data:
        raise UserError(
            f"run {args.run} trained on datasets given in Python (torchstyle.fit); "
            "pass --data to evaluate on a data source"
        )
    data = build_data(
        DataOptions(
            name=args.data or cfg["data"],
            data_dir=cfg.get("data_dir"),
            image_size=spec.image_size,
            resize=recorded_resize(state),  # the pretrained weights' policy, as trained
            seed=cfg["seed"],
            layout=type(model).data_layout,
            splits=("test",),  # only the evaluated split is read (and checked, and decoded)
            test_split=None if args.data else cfg.get("test_split"),  # the run's own split
            class_names=spec.class_names or None,  # label a folder with the run's classes
            # The run's own data is read as the run read it; other data must match it.
            channels=None if args.data else spec.channels,
            skip_bad_images=bool(cfg.get("skip_bad_images", False)),
        )
    )
    check_data_fits_run(data.spec, spec, args.data or cfg["data"], Path(args.run))
    assert data.test is not None, "build_data refuses a source without the split asked for"
    settings = BatchSettings(data=args.data or cfg["data"], batch_size=args.batch_size, workers=0)
    sampler, batches = build_batches(data.test, settings, strategy, train=False)
    sampler.set_epoch(0)
    metrics = evaluation.evaluate_split(
        strategy, model, batches, EvaluationMetrics.for_model(model, spec, strategy.device)
    )
    n_test = len(data.test)  # type: ignore[arg-type]  # every data source gives a sized split
    if args.json:
        return CommandOutput(
            stdout=json.dumps({"checkpoint": str(path), "samples": n_test, **metrics}) + "\n"
        )
    lines = [
        f"checkpoint {path} (epoch {state['epoch']}, step {state['n_iter']}), {n_test} test samples"
    ]
    lines.append(format_table(metrics, prefix="test "))
    return CommandOutput(stdout="\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------- predict
def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``predict`` flags (each kind of model takes its own; see ``engine.predict``)."""
    from torchstyle.engine.predict import add_predict_arguments as add_kind_flags

    _add_run_arguments(parser)
    add_kind_flags(parser)


def run_predict(args: argparse.Namespace) -> CommandOutput:
    """Predicts with a finished run in its model's own terms (labels, samples, translations)."""
    from torchstyle.engine.evaluation import checkpoint_path, load_run_model, run_spec
    from torchstyle.engine.predict import predictor_for
    from torchstyle.engine.strategies import resolve_device

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {args.batch_size}")
    device = resolve_device(args.device)
    path = checkpoint_path(Path(args.run), args.checkpoint)
    model, state = load_run_model(path, device, run_dir=Path(args.run))
    return predictor_for(model, args).run(model, run_spec(state), args)
