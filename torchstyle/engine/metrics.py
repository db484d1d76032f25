"""Evaluation metrics from torchmetrics: the classification set, or a model's own.

A model's ``evaluation_step`` returns per-sample values (averaged by the engine) and, for a
classifier, ``preds`` (logits ``(B, K)``) and ``target`` (labels ``(B,)``), which update the
metrics here. torchmetrics keeps the states and, when a process group is running, gathers
them across processes at ``compute`` (DDP-aware without code of ours).

Classification logs ``accuracy`` (top-1), ``top5`` (10 or more classes), ``f1_macro``,
``accuracy_class/NAME`` per class and the confusion matrix as an image.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from torchstyle.spec import DataSpec

# Entries of an evaluation step's output that feed the metrics rather than the averages.
METRIC_INPUTS = ("preds", "target")
# Pixels per confusion-matrix cell, bounded so the image stays between ~100 and ~400 px.
_MAX_SIDE = 400


def classification_metrics(num_classes: int) -> dict[str, Any]:
    """torchmetrics objects for a ``num_classes``-way classifier, by the name they log under."""
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassConfusionMatrix,
        MulticlassF1Score,
    )

    metrics: dict[str, Any] = {
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        "accuracy_class": MulticlassAccuracy(num_classes, average=None),
        "confusion_matrix": MulticlassConfusionMatrix(num_classes),
    }
    if num_classes >= 10:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return metrics


class EvaluationMetrics:
    """The metrics of one split's evaluation: ``update`` per batch, ``compute`` at the end.

    Args:
        metrics: torchmetrics objects by name.
        class_names: Names for per-class values (indices when empty).
        device: Where the states live (the model's device).
    """

    def __init__(
        self, metrics: dict[str, Any], class_names: tuple[str, ...], device: torch.device
    ) -> None:
        from torchmetrics import MetricCollection

        self.collection = MetricCollection(metrics).to(device)
        self.class_names = class_names
        self.images: dict[str, Tensor] = {}

    @classmethod
    def for_model(
        cls, model: Any, spec: DataSpec, device: torch.device
    ) -> EvaluationMetrics | None:
        """The model's own metrics, else its task's; None when it has neither."""
        own = model.configure_metrics(spec) if hasattr(model, "configure_metrics") else None
        if own:
            return cls(dict(own), spec.class_names, device)
        if getattr(model, "task", None) == "classification" and spec.num_classes >= 2:
            return cls(classification_metrics(spec.num_classes), spec.class_names, device)
        return None

    def reset(self) -> None:
        """Forgets the states of the previous evaluation."""
        self.collection.reset()
        self.images = {}

    def update(self, out: dict[str, Tensor]) -> None:
        """Feeds one batch's ``preds`` and ``target`` (when the step returned them)."""
        if "preds" in out and "target" in out:
            self.collection.update(out["preds"].detach().float(), out["target"].detach())

    def compute(self) -> dict[str, float]:
        """Scalars by name; per-class vectors become ``NAME/CLASS``; matrices go to ``images``.

        Every process must call it (the states are gathered across processes), also one
        whose shard was empty: its states are zeros, and torchmetrics' warning that it saw no
        update is about this process alone, not the result.
        """
        scalars: dict[str, float] = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*before the ``update`` method.*")
            computed = self.collection.compute()
        for name, value in computed.items():
            value = value.detach().float().cpu()
            if value.ndim == 0:
                scalars[name] = float(value)
            elif value.ndim == 1:
                for i, v in enumerate(value.tolist()):
                    scalars[f"{name}/{self._class_name(i)}"] = float(v)
            elif value.ndim == 2:
                self.images[name] = confusion_image(value)
        return scalars

    def _class_name(self, i: int) -> str:
        return self.class_names[i] if i < len(self.class_names) else str(i)


def confusion_image(matrix: Tensor) -> Tensor:
    """A confusion matrix as an RGB image ``(3, H, W)`` in ``[0, 1]``.

    Rows (true classes) are normalised to sum to one; a cell is white at 0 and dark blue at 1.
    Each cell is a square block of pixels, so small matrices stay readable.
    """
    m = matrix.float()
    rows = m.sum(dim=1, keepdim=True).clamp_min(1)
    v = (m / rows).clamp(0, 1)  # (K, K) recall per true class
    cell = max(1, min(32, _MAX_SIDE // max(1, v.shape[0])))
    v = v.repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    # White (1, 1, 1) to dark blue (0.03, 0.19, 0.42): a linear ramp per channel.
    low = torch.tensor([1.0, 1.0, 1.0]).view(3, 1, 1)
    high = torch.tensor([0.03, 0.19, 0.42]).view(3, 1, 1)
    return low + (high - low) * v.unsqueeze(0)


def format_table(metrics: dict[str, float], prefix: str = "") -> str:
    """Metrics as an aligned two-column table: overall values first, per-class values after.

    Args:
        metrics: Name to value.
        prefix: Put before each name (``"test "`` gives ``test accuracy:``).
    """
    overall = sorted((k, v) for k, v in metrics.items() if "/" not in k)
    per_class = [(k, v) for k, v in metrics.items() if "/" in k]  # in class order
    rows = [(f"{prefix}{k}:", v) for k, v in overall + per_class]
    if not rows:
        return "(no metrics)"
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v:.4f}" for k, v in rows)
