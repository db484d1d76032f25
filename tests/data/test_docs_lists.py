"""The lists of sources, layouts and metrics in the docs are the registry's and the code's."""

from __future__ import annotations

from pathlib import Path

import torch

from torchstyle.data import DATA_SOURCES
from torchstyle.data.registry import layouts_table, sources_table
from torchstyle.engine.metrics import CLASSIFICATION_METRICS, ClassificationMetrics, metrics_table

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_docs_show_every_registered_source_and_layout():
    text = (DOCS / "data.md").read_text()
    assert sources_table() in text, "regenerate the table: torchstyle.data.registry.sources_table()"
    assert layouts_table() in text, "regenerate the table: torchstyle.data.registry.layouts_table()"
    assert all(f"| `{name}` |" in sources_table() for name in DATA_SOURCES)


def test_docs_show_the_metrics_the_code_computes():
    assert metrics_table() in (DOCS / "training.md").read_text()
    metrics = ClassificationMetrics(10)
    metrics.update(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
    computed = set(metrics.compute())
    documented = {name.split("/")[0] for name in CLASSIFICATION_METRICS}
    assert computed == documented
