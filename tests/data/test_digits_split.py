"""The digits load without importing scikit-learn, and give exactly scikit-learn's split."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from tests.conftest import REPO
from torchstyle.data.digits import load_digits_split, read_digits, split_order


def test_the_kept_split_is_scikit_learns():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train, test = train_test_split(
        range(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=0
    )
    kept_train, kept_test = split_order()
    assert kept_train.tolist() == list(train) and kept_test.tolist() == list(test)
    pixels, target = read_digits()
    assert np.array_equal(pixels, digits.data) and np.array_equal(target, digits.target)


def test_loading_the_digits_imports_no_scikit_learn():
    code = (
        "import sys\nfrom torchstyle.data.digits import load_digits_split\n"
        "b = load_digits_split()\nassert len(b.test) == 360\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_test_images_are_the_same_as_before():
    bundle = load_digits_split()
    x, y = bundle.test[0]
    pixels, target = read_digits()
    first = int(split_order()[1][0])
    expected = torch.tensor(pixels[first], dtype=torch.float32).view(1, 8, 8) / 16.0 * 2 - 1
    assert torch.equal(x, expected) and int(y) == int(target[first])
