"""Training options, each trained for real: --amp, --clip-grad, --channels-last, --early-stopping,
a scheduler across an exact resume, --compile; and what building a trainer leaves on disk."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.engine.models import TinyMLP, random_bundle
from torchstyle.config import TrainConfig
from torchstyle.data import DataBundle, TensorImageDataset
from torchstyle.engine.callbacks import Callback
from torchstyle.engine.checkpoint import load_checkpoint
from torchstyle.engine.trainer import Trainer
from torchstyle.models.base import ImageClassifier
from torchstyle.spec import DataSpec


def _cfg(tmp_path, name="r", **overrides) -> TrainConfig:
    return TrainConfig(run_dir=str(tmp_path / name), progress=False, **overrides)


def _mlp(seed=0, **kw) -> TinyMLP:
    torch.manual_seed(seed)
    return TinyMLP(**kw)


class RecordingMLP(TinyMLP):
    """Records the dtype of its logits and whether autocast was on, at every training step."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.seen: list[tuple[torch.dtype, bool]] = []

    def training_step(self, batch, phase):
        x, y = batch
        logits = self(x)
        self.seen.append((logits.dtype, torch.is_autocast_enabled("cpu")))
        return {"loss": nn.functional.cross_entropy(logits.float(), y)}


def test_amp_bf16_runs_the_steps_under_autocast_and_trains(tmp_path):
    torch.manual_seed(0)
    model = RecordingMLP()
    before = [p.detach().clone() for p in model.parameters()]
    result = Trainer(
        _cfg(tmp_path, amp="bf16", max_steps=3), model=model, data=random_bundle()
    ).fit()
    assert result.steps == 3
    assert model.seen == [(torch.bfloat16, True)] * 3
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())


def test_amp_off_runs_in_full_precision(tmp_path):
    torch.manual_seed(0)
    model = RecordingMLP()
    Trainer(_cfg(tmp_path, max_steps=2), model=model, data=random_bundle()).fit()
    assert model.seen == [(torch.float32, False)] * 2


def _one_step_update(tmp_path, name, **overrides) -> float:
    """Norm of the whole parameter change of one plain-SGD step at lr 1."""
    model = _mlp()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = _cfg(tmp_path, name, max_steps=1, optimizer="sgd", lr=1.0, **overrides)
    Trainer(cfg, model=model, data=random_bundle()).fit()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm())


def test_clip_grad_bounds_the_step_by_the_gradient_norm(tmp_path):
    # SGD's first step (momentum buffer = gradient) moves the weights by lr * gradient exactly.
    free = _one_step_update(tmp_path, "free")
    clipped = _one_step_update(tmp_path, "clipped", clip_grad=0.01)
    assert free > 0.05  # the unclipped gradient is far larger than the clip
    assert clipped == pytest.approx(0.01, rel=1e-4)
    loose = _one_step_update(tmp_path, "loose", clip_grad=1e6)  # no effect when not reached
    assert loose == pytest.approx(free, rel=1e-6)


class TinyConvNet(ImageClassifier):
    """Two convolutions and a head; records the memory format of the batches it is given."""

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, num_classes),
        )
        self.channels_last_batches: list[bool] = []

    def training_step(self, batch, phase):
        self.channels_last_batches.append(batch[0].is_contiguous(memory_format=torch.channels_last))
        return super().training_step(batch, phase)


def _conv_bundle() -> DataBundle:
    # Three channels: a one-channel batch is channels-last and contiguous at once.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, 8, 8, generator=g)
    y = torch.randint(10, (96,), generator=g)
    return DataBundle(
        train=TensorImageDataset(x[:64], y[:64]),
        test=TensorImageDataset(x[64:], y[64:]),
        spec=DataSpec(channels=3, image_size=8, num_classes=10),
    )


