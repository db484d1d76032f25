"""Where people run linters: editors (stdin), CI (SARIF, JSON), pre-commit, big trees (--jobs),
monorepos (each file's nearest configuration). Real subprocesses on real files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import HANG_TIMEOUT
from torchstyle.lint import lint_source

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("sarif-schema-2.1.0.json")
HOOK = REPO / "torchstyle" / "lint" / "pre_commit.py"
BAD = "import torch\n\n\ndef run(model, x):\n    return model.forward(x)\n"
AMP = textwrap.dedent(
    """\
    import torch

    scaler = torch.cuda.amp.GradScaler()
    layer = torch.nn.utils.weight_norm(torch.nn.Linear(2, 2))
    """
)


def lint(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m torchstyle lint ARGS`` in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "torchstyle", "lint", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )


def write(root: Path, files: dict[str, str]) -> None:
    """Writes ``files`` (relative path -> text) under ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_stdin_with_a_filename_for_editors(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/pyproject.toml": '[tool.torchstyle.lint]\nignore = ["TS502"]\n'})
    source = BAD + "state = torch.load('w.pt')\n"
    found = lint("-", "--stdin-filename", "pkg/train.py", cwd=tmp_path, stdin=source)
    assert found.returncode == 1
    assert found.stdout.startswith("pkg/train.py:5:12: TS102 ")
    assert "TS502" not in found.stdout, "the configuration of the named file's folder applies"
    fixed = lint("-", "--fix", "--stdin-filename", "x.py", cwd=tmp_path, stdin=BAD)
    assert fixed.stdout == BAD.replace("model.forward(x)", "model(x)")
    assert fixed.returncode == 0 and fixed.stderr == ""
    plain = lint("-", cwd=tmp_path, stdin=BAD)
    assert plain.stdout.startswith("-:5:12: TS102")
    mixed = lint("-", "a.py", cwd=tmp_path)
    assert mixed.returncode == 2 and "cannot be mixed" in mixed.stderr
    diff = lint("-", "--diff", "--stdin-filename", "x.py", cwd=tmp_path, stdin=BAD)
    assert diff.returncode == 1 and "+    return model(x)" in diff.stdout
    lonely = lint("--stdin-filename", "x.py", "a.py", cwd=tmp_path)
    assert lonely.returncode == 2 and "pass `-` too" in lonely.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_on_the_command_line_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.py")
    write(tmp_path, {"bad.py": BAD})
    result = lint("pipe.py", "bad.py", "--isolated", cwd=tmp_path)
    assert result.returncode == 1
    assert "pipe.py:1:1: TS001 not a regular file; skipped" in result.stdout
    assert "bad.py:5:12: TS102" in result.stdout


def test_each_file_gets_its_nearest_configuration(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[tool.torchstyle.lint]\nextend-select = ["TS601"]\n',
            "bad.py": BAD,
            "sub/pyproject.toml": (
                '[tool.torchstyle.lint]\nignore = ["TS102"]\nexclude = ["generated/"]\n'
            ),
            "sub/bad.py": BAD + "class bad_name:\n    pass\n",
            "sub/generated/bad.py": BAD,
            "sub/deeper/bad.py": BAD,
        },
    )
    result = lint(cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert "bad.py:5:12: TS102" in result.stdout
    assert not [line for line in lines if line.startswith("sub/") and "TS102" in line], lines
    assert not [line for line in lines if "generated" in line], "the sub-project's exclude"
    assert not [line for line in lines if "TS601" in line and line.startswith("sub/")], (
        "the sub-project's own table replaces the root's (as in ruff), it does not add to it"
    )
    named = lint("sub/bad.py", cwd=tmp_path)
    assert "TS102" not in named.stdout
    forced = lint("--config", "pyproject.toml", "sub/bad.py", cwd=tmp_path)
    assert "sub/bad.py:5:12: TS102" in forced.stdout and "TS601" in forced.stdout


def test_target_torch_limits_the_deprecations(tmp_path: Path) -> None:
    write(tmp_path, {"amp.py": AMP, "pyproject.toml": ""})
    everything = lint("amp.py", "--isolated", cwd=tmp_path)
    assert everything.stdout.count("TS503") == 2
    (tmp_path / "pyproject.toml").write_text('[tool.torchstyle.lint]\ntarget-torch = "2.3"\n')
    older = lint("amp.py", cwd=tmp_path)
    assert older.stdout.count("TS503") == 1 and "weight_norm" in older.stdout
    (tmp_path / "pyproject.toml").write_text("[tool.torchstyle.lint]\ntarget-torch = 2.4\n")
    bad = lint("amp.py", cwd=tmp_path)
    assert bad.returncode == 2 and 'quoted version such as "2.4"' in bad.stderr


def test_sarif_is_valid_sarif_2_1_0(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    write(tmp_path, {"bad.py": BAD + "total = 0\n", "amp.py": AMP, "broken.py": "def (:\n"})
    result = lint("--format", "sarif", "--isolated", cwd=tmp_path)
    assert result.returncode == 1
    log = json.loads(result.stdout)
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(log), key=str)
    assert not errors, errors[0]
    counted = lint("--format", "sarif", "--statistics", "--isolated", cwd=tmp_path)
    assert counted.returncode == 2 and "use --format text or json" in counted.stderr
    (run,) = log["runs"]
    codes = [r["ruleId"] for r in run["results"]]
    assert sorted(codes) == ["TS001", "TS102", "TS503", "TS503"]
    rules = run["tool"]["driver"]["rules"]
    for r in run["results"]:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
    forward = next(r for r in run["results"] if r["ruleId"] == "TS102")
    place = forward["locations"][0]["physicalLocation"]
    assert place["artifactLocation"] == {"uri": "bad.py", "uriBaseId": "%SRCROOT%"}
    assert place["region"]["startLine"] == 5 and place["region"]["startColumn"] == 12
    (change,) = forward["fixes"][0]["artifactChanges"]
    (edit,) = change["replacements"]
    start = edit["deletedRegion"]["charOffset"]
    assert BAD[start : start + edit["deletedRegion"]["charLength"]] == ".forward"


def test_json_fields_are_the_documented_ones(tmp_path: Path) -> None:
    write(tmp_path, {"bad.py": BAD})
    (finding,) = json.loads(lint("--format", "json", "--isolated", cwd=tmp_path).stdout)
    docs = (REPO / "docs" / "lint.md").read_text(encoding="utf-8")
    section = docs[docs.index("### JSON output") :]
    section = section[: section.index("\n#", 1)]
    documented = re.findall(r"^\| `([a-z_.]+)` \|", section, re.MULTILINE)
    top = [name for name in documented if "." not in name]
    assert sorted(top) == sorted(finding), "document every field of --format json"
    assert finding["schema_version"] == 1 and f"schema_version` | `{1}`" in section
    nested = {name.split(".", 1)[1] for name in documented if name.startswith("fix.")}
    assert nested == set(finding["fix"]), "and the fields of a fix"


def test_jobs_give_the_same_output_as_one_process(tmp_path: Path) -> None:
    write(tmp_path, {f"pkg{i % 4}/m{i}.py": BAD if i % 3 else AMP for i in range(40)})
    one = lint("--isolated", "--jobs", "1", cwd=tmp_path)
    two = lint("--isolated", "--jobs", "2", cwd=tmp_path)
    default = lint("--isolated", cwd=tmp_path)
    assert one.returncode == two.returncode == default.returncode == 1
    assert one.stdout == two.stdout == default.stdout
    assert one.stdout.count("TS102") == 26 and one.stdout.count("TS503") == 28
    fixed = lint("--isolated", "--jobs", "2", "--fix", cwd=tmp_path)
    assert "Fixed 40 problems" in fixed.stdout
    assert "model(x)" in (tmp_path / "pkg1" / "m1.py").read_text()
    zero = lint("--jobs", "0", cwd=tmp_path)
    assert zero.returncode == 2 and "--jobs 0" in zero.stderr


def test_noqa_on_the_last_line_of_a_multiline_call() -> None:
    source = "import torch\n\nstate = torch.load(\n    'w.pt',\n)  # noqa: TS502\n"
    assert lint_source(source) == []
    assert [f.code for f in lint_source(source.replace("  # noqa: TS502", ""))] == ["TS502"]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the syntax is valid on 3.12+")
def test_newer_syntax_says_so() -> None:
    (finding,) = lint_source("def first[T](items: list[T]) -> T:\n    return items[0]\n")
    assert finding.code == "TS001"
    assert f"Python {sys.version_info.major}.{sys.version_info.minor}'s grammar" in finding.message


def test_pre_commit_hook_runs_from_the_checkout(tmp_path: Path) -> None:
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    entries = re.findall(r"^\s+entry: (\S+)", hooks, re.MULTILINE)
    assert entries and all(entry == "torchstyle/lint/pre_commit.py" for entry in entries)
    assert "language: python" not in hooks, "a python hook would pip-install torch"
    assert os.access(HOOK, os.X_OK), "language: script runs the file itself"
    write(tmp_path, {"bad.py": BAD})
    # -S -I: no site-packages and no PYTHONPATH, so neither torch nor torchstyle is importable
    probe = subprocess.run(
        [sys.executable, "-S", "-I", "-c", "import torch"],
        capture_output=True,
        timeout=HANG_TIMEOUT,
    )
    assert probe.returncode != 0
    result = subprocess.run(
        [sys.executable, "-S", "-I", str(HOOK), "--force-exclude", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("bad.py:5:12: TS102")
    usage = subprocess.run(
        [sys.executable, "-S", "-I", str(HOOK), "--select", "TS999", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )
    assert usage.returncode == 2 and "matches no rule" in usage.stderr


@pytest.mark.slow
def test_pre_commit_hook_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=HANG_TIMEOUT
    )
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip("no POSIX virtualenv layout")
    checkout = tmp_path / "checkout"
    shutil.copytree(
        REPO / "torchstyle", checkout / "torchstyle", ignore=shutil.ignore_patterns("__pycache__")
    )
    write(tmp_path, {"project/bad.py": BAD})
    result = subprocess.run(
        [str(python), str(checkout / "torchstyle" / "lint" / "pre_commit.py"), "bad.py"],
        cwd=tmp_path / "project",
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert result.returncode == 1, result.stderr
    assert "bad.py:5:12: TS102" in result.stdout
    modules = subprocess.run(
        [str(python), "-c", "import torch"], capture_output=True, timeout=HANG_TIMEOUT
    )
    assert modules.returncode != 0, "the fresh virtualenv has no torch"


def test_benchmark_scripts_may_print_every_step() -> None:
    source = (
        "def run(model, x, optimizer, n):\n"
        "    for k in range(n):\n"
        "        model(x).sum().backward()\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n"
        "        print(k)\n"
    )
    assert [f.code for f in lint_source(source, "train.py")] == ["TS301"]
    assert (
        lint_source(source, "bench.py") == [] and lint_source(source, "tools/profile_gpt.py") == []
    )


def test_hardcoded_hyperparameters_are_fine_in_tests() -> None:
    source = (
        "import torch\n\n"
        "model = torch.nn.Linear(2, 2)\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for epoch in range(3):\n"
        "    model(torch.ones(2)).sum().backward()\n"
        "    optimizer.step()\n"
        "    optimizer.zero_grad()\n"
    )
    assert [f.code for f in lint_source(source, "train.py")] == ["TS401"]
    for path in ("test_train.py", "train_test.py", "pkg/tests/gpu/train.py"):
        assert lint_source(source, path) == [], path


def test_a_projects_own_no_grad_decorator_counts() -> None:
    source = (
        "import numpy as np\nimport torch\nfrom utils import smart_inference_mode\n\n"
        "class Net(torch.nn.Module):\n"
        "    @smart_inference_mode()\n"
        "    def forward(self, x):\n"
        "        return np.asarray(x.cpu().numpy())\n"
    )
    assert lint_source(source, select=["TS101"]) == []
    undecorated = source.replace("    @smart_inference_mode()\n", "")
    assert len(lint_source(undecorated, select=["TS101"])) == 2


def test_torch_load_fix_is_not_offered_blind() -> None:
    fixtures = Path(__file__).with_name("fixtures")
    source = (fixtures / "TS502_objects.py").read_text(encoding="utf-8")
    (finding,) = lint_source(source, "TS502_objects.py", select=["TS502"])
    assert finding.fix is None and "add_safe_globals" in finding.message
    plain = "import torch\n\nstate = torch.load('w.pt')\nmodel = torch.load('m.pt')\n"
    state, model = lint_source(plain, select=["TS502"])
    assert state.fix is not None and model.fix is None
