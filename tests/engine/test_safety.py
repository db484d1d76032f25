"""Safe loading, non-finite losses, failed checkpoint writes, and random flags (hypothesis)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torchstyle.engine.checkpoint as checkpoint
from tests.conftest import run_cli
from tests.engine.models import TinyMLP, random_bundle
from torchstyle.cli import main
from torchstyle.config import TrainConfig
from torchstyle.engine.checkpoint import CheckpointLoadError, CheckpointWriteError, load_checkpoint
from torchstyle.engine.trainer import Trainer
from torchstyle.errors import TrainingError


class Evil:
    """Unpickling this runs a shell command (creates a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "torchstyle-checkpoint", "net": Evil(marker)}, evil)
    with pytest.raises(CheckpointLoadError, match="arbitrary unpickling, which can run code"):
        load_checkpoint(evil)
    assert not marker.exists()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    proc = run_cli("test", str(run), "--checkpoint", str(evil))
    assert (
        proc.returncode == 2
        and "refusing to load" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert not marker.exists()


def test_checkpoint_of_another_shape_names_the_keys(tmp_path):
    trainer = Trainer(
        TrainConfig(run_dir=str(tmp_path / "r"), epochs=1, progress=False),
        model=TinyMLP(),
        data=random_bundle(),
    )
    trainer.fit()
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "latest.pt")
    state["net"].pop("net.3.bias")
    state["net"]["head.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointLoadError, match=r"missing keys net\.3\.bias; unexpected keys head\.weight"
    ):
        checkpoint.load_model_state(TinyMLP(), state["net"], Path("x.pt"))
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "latest.pt")
    with pytest.raises(CheckpointLoadError, match=r"size mismatch for net\.1\.weight"):
        checkpoint.load_model_state(TinyMLP(image_size=4), state["net"], Path("x.pt"))


class NanAt(TinyMLP):
    """Returns a NaN loss at one optimizer step."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.bad_step = step
        self.calls = 0

    def training_step(self, batch, phase):
        self.calls += 1
        out = super().training_step(batch, phase)
        if self.calls == self.bad_step:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # 256 samples, batch 64: 4 steps an epoch; NaN at step 7 (epoch 2).
    cfg = TrainConfig(run_dir=str(tmp_path / "r"), epochs=3, batch_size=64, progress=False)
    trainer = Trainer(cfg, model=NanAt(7), data=random_bundle())
    with pytest.raises(TrainingError, match=r"NaN or inf at step 7 .*latest\.pt"):
        trainer.fit()
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "latest.pt")
    assert ckpt["epoch"] == 1 and ckpt["n_iter"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["net"].values())


def test_nan_policy_skip_drops_the_step_and_goes_on(tmp_path):
    cfg = TrainConfig(
        run_dir=str(tmp_path / "r"), epochs=2, batch_size=64, progress=False, nan_policy="skip"
    )
    trainer = Trainer(cfg, model=NanAt(3), data=random_bundle())
    result = trainer.fit()
    assert result.steps == 8 and trainer.position.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_failed_checkpoint_write_stops_cleanly_and_keeps_the_previous(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def disk_full(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            real_save(obj, io.BytesIO())
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    cfg = TrainConfig(run_dir=str(tmp_path / "r"), epochs=3, progress=False)
    trainer = Trainer(cfg, model=TinyMLP(), data=random_bundle())
    with pytest.raises(
        CheckpointWriteError, match=r"No space left on device.*previous checkpoint is intact"
    ):
        trainer.fit()
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    ckpt_dir = tmp_path / "r" / "checkpoints"
    assert load_checkpoint(ckpt_dir / "latest.pt")["epoch"] == 1
    assert not list(ckpt_dir.glob(".*tmp*")), "the temporary file must be removed"


FLAG_VALUES = {
    "--batch-size": st.sampled_from(["-1", "0", "1", "7", "64", "x"]),
    "--lr": st.sampled_from(["0.01", "-1", "0", "nan", "inf", "1e9", "abc"]),
    "--accumulate": st.sampled_from(["-2", "0", "1", "3"]),
    "--optimizer": st.sampled_from(["sgd", "adam", "adamw", "rmsprop", "lbfgs"]),
    "--scheduler": st.sampled_from(["none", "cosine", "step", "onecycle", "linear"]),
    "--amp": st.sampled_from(["off", "bf16", "fp16", "fp8"]),
    "--device": st.sampled_from(["auto", "cpu", "cuda", "cuda:3", "tpu"]),
    "--workers": st.sampled_from(["-1", "0", "1"]),
    "--log-every": st.sampled_from(["-5", "0", "1", "50"]),
    "--eval-every": st.sampled_from(["-1", "0", "2"]),
    "--image-size": st.sampled_from(["-3", "4", "8", "16", "32", "100"]),
    "--model": st.sampled_from(["classifier", "dcgan", "nope"]),
    "--data": st.sampled_from(["digits", "synthetic", "/no/data", "cifar10"]),
    "--model-arg": st.sampled_from(
        ["width=4", "width=-1", "depth=2", "width", "num_blocks=[1]", "base_width=4"]
    ),
    "--clip-grad": st.sampled_from(["1.0", "0", "-1"]),
    "--keep": st.sampled_from(["-1", "0", "2"]),
    "--seed": st.sampled_from(["0", "-5", "123456789012"]),
    "--max-steps": st.sampled_from(["0", "1", "-1"]),
}
SWITCHES = [
    "--deterministic",
    "--cudnn-benchmark",
    "--channels-last",
    "--compile",
    "--overwrite",
    "--no-progress",
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flags=st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.just(None), max_size=6).flatmap(
        lambda d: st.fixed_dictionaries({k: FLAG_VALUES[k] for k in d})
    ),
    switches=st.lists(st.sampled_from(SWITCHES), unique=True, max_size=3),
)
def test_random_flags_give_a_clean_run_or_a_clean_error(flags, switches):
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", "--epochs", "0", "--run-dir", f"{tmp}/run", "--no-progress"]
        for flag, value in flags.items():
            argv += [flag, value]
        argv += switches
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: a value of the wrong type or choice
                code = e.code
        assert code in (0, 2), (argv, code, err.getvalue())
        assert "Traceback" not in err.getvalue()
        if code == 2:
            assert "error:" in err.getvalue(), argv
