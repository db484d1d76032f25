"""The data contract records sample shapes: non-square images and feature vectors.

In-process checks of the spec, of user data read as vectors or non-square images, of the
models that take (or refuse) a shape, and of the classification metrics against scikit-learn.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from torchstyle.data import DATA_SOURCES, LAYOUTS, DataOptions, build_data
from torchstyle.data.user import build_user_data
from torchstyle.engine.metrics import ClassificationMetrics
from torchstyle.errors import UserError
from torchstyle.models import create_model
from torchstyle.spec import LAYOUT_NAMES, DataSpec


def test_spec_records_height_width_and_features():
    wide = DataSpec.for_images(3, 32, 48, 2)
    assert (wide.channels, wide.height, wide.width, wide.image_size) == (3, 32, 48, 48)
    assert wide.sample_shape == (3, 32, 48) and wide.describe() == "3 channels, 32x48 px"
    table = DataSpec.for_features(30, 2, ("a", "b"))
    assert table.sample_shape == (30,) and table.numel == 30 and table.layout == "features"
    for spec in (wide, table):
        assert DataSpec.from_dict(spec.to_dict()) == spec


def test_a_spec_saved_before_shapes_reads_as_square():
    old = {
        "channels": 1,
        "image_size": 8,
        "num_classes": 10,
        "class_names": [],
        "layout": "classes",
    }
    spec = DataSpec.from_dict(old)
    assert spec.sample_shape == (1, 8, 8) and spec == DataSpec(1, 8, 10)


def test_layouts_are_documented_in_the_registry():
    assert tuple(LAYOUTS) == LAYOUT_NAMES


def _tabular() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 30, generator=g), torch.arange(40) % 2
    return {"train": TensorDataset(x[:30], y[:30]), "test": TensorDataset(x[30:], y[30:])}


def _wide() -> tuple[TensorDataset, TensorDataset]:
    x, y = torch.zeros(12, 3, 32, 48), torch.arange(12) % 3
    return TensorDataset(x[:8], y[:8]), TensorDataset(x[8:], y[8:])


def test_user_vectors_are_the_features_layout(monkeypatch):
    monkeypatch.setattr("torchstyle.data.user.load_function", lambda ref: _tabular)
    bundle = build_user_data(DataOptions(name="mine.py:tabular"))
    assert bundle.spec == DataSpec.for_features(30, 2, ("0", "1"))
    # `torchstyle test` passes the run's channels (0 for vectors): not a flag check.
    again = build_user_data(DataOptions(name="mine.py:tabular", channels=0, image_size=0))
    assert again.spec == bundle.spec


def test_user_images_keep_their_height_and_width(monkeypatch):
    monkeypatch.setattr("torchstyle.data.user.load_function", lambda ref: _wide)
    spec = build_user_data(DataOptions(name="mine.py:wide")).spec
    assert spec.sample_shape == (3, 32, 48) and spec.num_classes == 3


def test_mlp_takes_vectors_and_non_square_images_and_classifier_any_hxw():
    table = DataSpec.for_features(30, 2)
    assert create_model("mlp", table)(torch.zeros(4, 30)).shape == (4, 2)
    wide = DataSpec.for_images(3, 32, 48, 5)
    assert create_model("mlp", wide)(torch.zeros(4, 3, 32, 48)).shape == (4, 5)
    assert create_model("classifier", wide)(torch.zeros(4, 3, 32, 48)).shape == (4, 5)


def test_an_image_model_refuses_vectors_in_one_line():
    with pytest.raises(UserError, match=r"takes \(C, H, W\) images.*30 features.*--model mlp"):
        create_model("classifier", DataSpec.for_features(30, 2))


def test_breast_cancer_is_a_features_source_for_image_layout_models():
    assert DATA_SOURCES["breast-cancer"].layout == "features"
    bundle = build_data(DataOptions(name="breast-cancer", layout="classes", val_split=0.0))
    assert bundle.spec.sample_shape == (30,) and bundle.spec.class_names == ("malignant", "benign")
    assert (len(bundle.train), len(bundle.test)) == (455, 114)
    with pytest.raises(UserError, match="needs 'paired' data"):
        build_data(DataOptions(name="breast-cancer", layout="paired"))


@pytest.mark.parametrize("num_classes", [3, 12])
def test_classification_metrics_match_scikit_learn(num_classes):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    g = torch.Generator().manual_seed(num_classes)
    logits = torch.randn(300, num_classes, generator=g)
    target = torch.randint(0, num_classes - 1, (300,), generator=g)  # one class never occurs
    metrics = ClassificationMetrics(num_classes)
    for chunk in range(0, 300, 64):  # several batches, one state
        metrics.update(logits[chunk : chunk + 64], target[chunk : chunk + 64])
    got = metrics.compute()
    y, p = target.numpy(), logits.argmax(dim=1).numpy()
    labels = list(range(num_classes))
    assert float(got["accuracy"]) == pytest.approx(accuracy_score(y, p))
    assert float(got["f1_macro"]) == pytest.approx(f1_score(y, p, average="macro"))
    recall = recall_score(y, p, average=None, labels=labels, zero_division=0)
    assert got["accuracy_class"].tolist() == pytest.approx(recall.tolist())
    assert got["confusion_matrix"].tolist() == confusion_matrix(y, p, labels=labels).tolist()
    if num_classes >= 10:
        from sklearn.metrics import top_k_accuracy_score

        top5 = top_k_accuracy_score(y, logits.numpy(), k=5, labels=labels)
        assert float(got["top5"]) == pytest.approx(top5)
    else:
        assert "top5" not in got
    metrics.reset()
    assert int(metrics.confusion.sum()) == 0
