"""Every place torchstyle writes, made to fail with every fault (see ``tests/faults.py``).

For each write site and each fault (no space, I/O error, read-only, permission denied) the
write must end in one :class:`WriteError` line naming the file, the cause and the fix (exit
code 2), leave no temporary file, keep what was there before, and succeed when run again
once the fault is gone. ``test_every_write_goes_through_torchstyle_writes`` fails when the
package writes a file anywhere but through ``torchstyle.writes`` or a registered site.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.faults import FAULTS, injected, leftovers
from torchstyle.writes import WriteError

PACKAGE = Path(__file__).resolve().parent.parent / "torchstyle"


@dataclass
class Site:
    """One write site: ``before`` writes a first version, ``write`` the one that fails.

    ``kept(folder)`` checks that the first version is still there after the failure.
    """

    name: str
    pattern: str  # the file name (glob) the write opens
    before: Callable[[Path], Any]
    write: Callable[[Path, Any], Any]
    kept: Callable[[Path, Any], None]


def _state(value: float) -> dict[str, Any]:
    return {"w": torch.full((64, 64), value), "epoch": int(value)}


# -- checkpoints ------------------------------------------------------------------------------
def _manager(folder: Path) -> Any:
    from torchstyle.engine.checkpoint import CheckpointManager

    return CheckpointManager(folder / "checkpoints", keep=2)


def _checkpoint_before(folder: Path) -> Any:
    _manager(folder).save(_state(1.0), epoch_end=1, is_best=True)


def _checkpoint_write(folder: Path, _: Any, background: bool = False) -> None:
    manager = _manager(folder)
    manager.save(_state(2.0), epoch_end=2, is_best=False, background=background)
    manager.wait()


def _checkpoint_kept(folder: Path, _: Any) -> None:
    from torchstyle.engine.checkpoint import load_checkpoint

    assert load_checkpoint(folder / "checkpoints" / "latest.pt")["epoch"] == 1


def _shards_before(folder: Path) -> Any:
    from torchstyle.engine import fsdp

    model = nn.Linear(8, 4)
    optimizers = {"model": torch.optim.SGD(model.parameters(), lr=0.1)}
    fsdp.save_shards(folder, "shards-1", model, optimizers, is_main=True, barrier=lambda: None)
    return model, optimizers


def _shards_write(folder: Path, built: Any) -> None:
    from torchstyle.engine import fsdp

    model, optimizers = built
    fsdp.save_shards(folder, "shards-2", model, optimizers, is_main=True, barrier=lambda: None)


def _shards_kept(folder: Path, built: Any) -> None:
    from torchstyle.engine import fsdp

    model, optimizers = built
    fsdp.load_shards(folder / "shards-1", model, optimizers)
    assert not (folder / "shards-2").exists()


# -- run folder files -------------------------------------------------------------------------
def _json_site(name: str, write: Callable[[Path, dict[str, Any]], None], file: str) -> Site:
    def kept(folder: Path, _: Any) -> None:
        assert json.loads((folder / file).read_text())["n"] == 1

    return Site(
        name,
        f".{Path(file).stem}.tmp-*",
        lambda f: write(f, {"n": 1}),
        lambda f, _: write(f, {"n": 2}),
        kept,
    )


def _status(folder: Path, status: dict[str, Any]) -> None:
    from torchstyle.experiments.status import write_status

    write_status(folder, status)


def _config(folder: Path, value: dict[str, Any]) -> None:
    from torchstyle.config import TrainConfig

    TrainConfig(epochs=value["n"]).save(folder)


def _data_info(folder: Path, info: dict[str, Any]) -> None:
    from torchstyle.engine.setup import write_data_info

    write_data_info(folder, info)


def _marker_site() -> Site:
    from torchstyle.engine import rundir

    def kept(folder: Path, _: Any) -> None:
        assert not (folder / rundir.MARKER).exists()

    return Site("run marker", ".*.tmp-*", lambda f: None, lambda f, _: rundir.write_marker(f), kept)


def _config_kept(folder: Path, _: Any) -> None:
    assert json.loads((folder / "config.json").read_text())["epochs"] == 1


def _history(folder: Path, record: dict[str, Any]) -> None:
    from torchstyle.engine.rundir import append_history

    append_history(folder, record)


def _history_kept(folder: Path, _: Any) -> None:
    lines = (folder / "resume_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1]


def _metrics(folder: Path, step: int) -> None:
    from torchstyle.engine.logger import RunLogger

    logger = RunLogger(folder)
    try:
        logger.log_scalars(step, {"loss": float(step)})
        logger.flush()
    finally:
        logger.close()


def _metrics_kept(folder: Path, _: Any) -> None:
    steps = [
        json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1]


def _events_kept(folder: Path, _: Any) -> None:
    events = list(folder.glob("events.out.tfevents.*"))
    assert events and all(p.stat().st_size > 0 for p in events)


def _samples(folder: Path, step: int) -> None:
    from torchstyle.engine.logger import RunLogger

    logger = RunLogger(folder)
    try:
        images = torch.full((2, 3, 8, 8), step / 4.0 - 0.5)
        logger.log_images(step, "samples", images, folder / "samples" / "grid.png")
    finally:
        logger.close()


def _png_kept(file: str) -> Callable[[Path, Any], None]:
    def kept(folder: Path, before: Any) -> None:
        assert (folder / file).read_bytes() == before

    return kept


# -- exports, predictions, plots --------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def _export(fmt: str) -> Callable[[Path], bytes]:
    def write(folder: Path, *_: Any) -> bytes:
        from torchstyle import export

        out = folder / f"model.{fmt}"
        if fmt == "safetensors":
            weights = _Net().state_dict()
            export._save_safetensors(weights, out, {"model": {"name": "net"}}, {"channels": 1})
        else:
            export._save_program(_Net(), out, (1, 8, 8), "Net")
        return out.read_bytes()

    return write


def _program(folder: Path, *_: Any) -> bytes:
    from torchstyle.engine.programs import save_program
    from torchstyle.models.adapters import ClassificationAdapter

    model = ClassificationAdapter(_Net())
    assert save_program(model, torch.zeros(1, 8, 8), folder) == "model.pt2"
    return (folder / "model.pt2").read_bytes()


def _predictions(folder: Path, n: int) -> bytes:
    from torchstyle.engine.rundir import atomic_write_text

    atomic_write_text(folder / "predictions.csv", f"image,class,probability\na.png,{n},1.0\n")
    return (folder / "predictions.csv").read_bytes()


def _predicted_images(folder: Path, n: int) -> bytes:
    from torchstyle.engine.predict import save_images

    save_images(torch.full((1, 1, 4, 4), n / 4.0), [folder / "out" / "a.png"])
    return (folder / "out" / "a.png").read_bytes()


def _plot(folder: Path, *_: Any) -> bytes:
    from torchstyle.experiments.plot import plot_runs

    run = folder / "run"
    if not run.is_dir():
        run.mkdir()
        (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n')
    out = folder / "plot.png"
    out.unlink(missing_ok=True)
    plot_runs([{"run": str(run), "path": str(run), "name": "run"}], "loss", out)
    return out.read_bytes()


def _trial_state(folder: Path, n: int) -> None:
    from torchstyle.experiments.trial import TRIAL_FILE, SweepReporter

    reporter = SweepReporter.__new__(SweepReporter)
    reporter.state = {"n": n}
    reporter._save(_Trainer(folder))
    assert json.loads((folder / TRIAL_FILE).read_text())["n"] == n


def _mlflow_state(folder: Path, n: int) -> None:
    from torchstyle.experiments.tracking import MlflowTracker

    callback = MlflowTracker.__new__(MlflowTracker)
    callback.run_id, callback.offset = f"run{n}", n
    callback._save_state(_Trainer(folder), None)


class _Trainer:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir


def _model_copy(folder: Path, n: int) -> Any:
    from torchstyle.models.sources import save_copy

    source = folder / f"src{n}" / "net.py"
    source.parent.mkdir(exist_ok=True)
    source.write_text(f"N = {n}\n")
    return save_copy({"origin": str(source)}, folder / "run")


def _model_copy_kept(folder: Path, _: Any) -> None:
    assert not (folder / "run" / "model").exists() or not list((folder / "run" / "model").iterdir())


def _project(folder: Path, n: int) -> None:
    from torchstyle.scaffold.project import write_project

    write_project("proj", "classifier", folder / "proj", force=n > 1)


def _project_kept(folder: Path, _: Any) -> None:
    assert (folder / "proj" / "train.py").is_file()


def _lint_fix(folder: Path, n: int) -> str:
    from torchstyle.cli import main

    source = folder / "m.py"
    if n == 1:
        source.write_text("import torch\nx = torch.load('a.pt')\n")
        return source.read_text()
    assert main(["lint", "--fix", "--unsafe-fixes", "--isolated", str(source)]) in (0, 1)
    assert source.read_text() != "import torch\nx = torch.load('a.pt')\n"  # fixed
    return source.read_text()


def _lint_kept(folder: Path, before: Any) -> None:
    assert (folder / "m.py").read_text() == before


SITES = [
    Site("checkpoint", ".latest.tmp-*", _checkpoint_before, _checkpoint_write, _checkpoint_kept),
    Site(
        "checkpoint (background write)",
        ".latest.tmp-*",
        _checkpoint_before,
        lambda f, b: _checkpoint_write(f, b, background=True),
        _checkpoint_kept,
    ),
    Site("sharded checkpoint", "*.distcp", _shards_before, _shards_write, _shards_kept),
    _json_site("status.json", _status, "status.json"),
    Site(
        "config",
        ".config.tmp-*",
        lambda f: _config(f, {"n": 1}),
        lambda f, _: _config(f, {"n": 2}),
        _config_kept,
    ),
    _json_site("data.json", _data_info, "data.json"),
    _marker_site(),
    Site(
        "resume history",
        "resume_history.jsonl",
        lambda f: _history(f, {"n": 1}),
        lambda f, _: _history(f, {"n": 2}),
        _history_kept,
    ),
    Site(
        "metrics.jsonl",
        "metrics.jsonl",
        lambda f: _metrics(f, 1),
        lambda f, _: _metrics(f, 2),
        _metrics_kept,
    ),
    Site(
        "TensorBoard events",
        "events.out.tfevents.*",
        lambda f: _metrics(f, 1),
        lambda f, _: _metrics(f, 2),
        _events_kept,
    ),
    Site(
        "sample grid",
        ".grid.tmp-*",
        lambda f: (_samples(f, 1), (f / "samples/grid.png").read_bytes())[1],
        lambda f, _: _samples(f, 2),
        _png_kept("samples/grid.png"),
    ),
    Site(
        "export safetensors",
        ".model.tmp-*",
        _export("safetensors"),
        _export("safetensors"),
        _png_kept("model.safetensors"),
    ),
    Site("export pt2", ".model.tmp-*", _export("pt2"), _export("pt2"), _png_kept("model.pt2")),
    Site("fit program (model.pt2)", ".model.tmp-*", _program, _program, _png_kept("model.pt2")),
    Site(
        "predictions csv",
        ".predictions.tmp-*",
        lambda f: _predictions(f, 1),
        lambda f, _: _predictions(f, 2),
        _png_kept("predictions.csv"),
    ),
    Site(
        "predicted images",
        ".a.tmp-*",
        lambda f: _predicted_images(f, 1),
        lambda f, _: _predicted_images(f, 2),
        _png_kept("out/a.png"),
    ),
    Site("runs --plot", ".plot.tmp-*", _plot, _plot, lambda f, _: None),
    Site(
        "sweep trial state",
        ".sweep_trial.tmp-*",
        lambda f: _trial_state(f, 1),
        lambda f, _: _trial_state(f, 2),
        lambda f, _: _trial_state(f, 1),
    ),
    Site(
        "mlflow state",
        ".mlflow.tmp-*",
        lambda f: _mlflow_state(f, 1),
        lambda f, _: _mlflow_state(f, 2),
        lambda f, _: None,
    ),
    Site(
        "model file copy",
        ".net.tmp-*",
        lambda f: None,
        lambda f, _: _model_copy(f, 2),
        _model_copy_kept,
    ),
    Site(
        "generated project",
        ".train.tmp-*",
        lambda f: _project(f, 1),
        lambda f, _: _project(f, 2),
        _project_kept,
    ),
    Site(
        "lint --fix",
        ".m.tmp-*",
        lambda f: _lint_fix(f, 1),
        lambda f, _: _lint_fix(f, 2),
        _lint_kept,
    ),
]


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("site", SITES, ids=lambda s: s.name)
def test_a_failed_write_is_one_line_and_loses_nothing(
    site: Site, fault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    before = site.before(tmp_path)
    with injected(fault, site.pattern):
        if site.name == "lint --fix":  # lint reports an unwritable file as a finding
            error = None
            with pytest.raises(AssertionError):
                _lint_fix(tmp_path, 2)
            found = capsys.readouterr().out
            assert f"cannot write the fixes: {FAULT_WORDS[fault]}" in found, found
        else:
            with pytest.raises(WriteError) as caught:
                site.write(tmp_path, before)
            error = caught.value
    if error is not None:
        message = str(error)
        assert "\n" not in message and error.exit_code == 2
        assert message.startswith(f"could not write {tmp_path}"), message
        assert FAULT_WORDS[fault] in message, message
        assert any(
            fix in message
            for fix in ("free disk space", "check the disk", "writable", "permissions")
        ), message
    assert leftovers(tmp_path) == [], "a temporary file was left behind"
    site.kept(tmp_path, before)
    site.write(tmp_path, before)  # the fault is gone: the same write succeeds


FAULT_WORDS = {
    "ENOSPC": "No space left on device",
    "EIO": "Input/output error",
    "EROFS": "Read-only file system",
    "EACCES": "Permission denied",
}


# -- every write is registered ------------------------------------------------------------------
# Calls that write files, outside torchstyle/writes.py: (file, call) -> (count, the harness site
# that makes them fail, or why they are not a site). Any other write call fails the test below.
REGISTERED: dict[tuple[str, str], tuple[int, str]] = {
    ("engine/checkpoint.py", "torch.save"): (1, "checkpoint"),
    ("engine/fsdp.py", "state_dict_saver.save"): (1, "sharded checkpoint"),
    ("engine/logger.py", "FileWriter"): (1, "TensorBoard events"),
    ("engine/logger.py", "save_image"): (1, "sample grid"),
    ("engine/predict.py", "save_image"): (2, "predicted images"),
    ("engine/rundir.py", "os.open"): (1, "not a site: the run's lock file holds no data"),
    ("engine/rundir.py", "os.pwrite"): (1, "not a site: the lock file's holder, advisory"),
    ("cli.py", "os.open"): (1, "not a site: /dev/null, under a closed pipe"),
    ("experiments/plot.py", "fig.savefig"): (1, "runs --plot"),
    ("experiments/tracking.py", "FileWriter"): (1, "TensorBoard events"),
    ("export.py", "torch.export.save"): (1, "export pt2"),
    ("engine/programs.py", "torch.export.save"): (1, "fit program (model.pt2)"),
    # The sweep's own files and its Optuna storage: their failures reach the CLI, which
    # names the fault in one line (test_sweep_storage_fault_is_one_line).
    ("experiments/sweep.py", "open('a+')"): (1, "sweep storage"),
    ("experiments/sweep.py", "open('ab')"): (1, "sweep storage"),
    ("experiments/sweep.py", "mkdir"): (6, "sweep storage"),
    ("experiments/study.py", "mkdir"): (1, "sweep storage"),
    # The lint cache only speeds up the next run: an entry that cannot be written is skipped
    # (its temporary file removed), and the run's result is the same.
    ("lint/cache.py", "mkstemp"): (1, "not a site: lint's cache, skipped when unwritable"),
    ("lint/cache.py", "os.replace"): (1, "not a site: lint's cache, skipped when unwritable"),
    ("lint/cache.py", "open('w')"): (1, "not a site: lint's cache, skipped when unwritable"),
    ("lint/command.py", "os.open"): (1, "not a site: /dev/null, under a closed pipe"),
    ("lint/fast.py", "os.open"): (1, "not a site: /dev/null, under a closed pipe"),
    ("experiments/sweep.py", "write_text"): (1, "sweep storage"),
    ("experiments/sweep.py", "os.replace"): (1, "sweep storage"),
}
_WRITE_CALLS = {
    "write_text",
    "write_bytes",
    "savefig",
    "save_image",
    "save_file",
    "copy",
    "copy2",
    "copyfile",
    "copytree",
    "move",
    "makedirs",
    "mkdir",
    "link",
    "symlink",
    "FileWriter",
    "SummaryWriter",
    "touch",
    "rename",
    "mkstemp",
    "NamedTemporaryFile",
    "fdopen",
    "os.replace",
    "torch.save",
    "torch.export.save",
    "state_dict_saver.save",
    "os.open",
    "os.write",
    "os.pwrite",
}


def _dotted(node: ast.expr) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _open_mode(call: ast.Call) -> str | None:
    index = 1 if isinstance(call.func, ast.Name) else 0  # open(path, mode) / path.open(mode)
    mode = call.args[index] if len(call.args) > index else None
    mode = next((k.value for k in call.keywords if k.arg == "mode"), mode)
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else None


def write_calls(path: Path) -> list[str]:
    """The file-writing calls in one source file: ``open('w')``, ``torch.save``, ``mkdir``..."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        if last == "open" and name != "os.open":
            mode = _open_mode(node)
            if mode and set(mode) & set("wax+"):
                found.append(f"open({mode!r})")
        elif name == "os.open":  # for writing only when its flags say so
            flags = {
                n.attr for a in node.args[1:] for n in ast.walk(a) if isinstance(n, ast.Attribute)
            }
            if flags & {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}:
                found.append(name)
        elif name in _WRITE_CALLS:
            found.append(name)
        elif last in _WRITE_CALLS and "." in name and not name.startswith("os."):
            found.append(name if name in REGISTERED_NAMES else last)
    return found


