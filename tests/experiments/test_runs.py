"""``torchstyle runs`` over real run folders in every state, HParams and MLflow read back."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HANG_TIMEOUT, REPO, run_cli
from tests.experiments.conftest import STEPS_PER_EPOCH, TINY, read_jsonl

FAULT = Path(__file__).with_name("fault_train.py")
pytestmark = pytest.mark.slow


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = HANG_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One folder per state, trained concurrently; the `running` one is still alive.

    `done` is interrupted at step 10 first, then resumed to the end: its MLflow run must go on.
    """
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("exp")
    train = ["-m", "torchstyle", "train", *TINY, "--epochs", "2"]
    fault = [str(FAULT)]
    done = [
        "train",
        *TINY,
        "--epochs",
        "2",
        "--lr",
        "0.01",
        "--tracker",
        "mlflow",
        "--run-dir",
        "runs/done",
    ]
    procs = {
        "done": _start([*fault, "sigterm", "10", *done], root),
        "nan": _start([*train, "--optimizer", "sgd", "--lr", "1e30", "--run-dir", "runs/nan"], root),
        "failed": _start([*fault, "raise", "30", "train", *TINY, "--epochs", "2", "--run-dir", "runs/failed"], root),
        "stopped": _start([*fault, "sigterm", "30", "train", *TINY, "--epochs", "2", "--run-dir", "runs/stopped"], root),
        "killed": _start([*fault, "sigkill", "30", "train", *TINY, "--epochs", "2", "--run-dir", "runs/killed"], root),
        "running": _start([*fault, "hold", "30", "train", *TINY, "--epochs", "2", "--run-dir", "runs/running"], root),
    }  # fmt: skip
    _wait_for(root / "runs" / "running" / "holding", procs["running"])
    results = {
        k: (*p.communicate(timeout=HANG_TIMEOUT), p.returncode)
        for k, p in procs.items()
        if k != "running"
    }
    assert results["done"][2] == 128 + signal.SIGTERM, results["done"][1]
    first = json.loads((root / "runs" / "done" / "mlflow.json").read_text())
    client = MlflowClient(tracking_uri=first["tracking_uri"])
    results["done_first"] = (first, client.get_run(first["run_id"]).info.status)
    resumed = run_cli("train", "--resume", "runs/done", cwd=root)
    results["done"] = (resumed.stdout, resumed.stderr, resumed.returncode)
    yield root, procs["running"], results
    procs["running"].kill()
    procs["running"].wait()


