"""Every template end to end, as a user runs it: generate the project, train it for one epoch
in a subprocess, run its test.py, its own tests and ``torchstyle lint`` with every rule on,
and resume it.

Each template's project is generated and run once (a module-scoped fixture); the processes
that do not depend on each other run side by side, so the module stays well under a minute
and a half on two cores. Widths are tiny; OMP_NUM_THREADS=1 comes from tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import HANG_TIMEOUT, REPO
from torchstyle.engine.checkpoint import load_checkpoint
from torchstyle.scaffold.project import template_names, write_project

# One name per template; names of different lengths catch formatting that depends on them.
NAMES = {"classifier": "digit_net", "gan": "dcgan", "image2image": "noisy_pairs_translator"}
# Tiny models, so that an epoch takes a second or two on one CPU thread.
TRAIN_ARGS = {
    "classifier": ["--width", "8", "--log-every", "5"],
    "gan": ["--width", "8", "--latent-dim", "16", "--log-every", "5"],
    "image2image": [
        "--image-size",
        "16",
        "--ngf",
        "4",
        "--ndf",
        "4",
        "--n-blocks",
        "1",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--log-every",
        "2",
    ],
}
# Metrics each template's evaluation reports.
METRICS = {
    "classifier": {"loss", "accuracy"},
    "gan": {"d_real", "d_fake"},
    "image2image": {"l1", "psnr"},
}
TIMEOUT = HANG_TIMEOUT


def make_paired_folder(root: Path) -> Path:
    """A tiny pix2pix-style dataset: 16x32 images, A (a noisy square) left, B (the square) right."""
    rng = random.Random(0)
    for split, count in (("train", 8), ("test", 3)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            pair = Image.new("RGB", (32, 16))
            x, y = rng.randrange(2, 10), rng.randrange(2, 10)
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            noise = bytes(rng.randrange(256) for _ in range(16 * 16 * 3))
            pair.paste(Image.frombytes("RGB", (16, 16), noise), (0, 0))
            pair.paste(colour, (x, y, x + 5, y + 5))
            pair.paste(colour, (16 + x, y, 16 + x + 5, y + 5))
            pair.save(root / split / f"{i:02d}.png")
    return root


def make_class_folder(root: Path) -> Path:
    """Tiny RGB images of two classes in train/, val/ and test/ (20x26: resized, cropped)."""
    rng = random.Random(1)
    for split, count in (("train", 2), ("val", 1), ("test", 2)):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                noise = bytes(rng.randrange(256) for _ in range(20 * 26 * 3))
                Image.frombytes("RGB", (26, 20), noise).save(root / split / label / f"{i}.png")
    return root


def fine_tune_args(tmp: Path) -> list[str]:
    """The classifier fine-tuning torchvision's resnet18 from a local weights file."""
    import torchvision

    weights = tmp / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    data = make_class_folder(tmp / "images")
    return [
        "train.py", "--backbone", "torchvision:resnet18", "--weights", str(weights), "--data",
        str(data), "--image-size", "16", "--epochs", "1", "--batch-size", "4", "--workers", "0",
        "--run-dir", "runs/finetune",
    ]  # fmt: skip