REGISTERED_NAMES = {call for _, call in REGISTERED}


def test_every_write_goes_through_torchstyle_writes():
    counts: dict[tuple[str, str], int] = {}
    for source in sorted(PACKAGE.rglob("*.py")):
        rel = source.relative_to(PACKAGE).as_posix()
        if rel == "writes.py":
            continue
        for call in write_calls(source):
            counts[(rel, call)] = counts.get((rel, call), 0) + 1
    unregistered = {k: n for k, n in counts.items() if REGISTERED.get(k, (0, ""))[0] != n}
    assert not unregistered, (
        f"writes outside torchstyle/writes.py: {unregistered}; write through torchstyle.writes "
        "(atomic_write, atomic_write_text, open_append, ...) or register the site here with a "
        "harness case in SITES"
    )
    gone = set(REGISTERED) - set(counts)
    assert not gone, f"registered writes no longer in the package: {gone}; drop them"
    names = {s.name for s in SITES} | {"sweep storage"}
    for (_, _call), (_, site) in REGISTERED.items():
        assert site in names or site.startswith("not a site: "), site


def test_the_scan_finds_a_new_write(tmp_path: Path):
    new = tmp_path / "new.py"
    new.write_text(
        "import torch\nfrom pathlib import Path\n"
        "def f(p, x):\n    torch.save(x, p)\n    Path(p).write_text('a')\n"
        "    with open(p, 'w') as f:\n        pass\n    with Path(p).open(mode='ab'):\n"
        "        pass\n    open(p).read()\n"
    )
    assert write_calls(new) == ["torch.save", "write_text", "open('w')", "open('ab')"]


def test_a_pt2_export_raises_no_torch_warning(tmp_path: Path):
    import warnings

    from torchstyle import export

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export._save_program(_Net(), tmp_path / "model.pt2", (1, 8, 8), "Net")
    assert not [w for w in caught if ".pt2" in str(w.message)], [str(w.message) for w in caught]
    assert (tmp_path / "model.pt2").stat().st_size > 0 and leftovers(tmp_path) == []
