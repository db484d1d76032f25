"""`predict` reads inputs of the run's own shape: feature rows, and non-square images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from torchstyle.data.checks import check_data_fits_run
from torchstyle.engine.predict import read_feature_rows, read_samples
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec


def test_feature_rows_from_csv_with_or_without_a_header_and_from_npy(tmp_path):
    with_header = tmp_path / "a.csv"
    with_header.write_text("x,y,z\n1,2,3\n4,5,6\n")
    plain = tmp_path / "b.csv"
    plain.write_text("7,8,9\n")
    array = tmp_path / "c.npy"
    np.save(array, np.arange(6, dtype=np.float32).reshape(2, 3))
    names, rows = read_samples(
        [str(with_header), str(plain), str(array)], DataSpec.for_features(3, 2)
    )
    assert names == [
        f"{with_header}:0",
        f"{with_header}:1",
        f"{plain}:0",
        f"{array}:0",
        f"{array}:1",
    ]
    assert [r.tolist() for r in rows[:3]] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("short.csv", "1,2\n", "row 0 is not 3 numbers"),
        ("words.csv", "a,b,c\n1,x,3\n", "row 0 is not 3 numbers"),
        ("rows.txt", "1,2,3\n", "pass .csv or .npy"),
    ],
)
def test_bad_feature_files_are_one_line(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError, match=match):
        read_feature_rows(path, 3)
    with pytest.raises(UserError, match="no such file"):
        read_feature_rows(tmp_path / "missing.csv", 3)


def test_images_are_resized_to_the_runs_height_and_width(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (100, 30), color=(255, 0, 0)).save(path)
    _, (image,) = read_samples([str(path)], DataSpec.for_images(3, 32, 48, 2))
    assert tuple(image.shape) == (3, 32, 48)
    assert float(image[0].min()) == pytest.approx(1.0) and float(image[1].max()) == pytest.approx(
        -1.0
    )
    _, (square,) = read_samples([str(path)], DataSpec(1, 16, 2))
    assert tuple(square.shape) == (1, 16, 16)


def test_other_data_must_have_the_runs_sample_shape(tmp_path):
    run = DataSpec.for_features(30, 2, ("a", "b"))
    check_data_fits_run(DataSpec.for_features(30, 2, ("a", "b")), run, "x", tmp_path)
    with pytest.raises(UserError, match=r"12 features but run .* 30 features"):
        check_data_fits_run(DataSpec.for_features(12, 2, ("a", "b")), run, "x", tmp_path)
    with pytest.raises(UserError, match="1 channel, 8x8 px"):
        check_data_fits_run(DataSpec(1, 8, 2, ("a", "b")), run, "x", tmp_path)
