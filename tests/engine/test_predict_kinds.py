"""`torchstyle predict` in each model's own terms: labels, samples, translations."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.models.test_pix2pix import SIZE, write_pairs


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    from tests.conftest import run_cli

    run_dir = tmp_path_factory.mktemp("gan") / "run"
    proc = run_cli(
        "train", "--model", "dcgan", "--data", "digits", "--epochs", "1", "--max-steps", "2",
        "--model-arg", "base_width=8", "--model-arg", "latent_dim=8", "--run-dir", str(run_dir),
        "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory):
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("p2p")
    data = write_pairs(root / "data")
    run_dir = root / "run"
    proc = run_cli(
        "train", "--model", "pix2pix", "--data", str(data), "--epochs", "1",
        "--model-arg", "ngf=8", "--model-arg", "ndf=8", "--model-arg", "n_blocks=1",
        "--image-size", str(SIZE), "--batch-size", "4", "--run-dir", str(run_dir), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return run_dir, data


@pytest.mark.slow
def test_gan_predict_writes_num_samples_and_a_grid_reproducibly(gan_run, tmp_path, cli):
    out = tmp_path / "samples"
    proc = cli("predict", str(gan_run), "--num", "16", "--seed", "3", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.glob("sample_*.png"))
    assert len(files) == 16 and (out / "grid.png").is_file()
    with Image.open(files[0]) as img:
        assert img.size == (32, 32)
    with Image.open(out / "grid.png") as img:
        assert img.size[0] > 8 * 32 and img.size[1] > 2 * 32  # two rows of eight

    again = tmp_path / "again"
    assert (
        cli(
            "predict", str(gan_run), "--num", "16", "--seed", "3", "--output", str(again)
        ).returncode
        == 0
    )
    assert digest(again) == digest(out)  # the same seed draws the same samples
    other = tmp_path / "other"
    assert (
        cli(
            "predict", str(gan_run), "--num", "16", "--seed", "4", "--output", str(other)
        ).returncode
        == 0
    )
    assert digest(other)["sample_0000.png"] != digest(out)["sample_0000.png"]

    # Nothing is written over: the second call into the same folder refuses and changes nothing.
    before = digest(out)
    proc = cli("predict", str(gan_run), "--num", "4", "--output", str(out))
    assert proc.returncode == 2 and "already exist" in proc.stderr, proc.stderr
    assert digest(out) == before


@pytest.mark.slow
def test_gan_predict_refuses_flags_of_other_kinds(gan_run, tmp_path, cli):
    image = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(image)
    for args, named in (
        ((str(image),), "INPUT"),
        (("--prompt", "def "), "--prompt"),
        (("--num", "0", "--output", str(tmp_path / "o")), "--num must be a positive"),
    ):
        proc = cli("predict", str(gan_run), *args)
        assert proc.returncode == 2, proc.stderr
        assert named in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_pix2pix_predict_translates_a_folder(pix2pix_run, tmp_path, cli):
    run_dir, data = pix2pix_run
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "sub/b.png"):  # plain A images, one in a subfolder
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(inputs / name)
    Image.new("RGB", (4, 4)).save(inputs / "._a.png")  # macOS metadata: skipped, not read
    pair = data / "test" / "000.png"  # an A|B pair: its A half is translated
    out = tmp_path / "out"
    proc = cli("predict", str(run_dir), str(inputs), str(pair), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "a.png", "b.png"]
    with Image.open(out / "a.png") as img:
        assert img.size == (SIZE, SIZE) and img.mode == "RGB"
    assert "1 input(s) were A|B pairs" in proc.stdout

    # The pair's translation is the translation of its A half given alone.
    half = tmp_path / "half"
    half.mkdir()
    with Image.open(pair) as img:
        img.crop((0, 0, SIZE, SIZE)).save(half / "000.png")
    out2 = tmp_path / "out2"
    assert cli("predict", str(run_dir), str(half), "--output", str(out2)).returncode == 0
    assert digest(out2)["000.png"] == digest(out)["000.png"]

    before = digest(out)
    proc = cli("predict", str(run_dir), str(inputs), "--output", str(out))
    assert proc.returncode == 2 and "already exist" in proc.stderr
    assert digest(out) == before


@pytest.mark.slow
def test_pix2pix_test_reports_the_identity_baseline(pix2pix_run, cli):
    run_dir, _ = pix2pix_run
    proc = cli("test", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert "test l1:" in proc.stdout and "test l1_input:" in proc.stdout


@pytest.mark.slow
def test_classifier_predict_reads_folders_and_checks_output_first(demo_run, tmp_path, cli):
    run_dir, _ = demo_run
    folder = tmp_path / "digits"
    (folder / "more").mkdir(parents=True)
    (folder / ".thumbnails").mkdir()
    for name in ("1.png", "more/2.png", ".thumbnails/3.png"):
        Image.new("L", (8, 8), color=200).save(folder / name)
    proc = cli("predict", str(run_dir), str(folder))
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == [
        str(folder / "1.png"),
        str(folder / "more" / "2.png"),
    ]
    for output, problem in (
        (tmp_path, "is a folder"),
        (tmp_path / "no" / "p.csv", "does not exist"),
    ):
        proc = cli("predict", str(run_dir), str(folder), "--output", str(output))
        assert proc.returncode == 2 and problem in proc.stderr, proc.stderr
    proc = cli("predict", str(run_dir), str(folder), "--num", "3")
    assert proc.returncode == 2 and "--num" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("predict", str(run_dir), str(empty))
    assert proc.returncode == 2 and "holds no images" in proc.stderr


@pytest.mark.slow
def test_classifier_predict_skips_bad_images_and_follows_symlinked_folders(demo_run, tmp_path, cli):
    run_dir, _ = demo_run
    folder, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    Image.new("L", (8, 8), color=200).save(folder / "1.png")
    Image.new("L", (8, 8), color=100).save(elsewhere / "2.png")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    bad = folder / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    proc = cli("predict", str(run_dir), str(folder))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert str(bad) in error and "--skip-bad-images" in error, error
    out = tmp_path / "p.csv"
    proc = cli("predict", str(run_dir), str(folder), "--skip-bad-images", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    predicted = [line.split("\t")[0] for line in proc.stdout.splitlines()]
    assert predicted == [str(folder / "1.png"), str(folder / "linked" / "2.png")]
    assert "skipped 1 unreadable image(s)" in proc.stderr and str(bad) in proc.stderr
    assert len(out.read_text().splitlines()) == 3  # header and the two readable images
