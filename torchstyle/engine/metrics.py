"""Evaluation metrics: the classification set (computed in torch), or a model's own.

A model's ``evaluation_step`` returns per-sample values (averaged by the engine) and, for a
classifier, ``preds`` (logits ``(B, K)``) and ``target`` (labels ``(B,)``), which update the
metrics here. The classification set keeps one confusion matrix, summed over processes at
``compute``; a model's own torchmetrics objects keep their states and gather them themselves.

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
    """The classification metrics of a ``num_classes``-way classifier (one state for all)."""
    return {CLASSIFICATION: ClassificationMetrics(num_classes)}


# What the classification set logs, in the order the docs list them (a test checks both).
CLASSIFICATION_METRICS = {
    "accuracy": "top-1 accuracy",
    "top5": "top-5 accuracy (10 or more classes)",
    "f1_macro": "F1 averaged over the classes seen in the targets or predictions",
    "accuracy_class/NAME": "accuracy of each class (its recall)",
    "confusion_matrix": "rows: true classes; an image in TensorBoard, normalised per row",
}


def metrics_table() -> str:
    """The classification metrics as a Markdown table (``docs/training.md`` shows it)."""
    rows = ["| metric | what |", "|---|---|"]
    rows += [f"| `{name}` | {what} |" for name, what in CLASSIFICATION_METRICS.items()]
    return "\n".join(rows)


# The name the built-in classification set is kept under (it computes several values).
CLASSIFICATION = "classification"


class ClassificationMetrics:
    """Accuracy, top-5, macro F1, per-class accuracy and the confusion matrix, in torch.

    One state, the confusion matrix (and a top-5 count), holds everything: it is summed over
    processes at :meth:`compute` when a process group is running. Computed here rather than
    with torchmetrics, whose package import costs seconds a command should not pay; the
    values are those of scikit-learn's ``accuracy_score``, ``f1_score(average="macro")``
    (over the classes seen in targets or predictions) and per-class recall.

    Args:
        num_classes: Number of classes ``K``; ``top5`` is computed when ``K >= 10``.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.top5 = torch.zeros((), dtype=torch.long)

    def to(self, device: torch.device) -> ClassificationMetrics:
        """Moves the state to ``device`` (where the predictions arrive)."""
        self.confusion = self.confusion.to(device)
        self.top5 = self.top5.to(device)
        return self

    def reset(self) -> None:
        """Forgets the previous evaluation."""
        self.confusion.zero_()
        self.top5.zero_()

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Adds a batch: logits ``(B, K)`` and labels ``(B,)``."""
        k = self.num_classes
        cells = target.long() * k + preds.argmax(dim=1)
        self.confusion += torch.bincount(cells, minlength=k * k).view(k, k)
        if k >= 10:
            top = preds.topk(5, dim=1).indices
            self.top5 += (top == target.view(-1, 1)).any(dim=1).sum()

    def compute(self) -> dict[str, Tensor]:
        """The values, summed over every process when a process group is running."""
        k = self.num_classes
        state = torch.cat([self.confusion.flatten(), self.top5.view(1)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(state)
        cm = state[:-1].view(k, k).double()
        total = cm.sum().clamp_min(1)
        tp = cm.diagonal()
        support, predicted = cm.sum(dim=1), cm.sum(dim=0)
        recall = tp / support.clamp_min(1)
        f1 = 2 * tp / (support + predicted).clamp_min(1)
        seen = (support + predicted) > 0
        values = {
            "accuracy": tp.sum() / total,
            "f1_macro": f1[seen].mean() if bool(seen.any()) else f1.sum(),
            "accuracy_class": recall,
            "confusion_matrix": cm.long(),
        }
        if k >= 10:
            values["top5"] = state[-1].double() / total
        return values


class EvaluationMetrics:
    """The metrics of one split's evaluation: ``update`` per batch, ``compute`` at the end.

    Args:
        metrics: torchmetrics objects by name (a model's own), or the built-in
            classification set (:func:`classification_metrics`).
        class_names: Names for per-class values (indices when empty).
        device: Where the states live (the model's device).
    """

    def __init__(
        self, metrics: dict[str, Any], class_names: tuple[str, ...], device: torch.device
    ) -> None:
        self.collection: Any
        if isinstance(metrics.get(CLASSIFICATION), ClassificationMetrics):
            self.collection = metrics[CLASSIFICATION].to(device)
        else:  # a model's own torchmetrics, imported only for the models that have them
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
