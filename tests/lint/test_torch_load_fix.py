"""TS502's fix (``weights_only=True``) is offered only where the project saves plain data.

Projects are real folders on disk (a ``pyproject.toml`` marks the root); the fact "saves
non-tensor objects anywhere" is computed over every file of the project.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli
from torchstyle.lint import saves
from torchstyle.lint.runner import Linter

LOADER = """\
import torch


def resume(path):
    return torch.load(path, map_location="cpu")
"""


def project(root: Path, files: dict[str, str]) -> Path:
    """Writes a project (its files and a pyproject.toml) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n", encoding="utf-8")
    for name, text in {"load.py": LOADER, **files}.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def load_fix_offered(root: Path) -> bool:
    """Whether TS502 offers its fix on the load in ``root/load.py``."""
    path = root / "load.py"
    findings = Linter(["TS502"]).lint(path.read_text(encoding="utf-8"), str(path))
    assert [f.code for f in findings] == ["TS502"]
    return findings[0].fix is not None


OBJECT_SAVES = {
    "dict built in a variable": """
        import torch

        def save(model, args, epoch):
            ckpt = {"model": model.state_dict(), "epoch": epoch}
            ckpt["args"] = args
            torch.save(ckpt, "last.pt")
    """,
    "dict updated with a config": """
        import torch

        def save(model, cfg):
            state = dict(model=model.state_dict())
            state.update(config=cfg)
            torch.save(state, "last.pt")
    """,
    "the arguments themselves": """
        import argparse
        import torch

        args = argparse.ArgumentParser().parse_args()
        torch.save(args, "args.pt")
    """,
    "a whole model": """
        import torch

        def save(model):
            torch.save(model, "model.pt")
    """,
    "an optimizer object": """
        import torch

        def save(model, optimizer):
            torch.save({"model": model.state_dict(), "optimizer": optimizer}, "last.pt")
    """,
    "numpy arrays": """
        import numpy as np
        import torch

        torch.save({"mean": np.zeros(3)}, "stats.pt")
    """,
    "a saver called elsewhere with the namespace": """
        import torch

        def save_checkpoint(state, path):
            torch.save(state, path)
    """,
    "lightning hyperparameters": """
        import lightning

        class Net(lightning.LightningModule):
            def __init__(self, lr):
                super().__init__()
                self.save_hyperparameters()
    """,
}
CALLERS = {
    "a saver called elsewhere with the namespace": """
        from saving import save_checkpoint

        def train(model, opt):
            save_checkpoint({"model": model.state_dict(), "opt": opt}, "last.pt")
    """,
}


@pytest.mark.parametrize("case", list(OBJECT_SAVES))
def test_fix_withheld_where_the_project_saves_objects(tmp_path: Path, case: str) -> None:
    files = {"saving.py": OBJECT_SAVES[case]}
    if case in CALLERS:
        files["train.py"] = CALLERS[case]
    assert not load_fix_offered(project(tmp_path / "p", files))


PLAIN_SAVES = {
    "state dicts and numbers": """
        import torch

        def save(model, optimizer, epoch, best):
            ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            ckpt["epoch"] = epoch
            ckpt["best"] = best.item()
            torch.save(ckpt, "last.pt")
    """,
    "a saver called with a state dict": """
        import torch

        def save_checkpoint(state, path):
            torch.save(state, path)

        def train(model, args):
            save_checkpoint({"model": model.state_dict(), "args": vars(args)}, "last.pt")
    """,
    "nothing saved": """
        def train():
            return 1
    """,
}


@pytest.mark.parametrize("case", list(PLAIN_SAVES))
def test_fix_offered_where_the_project_saves_plain_data(tmp_path: Path, case: str) -> None:
    assert load_fix_offered(project(tmp_path / "p", {"saving.py": PLAIN_SAVES[case]}))


def test_saver_never_called_withholds_the_fix(tmp_path: Path) -> None:
    saver = OBJECT_SAVES["a saver called elsewhere with the namespace"]
    assert not load_fix_offered(project(tmp_path / "p", {"saving.py": saver}))


def test_project_fact_is_computed_once_per_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path / "p", {"saving.py": PLAIN_SAVES["state dicts and numbers"]})
    computed: list[int] = []
    real = saves._texts_save_objects

    def counted(texts: list[str]) -> bool:
        computed.append(len(texts))
        return real(texts)

    monkeypatch.setattr(saves, "_texts_save_objects", counted)
    for _ in range(3):
        load_fix_offered(root)
    assert computed == [2]  # load.py and saving.py, read once


def test_cli_unsafe_fixes_leave_the_load_of_a_project_that_saves_args(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"saving.py": OBJECT_SAVES["dict built in a variable"]})
    done = run_cli("lint", "--isolated", "--select", "TS502", "--unsafe-fixes", str(root))
    assert done.returncode == 1, done.stderr
    assert (root / "load.py").read_text(encoding="utf-8") == LOADER
    (root / "saving.py").write_text(textwrap.dedent(PLAIN_SAVES["state dicts and numbers"]))
    done = run_cli("lint", "--isolated", "--select", "TS502", "--unsafe-fixes", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "weights_only=True" in (root / "load.py").read_text(encoding="utf-8")


WRAPPER = """\
import torch


def load_checkpoint(path, **kwargs):
    return torch.load(path, **kwargs)


state = load_checkpoint("a.pt", map_location="cpu")
"""


def test_load_wrapper_whose_callers_never_pass_weights_only() -> None:
    linter = Linter(["TS502"])
    findings = linter.lint(WRAPPER, "wrapper.py")
    assert [(f.line, f.fix) for f in findings] == [(5, None)]
    assert "load_checkpoint()" in findings[0].message
    passed = WRAPPER.replace('map_location="cpu"', 'map_location="cpu", weights_only=True')
    assert linter.lint(passed, "wrapper.py") == []
    uncalled = WRAPPER.rsplit("\n\n\n", 1)[0] + "\n"
    assert linter.lint(uncalled, "wrapper.py") == []
