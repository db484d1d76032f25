"""What a run says matches what it does: under --max-steps the epochs shown are the epochs
the steps reach, and the summary counts steps and whole epochs."""

from __future__ import annotations

import logging

from tests.engine.models import TinyMLP, random_bundle
from torchstyle.commands import format_summary
from torchstyle.config import TrainConfig
from torchstyle.engine.trainer import Trainer


def test_max_steps_wording_is_consistent(tmp_path, caplog):
    # 256 samples at batch 64: 4 steps an epoch; 6 steps end inside the second epoch.
    cfg = TrainConfig(run_dir=str(tmp_path / "r"), epochs=10, max_steps=6, progress=False)
    trainer = Trainer(cfg, model=TinyMLP(), data=random_bundle())
    assert trainer.planned_epochs == 2
    with caplog.at_level(logging.INFO):
        result = trainer.fit()
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "epoch 1/2" in said and "/10" not in said, said
    summary = format_summary(result)
    assert summary.startswith("done: 6 steps (1 whole epoch) (reached --max-steps 6)"), summary


def test_a_background_data_check_is_awaited_before_the_first_evaluation(tmp_path):
    import pytest

    from torchstyle.errors import UserError

    class Pending:
        waited = 0

        def wait(self):
            Pending.waited += 1
            raise UserError("cannot read image x.png: truncated")

    bundle = random_bundle()
    bundle.checks.append(Pending())
    cfg = TrainConfig(run_dir=str(tmp_path / "r"), epochs=3, progress=False)
    trainer = Trainer(cfg, model=TinyMLP(), data=bundle)
    with pytest.raises(UserError, match=r"x\.png"):
        trainer.fit()
    assert Pending.waited == 1 and trainer.position.epoch == 1  # after epoch 1, before its eval
