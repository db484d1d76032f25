"""A run is built once, by ``build_run``: every door gets the same record, ``--model`` is
parsed once, and a Trainer has every attribute from construction."""

from __future__ import annotations

import sys

import pytest

from tests.engine.models import TinyMLP, random_bundle
from torchstyle.config import TrainConfig
from torchstyle.engine.run import Run, build_run
from torchstyle.engine.trainer import Trainer


def _count_parses(monkeypatch) -> list[str]:
    """Every call of ``parse_model_spec``, wherever the package imported it."""
    import torchstyle.api  # noqa: F401  (loaded, so its imports are patched too)
    import torchstyle.models.sources as sources

    real, calls = sources.parse_model_spec, []

    def counting(text):
        calls.append(text)
        return real(text)

    for module in [m for n, m in sys.modules.items() if n.startswith("torchstyle")]:
        if getattr(module, "parse_model_spec", None) is real:
            monkeypatch.setattr(module, "parse_model_spec", counting)
    return calls


def test_model_is_parsed_once_on_the_way_to_the_first_step(tmp_path, monkeypatch):
    calls = _count_parses(monkeypatch)
    cfg = TrainConfig(model="mlp", data="synthetic", max_steps=1, batch_size=8, progress=False)
    trainer = Trainer(cfg)  # default run folder, data resolved: every use of --model
    assert calls == ["mlp"]
    assert trainer.run_dir.name.startswith("mlp-synthetic-")
    assert trainer.run.source is not None and trainer.run.source.target == "mlp"


def test_fit_given_a_model_string_parses_it_once_in_the_runs_builder(tmp_path, monkeypatch):
    """``torchstyle.fit("mlp", ...)`` is ``train --model mlp``: the run's builder parses the
    string (the run records it as ``source``), and nothing parses it on the side."""
    import torch
    from torch.utils.data import TensorDataset

    import torchstyle
    from torchstyle.engine.callbacks import Callback

    class Seen(Callback):
        def on_train_start(self, trainer):
            self.run = trainer.run

    calls, seen = _count_parses(monkeypatch), Seen()
    data = TensorDataset(torch.randn(12, 1, 4, 4), torch.arange(12) % 3)
    torchstyle.fit(
        "mlp", data, data, model_args={"hidden": [4]}, max_steps=1, batch_size=4,
        run_dir=str(tmp_path / "run"), callbacks=[seen], verbose=False,
    )  # fmt: skip
    assert calls == ["mlp"]
    assert seen.run.source is not None and seen.run.source.target == "mlp"
    assert seen.run.build.record["args"]["hidden"] == [4]


def test_engine_helpers_take_the_fields_they_use_not_the_whole_config():
    """Only the builder (``run.py``) and the ``of`` constructors of the small settings
    records read a ``TrainConfig``; the helpers take those records or plain values."""
    import inspect
    import typing

    from torchstyle.config import TrainConfig
    from torchstyle.engine import building, setup

    takers = []
    for module in (setup, building):
        for name, obj in vars(module).items():
            functions = [(name, obj)] if inspect.isfunction(obj) else []
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                functions = [(f"{name}.{n}", f) for n, f in vars(obj).items() if n != "of"]
                functions = [(n, getattr(f, "__func__", f)) for n, f in functions]
            for label, function in functions:
                if inspect.isfunction(function) and function.__module__ == module.__name__:
                    hints = typing.get_type_hints(function)
                    if TrainConfig in hints.values():
                        takers.append(f"{module.__name__}.{label}")
    assert takers == []


def test_every_trainer_attribute_exists_from_construction(tmp_path):
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), progress=False, epochs=1, batch_size=32)
    trainer = Trainer(cfg, model=TinyMLP(), data=random_bundle())
    built = set(vars(trainer))
    assert not (tmp_path / "run").exists()  # building writes nothing
    trainer.fit()
    assert set(vars(trainer)) == built, f"set only by fit: {set(vars(trainer)) - built}"


def test_the_run_record_holds_what_the_loop_needs(tmp_path):
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), progress=False, epochs=1, batch_size=16)
    run = build_run(cfg, model=TinyMLP(), data=random_bundle())
    assert isinstance(run, Run)
    assert run.source is None and run.resume_state is None and not run.plan.resume
    assert run.eval_split == "test" and list(run.optimizers) == ["model"]
    assert run.batches.batch_size == 16
    trainer = Trainer(cfg, run=run)
    assert trainer.model is run.model and trainer.hooks is run.hooks


@pytest.mark.slow
def test_test_evaluates_as_the_engine_did(tmp_path, cli):
    """`torchstyle test` batches and evaluates with the engine's code: on the split training
    evaluated (test, when there is no val) it gives the engine's numbers."""
    import json

    run = tmp_path / "run"
    args = ("--model", "mlp", "--data", "synthetic", "--epochs", "1", "--no-progress")
    trained = cli("train", *args, "--val-split", "0", "--run-dir", str(run))
    assert trained.returncode == 0, trained.stderr
    tested = cli("test", str(run), "--json", "--batch-size", "7")
    assert tested.returncode == 0, tested.stderr
    engine = json.loads((run / "status.json").read_text())["test"]
    got = json.loads(tested.stdout)
    for name, value in engine.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