def test_channels_last_trains_in_that_format_to_the_same_weights(tmp_path):
    runs = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = TinyConvNet()
        cfg = _cfg(tmp_path, f"cl{channels_last}", channels_last=channels_last, epochs=1)
        cfg.batch_size = 16
        Trainer(cfg, model=model, data=_conv_bundle()).fit()
        runs[channels_last] = model
    plain, cl = runs[False], runs[True]
    assert plain.channels_last_batches == [False] * 4
    assert cl.channels_last_batches == [True] * 4
    assert cl.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(plain.state_dict().values(), cl.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class NeverBetter(TinyMLP):
    """Evaluates to the same accuracy every time: nothing ever improves."""

    def evaluation_step(self, batch):
        out = super().evaluation_step(batch)
        return {"loss": out["loss"], "accuracy": torch.zeros_like(out["accuracy"])}


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    cfg = _cfg(tmp_path, epochs=10, early_stopping=2)
    result = Trainer(cfg, model=NeverBetter(), data=random_bundle()).fit()
    # Epoch 1 sets the best; epochs 2 and 3 do not beat it: stop after epoch 3.
    assert result.epochs == 3 and result.steps == 12
    assert result.stop_reason == "early stopping: no better accuracy for 2 evaluations"
    assert result.best_epoch == 1
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "latest.pt")
    assert ckpt["epoch"] == 3 and ckpt["callbacks"]["EarlyStopping"]["bad_evaluations"] == 2


class StopAt(Callback):
    """Asks the trainer to stop after optimizer step ``step`` (a stand-in for a kill)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, step):
        if step == self.step:
            trainer.request_stop("stopped by the test")


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_scheduler_resumes_exactly(tmp_path, scheduler):
    data = random_bundle()
    Trainer(
        _cfg(tmp_path, "straight", epochs=3, scheduler=scheduler), model=_mlp(), data=data
    ).fit()
    cfg = _cfg(tmp_path, "resumed", epochs=3, scheduler=scheduler)
    Trainer(cfg, model=_mlp(), data=data, callbacks=[StopAt(6)]).fit()  # mid-epoch 2
    resumed_cfg = TrainConfig(
        resume=str(tmp_path / "resumed"), epochs=3, scheduler=scheduler, progress=False
    )
    resumed = Trainer(resumed_cfg, model=_mlp(seed=7), data=data)
    assert resumed.position.n_iter == 6
    assert resumed.schedulers["model"].last_epoch == 6  # the schedule's state came back too
    resumed.fit()
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "latest.pt")
    assert a["n_iter"] == b["n_iter"] == 12
    assert a["scheduler"]["model"]["last_epoch"] == b["scheduler"]["model"]["last_epoch"] == 12
    lr = a["optim"]["model"]["param_groups"][0]["lr"]
    assert lr == b["optim"]["model"]["param_groups"][0]["lr"]
    assert lr != pytest.approx(TinyMLP.default_lr)  # the schedule moved the rate
    for k in a["net"]:
        assert torch.equal(a["net"][k], b["net"][k]), k


@pytest.mark.slow
def test_compile_trains_one_step(tmp_path):
    model = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(_cfg(tmp_path, compile=True, max_steps=1), model=model, data=random_bundle())
    result = trainer.fit()
    assert result.steps == 1
    assert isinstance(trainer.strategy.module, torch._dynamo.eval_frame.OptimizedModule)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_building_a_trainer_touches_nothing_on_disk(tmp_path):
    fresh = tmp_path / "fresh"
    Trainer(_cfg(tmp_path, "fresh", epochs=1), model=_mlp(), data=random_bundle())
    assert not fresh.exists()
    kept = tmp_path / "kept"
    Trainer(_cfg(tmp_path, "kept", epochs=1), model=_mlp(), data=random_bundle()).fit()
    latest = kept / "checkpoints" / "latest.pt"
    before = latest.read_bytes()
    trainer = Trainer(
        _cfg(tmp_path, "kept", epochs=1, overwrite=True, seed=2), model=_mlp(), data=random_bundle()
    )
    assert latest.read_bytes() == before  # replaced only once training starts
    trainer.fit()
    assert latest.read_bytes() != before
