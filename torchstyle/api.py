"""``torchstyle.fit``: the engine from Python (notebooks), with the CLI's run folder.

The same :class:`~torchstyle.engine.trainer.Trainer` runs: the same checkpoints, logs,
TensorBoard events and start-up summary; ``torchstyle test RUN --data ...`` and
``torchstyle predict RUN`` work on the run afterwards when the model's class lives in a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchstyle.errors import UserError


def fit(
    model: Any,
    train_data: Any,
    val_data: Any = None,
    *,
    test_data: Any = None,
    model_args: dict[str, Any] | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    callbacks: Sequence[Any] = (),
    **settings: Any,
) -> Any:
    """Trains ``model`` on ``train_data``; returns the run's summary (``TrainResult``).

    Args:
        model: An ``nn.Module`` instance (a plain one trains as a classifier with
            cross-entropy), a class or factory (built with ``model_args``, which the run then
            records), or a ``--model`` string such as ``"torchvision:resnet18"``.
        train_data: A dataset of ``(image, label)`` pairs, images ``(C, H, W)`` tensors.
        val_data: The validation split: picks ``best.pt`` and drives early stopping.
        test_data: The test split, evaluated once at the end on ``best.pt``.
        model_args: Constructor arguments for a class, factory or string ``model``.
        num_classes: Number of classes (default: ``train_data.classes``, else read from
            the labels).
        class_names: Class names in label order (default: ``train_data.classes``).
        callbacks: Extra engine callbacks.
        **settings: Any ``torchstyle train`` setting by its field name (``epochs=3``,
            ``batch_size=32``, ``lr=1e-3``, ``run_dir="runs/a"``, ``weights="w.safetensors"``).

    Returns:
        The finished run's ``TrainResult`` (run folder, metrics, best checkpoint).

    Raises:
        UserError: A bad setting or data; the message names the fix.
    """
    from torchstyle.config import TrainConfig
    from torchstyle.data import DataBundle
    from torchstyle.engine.trainer import Trainer

    if train_data is None:
        raise UserError("torchstyle.fit needs train_data: a dataset of (image, label) pairs")
    spec = infer_spec(train_data, num_classes=num_classes, class_names=class_names)
    build, name = _model_for(model, model_args, spec)
    known = {"model": name, "data": "python", **settings}
    cfg = TrainConfig.from_dict(known, source="torchstyle.fit")
    splits = {"train": train_data, "val": val_data, "test": test_data}
    bundle = _bundle(DataBundle, splits, spec)
    trainer = Trainer(
        cfg, model=build.model, data=bundle, callbacks=callbacks, model_record=build.record
    )
    return trainer.fit()


def _model_for(model: Any, model_args: dict[str, Any] | None, spec: Any) -> tuple[Any, str]:
    """The engine's model and the run's name for it, from what ``fit`` was given."""
    from torchstyle.models.adapters import adapt
    from torchstyle.models.loading import ModelBuild, build_for_data, record_for_object
    from torchstyle.models.sources import check_output

    if isinstance(model, str):
        return build_for_data(model, dict(model_args or {}), spec), model
    module, rec = record_for_object(model, model_args)
    engine_model, adapter = adapt(module)
    if adapter == "classification":
        check_output(module, spec, f"model {type(module).__name__}")
    name = rec.get("spec") or type(module).__name__
    return ModelBuild(engine_model, {**rec, "adapter": adapter}), str(name)


def _bundle(bundle_cls: Any, splits: dict[str, Any], spec: Any) -> Any:
    """A DataBundle of the given splits; without ``val_data`` the test split is evaluated
    during training (and picks ``best.pt``), as the CLI does for data without one."""
    if splits["val"] is None and splits["test"] is None:
        raise UserError("torchstyle.fit needs val_data or test_data to evaluate on")
    return bundle_cls(train=splits["train"], val=splits["val"], test=splits["test"], spec=spec)


def infer_spec(
    dataset: Any, *, num_classes: int | None = None, class_names: Sequence[str] | None = None
) -> Any:
    """Sample shape and classes of a dataset of ``(image, label)`` or ``(vector, label)`` pairs.

    Raises:
        UserError: Samples are not ``(image, label)`` with a ``(C, H, W)`` tensor image.
    """
    import torch

    from torchstyle.spec import DataSpec

    first = dataset[0] if hasattr(dataset, "__getitem__") else next(iter(dataset))
    if not (isinstance(first, (tuple, list)) and len(first) >= 2):
        raise UserError(f"a sample must be (image, label), got {type(first).__name__}")
    image = first[0]
    if not isinstance(image, torch.Tensor) or image.ndim not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise UserError(
            f"a sample's image must be a (C, H, W) tensor (or a 1-D feature vector), got "
            f"{shape}; add a transform such as torchvision.transforms.ToTensor()"
        )
    names = tuple(class_names or getattr(dataset, "classes", None) or ())
    if num_classes is None:
        num_classes = len(names) if names else _count_classes(dataset)
    if names and len(names) != num_classes:
        raise UserError(
            f"{len(names)} class names for {num_classes} classes; give one name per class"
        )
    names = names or tuple(str(i) for i in range(num_classes))
    if image.ndim == 1:
        return DataSpec.for_features(int(image.shape[0]), int(num_classes), names)
    c, h, w = (int(n) for n in image.shape)
    return DataSpec.for_images(c, h, w, int(num_classes), names)


def _count_classes(dataset: Any) -> int:
    """1 + the largest label: from ``targets``/``labels`` when present, else by reading."""
    import torch

    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = getattr(dataset, "labels", None)
    tensors = getattr(dataset, "tensors", None)  # a TensorDataset
    if labels is None and isinstance(tensors, tuple) and len(tensors) >= 2:
        labels = tensors[1]
    if labels is None:
        labels = [int(sample[1]) for sample in dataset]
    return int(torch.as_tensor(labels).max()) + 1
