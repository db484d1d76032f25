"""Tabular data: labelled feature vectors (the ``features`` layout).

``breast-cancer`` is scikit-learn's Wisconsin diagnostic set (569 samples, 30 features, 2
classes), shipped inside scikit-learn, so it works offline like ``digits``. The features are
used as scikit-learn gives them (no scaling), so ``predict`` and an exported program take the
same raw rows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from torchstyle.data.base import DataBundle, DataOptions, TensorImageDataset
from torchstyle.data.splits import DEFAULT_VAL_FRACTION, carve_val
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec

# A fixed split so that every run tests on the same samples.
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def build_breast_cancer(options: DataOptions) -> DataBundle:
    """Data source ``breast-cancer``: 455 training (less validation) and 114 test vectors.

    Raises:
        UserError: ``--augment``, which augments images, not vectors.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    if options.augment not in (None, "none"):
        raise UserError(
            f"--augment {options.augment} augments images; breast-cancer holds feature "
            "vectors: drop --augment"
        )
    raw = load_breast_cancer()
    x = torch.tensor(raw.data, dtype=torch.float32)  # (569, 30)
    y = torch.tensor(raw.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        range(len(y)), test_size=TEST_FRACTION, stratify=y.numpy(), random_state=SPLIT_SEED
    )
    tr, te = torch.tensor(train_idx), torch.tensor(test_idx)
    names = tuple(str(n) for n in raw.target_names)
    spec = DataSpec.for_features(int(x.shape[1]), len(names), names)
    train: Dataset[Any] | None = None
    val: Dataset[Any] | None = None
    info: dict[str, Any] = {}
    if options.wants("train") or options.wants("val"):
        val_split = DEFAULT_VAL_FRACTION if options.val_split is None else options.val_split
        train, val, info = carve_val(
            TensorImageDataset(x[tr], y[tr]), val_split, options.seed, source="breast-cancer"
        )
    test = TensorImageDataset(x[te], y[te]) if options.wants("test") else None
    return DataBundle(train=train, test=test, spec=spec, val=val, info=info)
