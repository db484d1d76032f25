"""Each optional extra, hidden in turn: the command that needs it says which `pip install`
in one line, before it writes anything."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from torchstyle.extras import EXTRAS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAULT_SITE = str(Path(__file__).resolve().parent / "faultsite")
# A requirement's distribution name -> the module it installs, where the two differ.
MODULE_OF = {"mlflow-skinny": "mlflow"}


def test_the_table_matches_pyproject():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = {k: v for k, v in data["project"]["optional-dependencies"].items() if k != "dev"}
    assert set(EXTRAS) == set(declared)
    for extra, requirements in declared.items():
        names = [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in requirements]
        assert EXTRAS[extra] == tuple(MODULE_OF.get(n, n) for n in names), extra


SWEEP = '[fixed]\nmodel = "mlp"\ndata = "digits"\nepochs = 1\n[space]\nlr = {type = "float", low = 0.001, high = 0.1}\n'

# module hidden -> (extra, the command needing it, the folder it must not create)
CASES = {
    "timm": ("timm", ["train", "--model", "timm:resnet18", "--data", "digits", "--run-dir", "r"], "r"),
    "optuna": ("experiments", ["sweep", "--config", "s.toml", "--dir", "sw"], "sw"),
    "matplotlib": ("experiments", ["runs", "runs", "--plot", "loss", "--output", "p.png"], "p.png"),
    "mlflow": ("mlflow", ["train", "--data", "digits", "--tracker", "mlflow", "--run-dir", "r"], "r"),
    "sqlalchemy": ("mlflow", ["train", "--data", "digits", "--tracker", "mlflow", "--run-dir", "r"], "r"),
    # Port 1: were the driver found, nothing would answer there.
    "psycopg": ("sweep-postgres", ["sweep", "--config", "s.toml", "--dir", "sw", "--storage", "postgresql://me:pw@127.0.0.1:1/sweeps"], "sw"),
}  # fmt: skip


def test_every_module_of_every_extra_is_hidden_by_a_case():
    # pygls: tests/lint/test_lsp.py hides it
    exempt = {"alembic", "pygls"}
    assert {m for modules in EXTRAS.values() for m in modules} - set(CASES) <= exempt


@pytest.mark.parametrize("module", sorted(CASES))
def test_a_missing_extra_is_one_line_before_anything_is_written(module, tmp_path):
    extra, argv, created = CASES[module]
    (tmp_path / "s.toml").write_text(SWEEP)
    (tmp_path / "runs").mkdir()
    env = {"PYTHONPATH": f"{FAULT_SITE}{os.pathsep}{REPO}", "TORCHSTYLE_TEST_HIDE": module}
    proc = run_cli(*argv, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"needs {module}" in lines[0] and f"pip install 'torchstyle[{extra}]'" in lines[0]
    assert not (tmp_path / created).exists(), "written before the refusal"
    assert ":pw@" not in proc.stderr, "a password in the message"
