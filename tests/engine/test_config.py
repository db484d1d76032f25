"""The train flags' choices and help come from the registries; checks hold under python -O."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch

from tests.conftest import HANG_TIMEOUT, REPO
from torchstyle.cli import build_parser
from torchstyle.config import TrainConfig
from torchstyle.data.augment import AUGMENTS
from torchstyle.engine.schedulers import SCHEDULERS, build_schedulers, per_step, step_on_metric
from torchstyle.engine.strategies import AMP_DTYPES, STRATEGIES
from torchstyle.errors import UserError
from torchstyle.models import list_models
from torchstyle.models.base import OPTIMIZERS


def _train_actions() -> dict[str, argparse.Action]:
    parser = build_parser("train")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    return {a.dest: a for a in train._actions}


@pytest.mark.parametrize(
    ("dest", "registry"),
    [
        ("optimizer", list(OPTIMIZERS)),
        ("scheduler", ["none", *SCHEDULERS]),
        ("strategy", ["auto", *STRATEGIES]),
        ("amp", list(AMP_DTYPES)),
        ("augment", list(AUGMENTS)),
    ],
)
def test_flag_choices_are_the_registry(dest, registry):
    assert list(_train_actions()[dest].choices) == registry
    bad = TrainConfig(**{dest: "no-such-thing"})
    with pytest.raises(UserError, match=f"--{dest} must be one of {', '.join(registry)}"):
        bad.validate()


def test_the_engine_tables_are_keyed_by_the_choices():
    import torchstyle.choices as choices

    assert tuple(OPTIMIZERS) == choices.OPTIMIZERS
    assert tuple(SCHEDULERS) == choices.SCHEDULERS
    assert tuple(STRATEGIES) == choices.STRATEGIES
    assert tuple(AMP_DTYPES) == choices.AMP_MODES


def test_model_help_lists_every_registered_model():
    help_text = _train_actions()["model"].help
    for name in list_models():
        assert name in help_text


def test_every_schedule_builds_and_moves_the_rate():
    for name in SCHEDULERS:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        (sched,) = build_schedulers(name, {"model": opt}, total_steps=9).values()
        rates = []
        for _ in range(9):
            opt.step()
            if per_step({"model": sched}):
                sched.step()
            else:  # metric-driven: stepped at each evaluation, here on a value that stalls
                step_on_metric({"model": sched}, 0.5, "max")
            rates.append(opt.param_groups[0]["lr"])
        assert len(set(rates)) > 1, name
    assert build_schedulers("none", {"model": opt}, total_steps=9) == {}


def test_lint_command_builds_without_torch():
    script = (
        "import sys\n"
        "from torchstyle.cli import build_parser\n"
        "build_parser('lint')\n"
        "assert 'torch' not in sys.modules, 'building the lint command imported torch'\n"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=HANG_TIMEOUT)


def _train_optimized(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -O -m torchstyle train ARGS``: -O strips assert statements, so every check of
    user input must be code that still runs."""
    return subprocess.run(
        [sys.executable, "-O", "-m", "torchstyle", "train", *args, "--no-progress"],
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ("--model-arg", "width=abc"),
            "--model-arg width='abc' must be int; it accepts: in_channels (int)",
        ),
        (("--model-arg", "dropout=2"), "dropout must be in [0, 1), got 2"),
        (("--early-stopping", "-1"), "--early-stopping must be an integer >= 0, got -1"),
    ],
)
def test_user_input_is_checked_under_python_O(tmp_path, args, fragment):
    run_dir = tmp_path / "r"
    proc = _train_optimized(*args, "--run-dir", str(run_dir), "--epochs", "1")
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dir.exists()


def test_flags_are_never_abbreviated_and_channels_is_a_real_flag():
    parser = build_parser("train")
    args = parser.parse_args(["train", "--channels", "1"])
    assert args.channels == 1 and "channels_last" not in vars(args)
    for typed in (["--channel", "1"], ["--channels-l"], ["--epoch", "1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["train", *typed])
    with pytest.raises(UserError, match=r"--channels must be 1 \(grayscale\) or 3"):
        TrainConfig(channels=2).validate()


def test_channels_reaches_the_data(tmp_path):
    from torchstyle.engine.run import build_run

    cfg = TrainConfig(
        model="classifier", data="synthetic", channels=3, run_dir=str(tmp_path / "run")
    )
    assert build_run(cfg).data.spec.channels == 3
