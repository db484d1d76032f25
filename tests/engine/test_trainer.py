"""The Trainer in-process: gradient accumulation, compute efficiency, exact evaluation."""

from __future__ import annotations

import statistics
from types import SimpleNamespace

import pytest
import torch

from tests.engine.conftest import read_jsonl
from tests.engine.models import TinyMLP, VirtualClock, random_bundle
from torchstyle.config import TrainConfig
from torchstyle.data import EpochBatchSampler, make_loader
from torchstyle.data.digits import load_digits_split
from torchstyle.engine import meters
from torchstyle.engine.evaluation import evaluate
from torchstyle.engine.trainer import Trainer
from torchstyle.models import create_model


def _train(tmp_path, name, model, data, **overrides):
    cfg = TrainConfig(run_dir=str(tmp_path / name), progress=False, **overrides)
    trainer = Trainer(cfg, model=model, data=data)
    result = trainer.fit()
    return trainer, result


def _mlp(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyMLP(**kw)


def test_accumulation_equals_the_large_batch(tmp_path):
    data = random_bundle()
    big, _ = _train(
        tmp_path,
        "big",
        _mlp(),
        data,
        batch_size=32,
        max_steps=1,
        log_every=1,
        lr=0.1,
        optimizer="sgd",
    )
    acc, _ = _train(
        tmp_path,
        "acc",
        _mlp(),
        data,
        batch_size=8,
        accumulate=4,
        max_steps=1,
        log_every=1,
        lr=0.1,
        optimizer="sgd",
    )
    untouched = _mlp()
    for (name, a), b, c in zip(
        big.model.state_dict().items(),
        acc.model.state_dict().values(),
        untouched.state_dict().values(),
        strict=True,
    ):
        assert not torch.equal(a, c), f"{name} did not train"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{name} differs")
    # The logged loss is the true mean loss of the 32 samples, not divided by 4.
    loss_big = read_jsonl(tmp_path / "big" / "metrics.jsonl")[0]["train/loss"]
    loss_acc = read_jsonl(tmp_path / "acc" / "metrics.jsonl")[0]["train/loss"]
    assert loss_big == pytest.approx(loss_acc, rel=1e-5)
    assert loss_big > 1.5  # ~ln(10) for random labels


def test_accumulation_weights_an_uneven_last_micro_batch(tmp_path):
    # 40 samples: batch 40 in one step vs micro-batches 16 + 16 + 8 in one step of accumulate 3.
    data = random_bundle(n_train=40)
    big, _ = _train(tmp_path, "big", _mlp(), data, batch_size=40, epochs=1, lr=0.1, optimizer="sgd")
    acc, _ = _train(
        tmp_path,
        "acc",
        _mlp(),
        data,
        batch_size=16,
        accumulate=3,
        epochs=1,
        lr=0.1,
        optimizer="sgd",
    )
    assert big.position.n_iter == acc.position.n_iter == 1
    for a, b in zip(big.model.state_dict().values(), acc.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _efficiency_rows(run_dir):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/compute_efficiency" in r]


@pytest.mark.parametrize(
    ("batch_cost", "step_cost"),
    [(0.040, 0.010), (0.004, 0.040)],
    ids=["data-bound", "compute-bound"],
)
def test_compute_efficiency_is_exact_on_the_meters_clock(
    tmp_path, monkeypatch, batch_cost, step_cost
):
    # The meter's clock is one that moves only by the declared cost of each load and step, so
    # the truth is known exactly and no load on the machine can move the measurement: every
    # report window of 5 steps holds 5 loads (waited for) and 5 steps (computed).
    clock = VirtualClock()
    monkeypatch.setattr(meters, "time", SimpleNamespace(perf_counter=clock.now))
    data = random_bundle(n_train=16 * 30, batch_cost=batch_cost)
    data.train.clock = clock
    model = _mlp(step_sleep=step_cost)
    model.clock = clock
    _train(tmp_path, "run", model, data, batch_size=16, workers=0, log_every=5, max_steps=40)
    rows = _efficiency_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(5, 41, 5))
    truth = step_cost / (step_cost + batch_cost)
    rate = 16 / (step_cost + batch_cost)
    for r in rows:
        assert r["train/compute_efficiency"] == pytest.approx(truth, abs=1e-9), r
        assert r["train/samples_per_sec"] == pytest.approx(rate, rel=1e-9), r


def test_compute_efficiency_on_the_real_clock_orders_data_and_compute_bound(tmp_path):
    # Real sleeps on the real clock: load stretches every part of a step, so only the order
    # is asserted. Waiting 20 ms for each batch against computing 5 ms must read as less
    # efficient than the reverse, whatever else the machine does.
    measured = {}
    for name, batch_cost, step_cost in (("data", 0.020, 0.005), ("compute", 0.005, 0.020)):
        data = random_bundle(n_train=16 * 20, batch_cost=batch_cost)
        _train(
            tmp_path,
            name,
            _mlp(step_sleep=step_cost),
            data,
            batch_size=16,
            workers=0,
            log_every=5,
            max_steps=20,
        )
        rows = _efficiency_rows(tmp_path / name)[1:]  # the first window holds the warm-up
        measured[name] = statistics.mean(r["train/compute_efficiency"] for r in rows)
    assert measured["data"] < measured["compute"], measured


def test_evaluation_is_exact_over_any_batching():
    torch.manual_seed(0)
    data = load_digits_split()
    model = create_model("classifier", data.spec, width=8)
    model.eval()
    with torch.no_grad():
        x, y = data.test.images, data.test.labels
        logits = model(x)
        truth_acc = (logits.argmax(1) == y).sum().item() / len(y)
        truth_loss = torch.nn.functional.cross_entropy(logits, y).item()
    model.train()  # evaluation must switch to eval mode (batch norm) and back
    results = []
    for bs in (7, 64, 1000):  # 360 test images: uneven last batches for 7 and 64
        loader = make_loader(
            data.test, EpochBatchSampler(len(data.test), batch_size=bs, shuffle=False)
        )
        results.append(evaluate(model, loader, torch.device("cpu")))
    for r in results:
        assert r["accuracy"] == pytest.approx(truth_acc, abs=1e-9)
        assert r["loss"] == pytest.approx(truth_loss, rel=1e-5)
    assert model.training is True  # restored to the mode it was in


def test_a_callback_can_stop_mid_epoch_and_the_run_resumes_there(tmp_path):
    from torchstyle.engine.callbacks import Callback
    from torchstyle.engine.checkpoint import load_checkpoint

    class StopAtThree(Callback):
        def on_step_end(self, trainer, step):
            if step == 3:
                trainer.request_stop("asked to stop")

    cfg = TrainConfig(run_dir=str(tmp_path / "r"), epochs=2, progress=False)
    result = Trainer(cfg, model=_mlp(), data=random_bundle(), callbacks=[StopAtThree()]).fit()
    assert (result.steps, result.stop_reason) == (3, "asked to stop")
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "latest.pt")
    assert (ckpt["epoch"], ckpt["batch"], ckpt["n_iter"]) == (0, 3, 3)
    resumed = Trainer(
        TrainConfig(resume=str(tmp_path / "r"), epochs=2, progress=False),
        model=_mlp(),
        data=random_bundle(),
    )
    assert resumed.fit().steps == 8  # 4 steps an epoch (256 samples, batch 64)


def test_a_version_1_checkpoint_resumes(tmp_path):
    from torchstyle.engine.checkpoint import atomic_save, load_checkpoint

    cfg = TrainConfig(run_dir=str(tmp_path / "r"), epochs=1, progress=False)
    Trainer(cfg, model=_mlp(), data=random_bundle()).fit()
    path = tmp_path / "r" / "checkpoints" / "latest.pt"
    state = load_checkpoint(path)
    # Version 1 kept the best value and epoch in a "best" dict, and no skipped_steps.
    state["best"] = {"value": state.pop("best_value"), "epoch": state.pop("best_epoch")}
    del state["skipped_steps"]
    state["version"] = 1
    atomic_save(state, path)
    resumed = Trainer(
        TrainConfig(resume=str(tmp_path / "r"), epochs=2, progress=False),
        model=_mlp(),
        data=random_bundle(),
    )
    pos = resumed.position
    assert (pos.epoch, pos.n_iter, pos.skipped_steps) == (1, 4, 0)
    assert (pos.best_value, pos.best_epoch) == (state["best"]["value"], 1)
    assert resumed.fit().steps == 8
