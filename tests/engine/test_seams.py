"""The engine's seams: strategies are abstract where processes must agree, hooks fan out in
one place, and how a run ends reaches its callbacks from the engine, whatever door ran it."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from tests.engine.models import TinyMLP, random_bundle
from torchstyle.config import TrainConfig
from torchstyle.engine.callbacks import Callback, Hooks
from torchstyle.engine.strategies import (
    STRATEGIES,
    FSDPStrategy,
    SingleDeviceStrategy,
    Strategy,
    make_strategy,
)
from torchstyle.engine.trainer import Trainer
from torchstyle.errors import UserError

AGREEMENT = (
    "all_reduce",
    "mean_of",
    "first_of",
    "any_flag",
    "gather_objects",
    "broadcast",
    "barrier",
)


def test_what_processes_agree_on_is_abstract():
    assert inspect.isabstract(Strategy)
    assert set(AGREEMENT) <= Strategy.__abstractmethods__

    class Forgetful(Strategy):  # a new multi-process strategy that forgot its reductions
        name = "forgetful"

    with pytest.raises(TypeError, match="all_reduce"):
        Forgetful(torch.device("cpu"))
    assert not any(inspect.isabstract(cls) for cls in STRATEGIES.values())
    single = make_strategy("auto", "cpu")
    assert type(single) is SingleDeviceStrategy
    assert single.broadcast({"a": 1}) == {"a": 1}


def test_each_strategy_declares_its_options(monkeypatch):
    assert FSDPStrategy.options == ("cpu_offload", "activation_checkpointing")
    with pytest.raises(UserError, match="--cpu-offload is an option of --strategy fsdp"):
        make_strategy("single", "cpu", cpu_offload=True)
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UserError, match="--strategy fsdp needs a launcher; run `torchrun"):
        make_strategy("fsdp", "cpu", cpu_offload=True)


class Recorder(Callback):
    """Records every event it hears."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.events: list[str] = []
        self.fail_on = fail_on

    def on_step_end(self, trainer, step):  # the per-step hook reaches only overriders
        """Recorded like every other event."""

    def __getattribute__(self, name: str):
        attr = super().__getattribute__(name)
        if name.startswith("on_") and callable(attr):

            def recorded(*args):
                self.events.append(name)
                if name == self.fail_on:
                    raise RuntimeError(f"{name} failed")
                return attr(*args)

            return recorded
        return attr


def test_hooks_reach_every_callback_for_every_event():
    events = [n for n in vars(Callback) if n.startswith("on_")]
    first, second = Recorder(), Recorder()
    hooks = Hooks([first, second])
    for name in events:
        arity = len(inspect.signature(getattr(Callback, name)).parameters) - 1
        getattr(hooks, name)(*[None] * arity)
    assert first.events == events
    assert second.events == events


def test_a_failing_on_exception_does_not_hide_the_error(caplog):
    quiet = Recorder()
    hooks = Hooks([Recorder(fail_on="on_exception"), quiet])
    hooks.on_exception(None, ValueError("the real error"))  # type: ignore[arg-type]
    assert quiet.events == ["on_exception"]
    assert "on_exception failed" in caplog.text


def test_the_engine_tells_callbacks_how_a_run_ended(tmp_path):
    from torchstyle.experiments.callbacks import train_callbacks

    cfg = TrainConfig(run_dir=str(tmp_path / "run"), progress=False, epochs=2, batch_size=16)
    recorder = Recorder(fail_on="on_epoch_start")
    trainer = Trainer(
        cfg, model=TinyMLP(), data=random_bundle(), callbacks=[*train_callbacks(cfg), recorder]
    )
    with pytest.raises(RuntimeError, match="on_epoch_start failed"):
        trainer.fit()  # no CLI glue: the engine itself records the failure
    assert recorder.events[-1] == "on_exception"
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed"
    assert "on_epoch_start failed" in status["error"]


def test_the_trainer_owns_checkpointing_and_passes_the_best(tmp_path):
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), progress=False, epochs=1, batch_size=32)
    trainer = Trainer(cfg, model=TinyMLP(), data=random_bundle())
    assert "is_best" in inspect.signature(trainer.save_checkpoint).parameters
    assert not any(type(c).__name__ == "Checkpointing" for c in trainer.hooks.callbacks)
    trainer.fit()
    assert not hasattr(trainer, "_is_best")
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def _loop_listing() -> str:
    """The code block of docs/architecture.md that shows the loop."""
    from tests.conftest import REPO

    text = (REPO / "docs" / "architecture.md").read_text()
    start = text.index("```python\n", text.index("This is the loop")) + len("```python\n")
    return text[start : text.index("```", start)]


def test_the_docs_loop_listing_is_the_code():
    import textwrap

    # Two blank lines between the functions, as ruff formats the listing.
    code = "\n\n".join(
        textwrap.dedent(inspect.getsource(fn)) for fn in (Trainer.fit, Trainer._loop)
    )
    assert _loop_listing() == code, "docs/architecture.md's loop differs from Trainer.fit/_loop"