def test_each_status_is_shown(runs):
    root, running, results = runs
    assert results["done"][2] == 0, results["done"][1]
    assert results["nan"][2] == 3 and "NaN" in results["nan"][1]
    assert results["failed"][2] != 0 and "injected fault" in results["failed"][1]
    assert results["stopped"][2] == 128 + signal.SIGTERM
    assert results["killed"][2] == -signal.SIGKILL
    proc = run_cli("runs", "runs", "--format", "json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert sorted(rows) == ["done", "failed", "killed", "nan", "running", "stopped"]
    assert rows["done"]["status"] == "finished"
    # Best validation value and the final test value agree with what the engine logged.
    logged = read_jsonl(root / "runs" / "done" / "metrics.jsonl")
    val = [(r["val/accuracy"], r["step"]) for r in logged if "val/accuracy" in r]
    assert rows["done"]["metric"] == "val/accuracy" and len(val) == 2
    assert rows["done"]["best"] == pytest.approx(max(val)[0])
    assert rows["done"]["best_epoch"] == 1 + [v for v, _ in val].index(max(val)[0])
    test = [r["test/accuracy"] for r in logged if "test/accuracy" in r]
    assert rows["done"]["test"] == pytest.approx(test[-1])
    assert rows["done"]["steps"] == val[-1][1] == 2 * STEPS_PER_EPOCH
    assert rows["running"]["status"] == f"running (pid {running.pid} on {os.uname().nodename})"
    assert rows["stopped"]["status"] == "interrupted at step 30"
    # A killed run is listed at its last checkpoint's step: the end of epoch 1.
    assert rows["killed"]["status"] == f"killed at step {STEPS_PER_EPOCH}"
    assert rows["failed"]["status"] == "failed: RuntimeError: injected fault"
    nan_step = int(results["nan"][1].split("at step ")[1].split()[0])
    assert rows["nan"]["status"] == f"stopped on NaN at step {nan_step}"
    # The flags that differ among these runs, and only those.
    assert set(rows["done"]["flags"]) == {"lr", "optimizer"}
    assert rows["done"]["flags"]["lr"] == 0.01 and rows["nan"]["flags"]["optimizer"] == "sgd"


def test_filter_sort_and_formats(runs):
    root = runs[0]
    proc = run_cli(
        "runs",
        "runs",
        "--filter",
        "status=interrupted",
        "--sort=-steps",
        "--format",
        "csv",
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["name"] for r in rows] == ["stopped", "killed"]
    assert [r["steps"] for r in rows] == ["30", str(STEPS_PER_EPOCH)]
    proc = run_cli("runs", "runs", "--filter", "lr>0.001", "--filter", "name~n", cwd=root)
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "status", "model"]
    assert [line.split()[0] for line in lines[1:]] == ["done", "nan"]
    proc = run_cli("runs", "runs", "--filter", "bogus>1", cwd=root)
    assert proc.returncode == 2 and "no column or flag 'bogus'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plot_writes_a_png_once(runs):
    root = runs[0]
    proc = run_cli(
        "runs",
        "runs/done",
        "runs/stopped",
        "--plot",
        "train/loss",
        "--output",
        "loss.png",
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    assert (root / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_cli("runs", "runs/done", "--plot", "train/loss", "--output", "loss.png", cwd=root)
    assert again.returncode == 2 and "loss.png exists" in again.stderr
    missing = run_cli("runs", "runs/done", "--plot", "no_such_metric", cwd=root)
    assert missing.returncode == 2 and "no listed run logged" in missing.stderr


def test_hparams_read_back_from_event_files(runs):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    run = runs[0] / "runs" / "done"
    events = sorted(run.glob("events.out.tfevents.*"))
    assert len(events) == 2  # one per session: interrupted, then resumed to the end
    hparams, scalars = {}, {}
    for event in EventFileLoader(str(events[-1])).Load():
        for value in event.summary.value:
            if value.tag == metadata.SESSION_START_INFO_TAG:
                data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                hparams = dict(data.session_start_info.hparams)
            elif value.tag.startswith("hparams/"):
                scalars[value.tag] = (
                    value.tensor.float_val[0] if value.HasField("tensor") else value.simple_value
                )
    assert hparams["lr"].number_value == pytest.approx(0.01)
    assert hparams["model"].string_value == "mlp"
    assert hparams["model_args.hidden"].string_value == "[8]"
    status = json.loads((run / "status.json").read_text())
    assert scalars["hparams/best/val/accuracy"] == pytest.approx(status["best"]["value"], rel=1e-6)
    assert scalars["hparams/final/test/loss"] == pytest.approx(status["test"]["loss"], rel=1e-6)


def test_mlflow_holds_the_same_scalars_as_metrics_jsonl(runs):
    from mlflow.tracking import MlflowClient

    root = runs[0]
    run = root / "runs" / "done"
    state = json.loads((run / "mlflow.json").read_text())
    assert state["tracking_uri"].startswith(f"sqlite:///{root.resolve()}/mlruns/")
    # Interrupted, the MLflow run was marked killed; resumed, the same run went on to the end.
    first, first_status = runs[2]["done_first"]
    assert first_status == "KILLED" and first["run_id"] == state["run_id"]
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    mlrun = client.get_run(state["run_id"])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["lr"] == "0.01" and mlrun.data.params["model"] == "mlp"
    expected: dict[str, list] = {}
    for record in read_jsonl(run / "metrics.jsonl"):
        step = record.pop("step")
        for key, value in record.items():
            expected.setdefault(key, []).append((step, value))
    assert set(mlrun.data.metrics) == set(expected)
    assert expected["train/loss"][0][0] == 5
    assert expected["train/loss"][-1][0] == 2 * STEPS_PER_EPOCH
    for key, points in expected.items():
        history = client.get_metric_history(state["run_id"], key)
        got = [(m.step, m.value) for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
        assert got == points, key
    artifacts = {a.path for a in client.list_artifacts(state["run_id"])}
    assert {"config.json", "config.txt", "metrics.jsonl", "status.json", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(state["run_id"], "checkpoints")] == [
        "checkpoints/best.pt"
    ]
