"""The semantic model's cross-file facts, on small projects written to disk."""

from __future__ import annotations

import ast
from pathlib import Path

from torchstyle.lint.runner import Linter
from torchstyle.lint.semantic import PROJECT, number_expr, summarize_text

BASE = """
import torch.nn as nn


class BaseModel:
    def forward(self, x):
        return x


class Net(nn.Module):
    def forward(self, x):
        return x
"""

OPTS = """
import argparse


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    return parser.parse_args()


def unrelated():
    return 1
"""

TRAIN = """
import torch
from {module} import {name}

if __name__ == "__main__":
    args = {name}()
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(10):
        for x in loader:
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()
"""


def lint(path: Path, code: str) -> list[str]:
    findings = Linter([code]).lint(path.read_text(encoding="utf-8"), str(path))
    return [f"{f.line}:{f.col}:{f.code}" for f in findings]


def test_classes_are_followed_across_files(tmp_path: Path) -> None:
    pkg = tmp_path / "lib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text(BASE)
    user = pkg / "dist.py"
    user.write_text(
        "import numpy as np\n"
        "from .base import BaseModel, Net\n\n\n"
        "class DistModel(BaseModel):\n"
        "    def run(self, x):\n"
        "        return self.forward(x)\n\n\n"
        "class Sub(Net):\n"
        "    def forward(self, x):\n"
        "        return np.exp(x)\n\n\n"
        "class Holder:\n"
        "    def __init__(self):\n"
        "        self.model = DistModel()\n"
        "        self.net = Net()\n\n"
        "    def run(self, x):\n"
        "        return self.model.forward(x) + self.net.forward(x)\n"
    )
    # DistModel's base is a plain class in base.py: self.forward and self.model.forward
    # are not module calls; Net is an nn.Module there, so self.net.forward is one
    assert lint(user, "TS102") == ["21:40:TS102"]
    assert lint(user, "TS101") == ["12:16:TS101"]  # Sub is a module through Net, in base.py


def test_flags_parsed_by_an_imported_project_function(tmp_path: Path) -> None:
    (tmp_path / "opts.py").write_text(OPTS)
    parses = tmp_path / "train.py"
    parses.write_text(TRAIN.format(module="opts", name="parse_args"))
    assert lint(parses, "TS401") == []
    other = tmp_path / "train_other.py"
    other.write_text(TRAIN.format(module="opts", name="unrelated"))
    assert lint(other, "TS401") == ["8:56:TS401"]  # the imported function parses nothing
    assert PROJECT.parses_flags_via(str(parses), "parse_args")
    assert not PROJECT.parses_flags_via(str(other), "unrelated")


def test_a_library_modules_main_block_is_a_demo(tmp_path: Path) -> None:
    pkg = tmp_path / "models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    demo = pkg / "unet.py"
    demo.write_text(TRAIN.format(module="math", name="floor").replace("args = floor()", ""))
    assert lint(demo, "TS401") == []
    script = pkg / "train.py"  # named like an entry point: a script, even in a package
    script.write_text(demo.read_text())
    assert lint(script, "TS401") == ["8:56:TS401"]


def test_summary_reads_classes_imports_and_flag_functions() -> None:
    summary = summarize_text(
        "opts.py", OPTS + "\nfrom .nets import A as B, C\nclass D(B, C): pass\n"
    )
    assert summary.classes["D"] == ["B", "C"]
    assert summary.imports["B"] == (".nets", "A")
    assert summary.flag_functions == {"parse_args"}


def test_numbers_through_names() -> None:
    values = {"hw": ast.parse("x.shape[1:3]", mode="eval").body}
    expr = ast.parse("hw[0] * 2", mode="eval").body
    assert number_expr(expr, values.get)
    assert not number_expr(ast.parse("y * 2", mode="eval").body, values.get)


def test_project_save_scan_reads_only_the_saving_functions(tmp_path: Path) -> None:
    from torchstyle.lint import saves

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "train.py").write_text(
        "import torch\n\n"
        "def unrelated(x):\n    return [x,\n)\n"  # a piece that does not parse on its own
        "\n\ndef checkpoint(model, args, path):\n"
        "    state = {'model': model.state_dict()}\n"
        "    state['args'] = args\n"
        "    torch.save(state, path)\n"
    )
    assert saves.project_saves_objects(str(tmp_path))  # args are saved, through `state`
    (tmp_path / "train.py").write_text(
        "import torch\n\n\ndef checkpoint(model, path):\n"
        "    torch.save({'model': model.state_dict(), 'epoch': 3}, path)\n"
    )
    saves.forget()
    assert not saves.project_saves_objects(str(tmp_path))
    module_level = "import torch\nstate = {'opt': opt}\ntorch.save(state, 'x.pt')\n"
    assert saves._parse_blocks(module_level, saves._SAVE_CALL) is not None
