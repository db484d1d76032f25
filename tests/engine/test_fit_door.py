"""``torchstyle.fit`` is the command line's door from Python: the same run folder, the same
lines on the console, errors in Python terms, and every CLI door opens its runs afterwards."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torchstyle
from tests.conftest import HANG_TIMEOUT, REPO, run_cli
from torchstyle.errors import UserError


class Net(nn.Module):
    """A classifier whose constructor the run records (the class is importable)."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.hidden = hidden
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, 3)
        )

    def forward(self, x):
        return self.layers(x)


class TwoOutputs(Net):
    def forward(self, x):
        return self.layers(x), x


def _data(n: int = 48) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 1, 4, 4, generator=g), torch.arange(n) % 3)


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("```python\n", text.index("## From Python")) + len("```python\n")
    return text[start : text.index("```", start)]


def test_fit_shows_what_train_shows_and_writes_the_same_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    result = torchstyle.fit(Net, _data(), _data(24), epochs=1, batch_size=16, run_dir=str(run))
    out = capsys.readouterr().out
    assert "model:" in out and "epoch 1/1: train loss" in out, out  # no logging set-up
    assert f"run folder:      {run}" in out
    assert result.best_checkpoint is not None
    for name in ("status.json", "config.json", "config.txt"):
        assert (run / name).is_file(), name
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert list(run.glob("hparams/**/events.out.tfevents.*")) or list(
        run.glob("**/events.out.tfevents.*")
    )
    with pytest.raises(UserError) as refused:  # the same folder again: Python's fixes
        torchstyle.fit(Net, _data(), _data(24), epochs=1, run_dir=str(run), verbose=False)
    message = str(refused.value)
    assert f"resume={str(run)!r}" in message and "overwrite=True" in message, message
    assert "--" not in message, message
    torchstyle.fit(
        Net, _data(), _data(24), epochs=1, run_dir=str(run), overwrite=True, verbose=False
    )
    assert capsys.readouterr().out == ""  # verbose=False: nothing but warnings


def _sequential() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_a_fit_run_of_a_module_instance_resumes_from_python(tmp_path):
    """As docs/training.md says: fit again with a fresh module and resume=RUN."""
    run = str(tmp_path / "run")
    common = {"batch_size": 16, "verbose": False}
    first = torchstyle.fit(_sequential(), _data(), _data(24), epochs=1, run_dir=run, **common)
    assert first.epochs == 1 and (tmp_path / "run" / "model.pt2").is_file()
    again = torchstyle.fit(_sequential(), _data(), _data(24), epochs=2, resume=run, **common)
    assert again.epochs == 2 and again.steps == 2 * first.steps
    history = (tmp_path / "run" / "resume_history.jsonl").read_text()
    assert history.strip()


def test_a_module_export_cannot_trace_trains_and_says_so_in_one_line(tmp_path, capfd):
    class Branchy(Net):  # defined in a function, as in a notebook: no constructor to replay
        """A network torch.export cannot trace: its branch depends on the data."""

        def forward(self, x):
            out = self.layers(x)
            return out if x.sum() > 0 else -out

    run = tmp_path / "run"
    torchstyle.fit(Branchy(), _data(), _data(24), epochs=1, batch_size=16, run_dir=str(run))
    shown = capfd.readouterr()
    err = shown.out + shown.err
    said = [line for line in err.splitlines() if "torch.export cannot trace Branchy" in line]
    assert len(said) == 1 and "torchstyle.fit(NetClass" in said[0], err
    assert "def forward" not in err, err  # torch's partial graph is held back
    assert not (run / "model.pt2").exists() and (run / "checkpoints" / "best.pt").is_file()
    refused = run_cli("test", str(run), "--data", "digits")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "holds no model.pt2" in refused.stderr
    exported = run_cli("export", str(run), "--format", "safetensors")
    assert exported.returncode == 0, exported.stderr


def test_fit_names_the_cause_of_inputs_it_cannot_take(tmp_path):
    data = _data()
    with pytest.raises(UserError, match=r"train_data is a DataLoader; .*\(train_data.dataset\)"):
        torchstyle.fit(Net(), DataLoader(data, batch_size=8), data, run_dir=str(tmp_path / "a"))
    dicts = [{"image": x, "label": y} for x, y in data]
    with pytest.raises(UserError, match=r"samples are dicts \(keys \['image', 'label'\]\)"):
        torchstyle.fit(Net(), dicts, data, run_dir=str(tmp_path / "b"))
    with pytest.raises(
        UserError, match=r"model TwoOutputs returns a tuple; .*return only the logits"
    ):
        torchstyle.fit(TwoOutputs(), data, data, run_dir=str(tmp_path / "c"))


@pytest.mark.slow
def test_the_readme_fit_example_then_every_door_of_the_cli(tmp_path):
    """The README's example verbatim (an nn.Sequential instance), then test, predict, export,
    runs and resume on its run folder."""
    from tests.engine.test_user_models import _digit_png

    proc = subprocess.run(
        [sys.executable, "-c", _readme_example()],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^model: .*Sequential", proc.stdout, re.M), proc.stdout
    assert "epoch 10/10: train loss" in proc.stdout
    run = tmp_path / "runs" / "notebook"
    assert (run / "model.pt2").is_file()

    # The command the run prints is the one that works: its data came from Python, so it
    # names --data (without it, `test` refuses in one line).
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("evaluate again:")]
    printed = shlex.split(line.removeprefix("evaluate again:").split("  (")[0])
    assert printed == ["torchstyle", "test", str(run), "--data", "SOURCE"], line
    refused = run_cli("test", str(run), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "pass --data" in refused.stderr
    tested = run_cli(*printed[1:-1], "digits", "--json", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    assert json.loads(tested.stdout)["samples"] > 0
    predicted = run_cli("predict", str(run), str(_digit_png(tmp_path / "zero.png")))
    assert predicted.returncode == 0, predicted.stderr
    assert "zero.png" in predicted.stdout
    for fmt in ("safetensors", "pt2"):
        exported = run_cli("export", str(run), "--format", fmt)
        assert exported.returncode == 0, exported.stderr
        assert (run / "export" / f"model.{fmt}").is_file()
    listed = run_cli("runs", str(tmp_path / "runs"))
    assert listed.returncode == 0 and "finished" in listed.stdout, listed.stdout + listed.stderr
    resumed = run_cli("train", "--resume", str(run))
    assert resumed.returncode == 2
    assert resumed.stderr.count("\n") == 1, resumed.stderr
    assert "resume it from Python with the module: torchstyle.fit(model" in resumed.stderr