@dataclass
class Result:
    """A finished process: exit code and output."""

    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit code {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


class Processes:
    """Starts processes in a project folder and collects them; several run at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.running: dict[str, subprocess.Popen[str]] = {}

    def start(self, key: str, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.running[key] = subprocess.Popen(
            [sys.executable, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self, *keys: str) -> dict[str, Result]:
        """Waits for the processes ``keys`` (default: all) and returns their results."""
        results = {}
        for key in keys or list(self.running):
            proc = self.running.pop(key)
            try:
                stdout, stderr = proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            results[key] = Result(proc.returncode, stdout, stderr)
        return results


@dataclass
class Project:
    """A generated project and what running it gave."""

    template: str
    name: str
    root: Path
    results: dict[str, Result] = field(default_factory=dict)

    def run_dir(self, name: str) -> Path:
        return self.root / "runs" / name


@pytest.fixture(scope="module", params=template_names())
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Project:
    template = request.param
    name = NAMES[template]
    tmp = tmp_path_factory.mktemp(template)
    root, _ = write_project(name, template, tmp / name)
    train_args = list(TRAIN_ARGS[template])
    if template == "image2image":
        train_args += ["--data", str(make_paired_folder(tmp / "pairs"))]
    procs = Processes(root)

    # Independent of each other: one epoch, two epochs straight, the project's tests, lint.
    procs.start("train", ["train.py", "--epochs", "1", "--run-dir", "runs/first", *train_args])
    procs.start(
        "straight", ["train.py", "--epochs", "2", "--run-dir", "runs/straight", *train_args]
    )
    no_plugins = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    procs.start("pytest", ["-m", "pytest", "-q", "-p", "no:cacheprovider"], env=no_plugins)
    procs.start("lint", ["-m", "torchstyle", "lint", "--select", "ALL", str(root)])
    if template == "classifier":  # a pretrained backbone, read as its weights expect
        procs.start("finetune", fine_tune_args(tmp))
    results = procs.wait("train", *(["finetune"] if template == "classifier" else []))

    # On the one-epoch run: test.py and a resumed copy (flags from its config.json); once,
    # a new run into its folder without --resume, which must refuse.
    if results["train"].returncode == 0:
        shutil.copytree(root / "runs" / "first", root / "runs" / "resumed")
        procs.start("test", ["test.py", "--run-dir", "runs/first"])
        resume = ["train.py", "--epochs", "2", "--run-dir", "runs/resumed", "--resume"]
        procs.start("resume", resume)
        if template == "classifier":  # the same check is in every template's train.py
            procs.start("again", ["train.py", "--run-dir", "runs/first", *train_args])
    if template == "classifier" and results["finetune"].returncode == 0:
        procs.start("finetune-test", ["test.py", "--run-dir", "runs/finetune"])
    results |= procs.wait()
    return Project(template, name, root, results)


def result(project: Project, key: str) -> Result:
    if key not in project.results:
        pytest.fail(f"{key} did not run: training failed\n{project.results['train']}")
    return project.results[key]


def metrics_log(run_dir: Path) -> list[dict[str, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_train_runs_one_epoch_and_writes_the_run_folder(project: Project) -> None:
    train = result(project, "train")
    assert train.returncode == 0, str(train)
    run = project.run_dir("first")
    assert "Namespace(" in (run / "config.txt").read_text()  # the guide's config.txt
    config = json.loads((run / "config.json").read_text())
    assert config["epochs"] == 1 and config["resume"] is False
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"latest.pt", "epoch_0001.pt"}
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"

    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["epoch"] == 1 and ckpt["n_iter"] > 0
    assert set(ckpt["metrics"]) == METRICS[project.template]
    assert ckpt["config"]["run_dir"] == "runs/first"

    log = metrics_log(run)
    steps = [row["step"] for row in log if "train/compute_efficiency" in row]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] == ckpt["n_iter"]
    for row in log:
        for key, value in row.items():
            assert isinstance(value, (int, float)), f"{key} logged without a value: {value!r}"
    assert all(0.0 <= row.get("train/compute_efficiency", 0.0) <= 1.0 for row in log)
    # Validated every epoch; the test split seen once, at the end.
    validated = [row for row in log if any(key.startswith("val/") for key in row)]
    assert len(validated) == 1 and validated[0]["step"] == ckpt["n_iter"]
    assert {key[4:] for key in validated[0] if key.startswith("val/")} == METRICS[project.template]
    tested = [row for row in log if any(key.startswith("test/") for key in row)]
    assert len(tested) == 1 and tested[0]["step"] == ckpt["n_iter"]


def test_gan_templates_save_sample_grids(project: Project) -> None:
    if project.template == "classifier":
        pytest.skip("a classifier draws no samples")
    assert result(project, "train").returncode == 0
    assert (project.run_dir("first") / "samples" / "epoch_0001.png").is_file()


def test_test_script_evaluates_the_trained_checkpoint(project: Project) -> None:
    test = result(project, "test")
    assert test.returncode == 0, str(test)
    report = json.loads((project.run_dir("first") / "test_metrics.json").read_text())
    assert set(report) == {"checkpoint", "epoch"} | METRICS[project.template]
    assert report["epoch"] == 1
    expected = "latest.pt" if project.template == "gan" else "best.pt"  # a GAN has no best
    assert Path(report["checkpoint"]).name == expected
    # test.py reproduces the test pass train.py made at the end, with the same checkpoint.
    log = metrics_log(project.run_dir("first"))
    final = {k.removeprefix("test/"): v for row in log for k, v in row.items() if "test/" in k}
    if project.template != "gan":  # the GAN's score depends on freshly drawn noise
        for key in METRICS[project.template]:
            assert report[key] == pytest.approx(final[key], rel=1e-4, abs=1e-6)
    if project.template != "classifier":
        assert (project.run_dir("first") / "samples" / "test.png").is_file()


def test_a_pretrained_backbone_fine_tunes_and_tests_with_its_weights_preprocessing(
    project: Project,
) -> None:
    if project.template != "classifier":
        pytest.skip("the classifier fine-tunes a backbone")
    train = result(project, "finetune")
    assert train.returncode == 0, str(train)
    assert "new classification head" in train.stderr + train.stdout
    run = project.run_dir("finetune")
    hparams = load_checkpoint(run / "checkpoints" / "latest.pt")["hparams"]
    assert hparams["backbone"] == "torchvision:resnet18" and hparams["image_size"] == 16
    assert hparams["mean"] == pytest.approx([0.485, 0.456, 0.406])  # the weights' own
    test = result(project, "finetune-test")
    assert test.returncode == 0, str(test)
    # test.py reads the images as training read them (the weights' resize and crop): it
    # reproduces the final test pass's loss.
    report = json.loads((run / "test_metrics.json").read_text())
    final = {k[5:]: v for row in metrics_log(run) for k, v in row.items() if k.startswith("test/")}
    assert report["loss"] == pytest.approx(final["loss"], rel=1e-4, abs=1e-6)


def test_the_projects_own_tests_pass(project: Project) -> None:
    tests = result(project, "pytest")
    assert tests.returncode == 0, str(tests)
    assert " passed" in tests.stdout and "failed" not in tests.stdout


def test_lint_with_every_rule_is_clean(project: Project) -> None:
    lint = result(project, "lint")
    assert lint.returncode == 0, str(lint)


def test_resume_continues_after_the_finished_epoch_exactly(project: Project) -> None:
    resume, straight = result(project, "resume"), result(project, "straight")
    assert straight.returncode == 0, str(straight)
    assert resume.returncode == 0, str(resume)
    assert "resuming runs/resumed after epoch 1" in resume.stderr
    resumed_run, straight_run = project.run_dir("resumed"), project.run_dir("straight")
    config = json.loads((resumed_run / "config.json").read_text())
    assert config["resume"] is True and config["epochs"] == 2
    # Flags not repeated on the command line keep the first run's values.
    first = json.loads((project.run_dir("first") / "config.json").read_text())
    assert {k: v for k, v in config.items() if k not in ("resume", "epochs", "run_dir")} == {
        k: v for k, v in first.items() if k not in ("resume", "epochs", "run_dir")
    }

    resumed = load_checkpoint(resumed_run / "checkpoints" / "latest.pt")
    reference = load_checkpoint(straight_run / "checkpoints" / "latest.pt")
    assert resumed["epoch"] == reference["epoch"] == 2
    assert resumed["n_iter"] == reference["n_iter"]
    # Same batches, same RNG draws, same optimizer state: the same weights, bit for bit.
    assert resumed["net"].keys() == reference["net"].keys()
    for key, value in reference["net"].items():
        assert torch.equal(resumed["net"][key], value), f"{key} differs after resume"
    # The step counter goes on from the checkpoint: no logged step repeats.
    steps = [row["step"] for row in metrics_log(resumed_run) if "train/compute_efficiency" in row]
    assert steps == sorted(set(steps))


def test_a_second_run_into_a_used_folder_is_refused(project: Project) -> None:
    if project.template != "classifier":
        pytest.skip("checked once, on the classifier")
    again = result(project, "again")
    assert again.returncode == 2
    assert "already holds a run; pass --resume" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
