"""``torchstyle.fit``: the engine from Python (notebooks), with the CLI's run folder.

The same :class:`~torchstyle.engine.trainer.Trainer` runs, with the same experiment callbacks:
the same run folder (``status.json``, checkpoints, logs, TensorBoard events and HParams), the
same start-up summary and epoch lines; ``torchstyle test RUN --data ...``, ``predict``,
``export`` and ``runs`` work on the run afterwards, whatever module it trained.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from torchstyle.errors import UserError

log = logging.getLogger(__name__)


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
    verbose: bool = True,
    **settings: Any,
) -> Any:
    """Trains ``model`` on ``train_data``; returns the run's summary (``TrainResult``).

    The run folder is the one ``torchstyle train`` writes (``status.json``, ``config.json``,
    HParams, checkpoints), so ``torchstyle test``, ``predict``, ``export`` and ``runs`` open it.
    A module given as an instance keeps an inference program (``model.pt2``) for them; to
    train such a run further, call ``fit`` again with the module and ``resume=RUN``.

    Args:
        model: An ``nn.Module`` instance (a plain one trains as a classifier with
            cross-entropy), a class or factory (built with ``model_args``, which the run then
            records), or a ``--model`` string such as ``"torchvision:resnet18"``, built as
            ``torchstyle train --model`` builds it (with ``model_args`` as ``--model-arg``).
        train_data: A dataset of ``(image, label)`` pairs, images ``(C, H, W)`` tensors.
        val_data: The validation split: picks ``best.pt`` and drives early stopping.
        test_data: The test split, evaluated once at the end on ``best.pt``.
        model_args: Constructor arguments for a class, factory or string ``model``.
        num_classes: Number of classes (default: ``train_data.classes``, else read from
            the labels).
        class_names: Class names in label order (default: ``train_data.classes``).
        callbacks: Extra engine callbacks.
        verbose: Print the start-up summary and epoch lines (no logging set-up); False: quiet.
        **settings: Any ``torchstyle train`` setting by its field name (``epochs=3``,
            ``batch_size=32``, ``lr=1e-3``, ``run_dir="runs/a"``, ``resume="runs/a"``,
            ``overwrite=True``).

    Returns:
        The finished run's ``TrainResult`` (run folder, metrics, best checkpoint).

    Raises:
        UserError: A bad setting or data; the message names the fix in Python terms.
    """
    if not verbose:
        settings.setdefault("progress", False)
    with _console(verbose):
        try:
            result = _fit(
                model, train_data, val_data, test_data, model_args, num_classes, class_names,
                callbacks, settings,
            )  # fmt: skip
        except UserError as e:
            e.args = (in_python_terms(str(e)),)
            raise
        from torchstyle.engine.summary import result_lines

        for line in result_lines(result, data_from_python=not isinstance(train_data, str)):
            log.info("%s", line)
    return result


def _fit(
    model: Any,
    train_data: Any,
    val_data: Any,
    test_data: Any,
    model_args: dict[str, Any] | None,
    num_classes: int | None,
    class_names: Sequence[str] | None,
    callbacks: Sequence[Any],
    settings: dict[str, Any],
) -> Any:
    """The run, as ``torchstyle train`` builds it, with the experiment callbacks."""
    from torchstyle.config import TrainConfig
    from torchstyle.data import DataBundle
    from torchstyle.engine.trainer import Trainer
    from torchstyle.experiments.callbacks import train_callbacks

    if train_data is None:
        raise UserError("torchstyle.fit needs train_data: a dataset of (image, label) pairs")
    for name, split in (
        ("train_data", train_data),
        ("val_data", val_data),
        ("test_data", test_data),
    ):
        _check_dataset(name, split)
    spec = infer_spec(train_data, num_classes=num_classes, class_names=class_names)
    splits = {"train": train_data, "val": val_data, "test": test_data}
    bundle = _bundle(DataBundle, splits, spec)
    if isinstance(model, str):  # a --model string: the run's builder parses and builds it
        known = {"model": model, "model_args": dict(model_args or {}), "data": "python"}
        cfg = TrainConfig.from_dict({**known, **settings}, source="torchstyle.fit")
        hooks = [*train_callbacks(cfg), *callbacks]
        return Trainer(cfg, data=bundle, callbacks=hooks).fit()
    build, name = _model_for(model, model_args, spec, train_data)
    known = {"model": name, "data": "python", **settings}
    cfg = TrainConfig.from_dict(known, source="torchstyle.fit")
    trainer = Trainer(
        cfg,
        model=build.model,
        data=bundle,
        callbacks=[*train_callbacks(cfg), *callbacks],
        model_record=build.record,
    )
    return trainer.fit()


@contextlib.contextmanager
def _console(verbose: bool) -> Iterator[None]:
    """What ``torchstyle train`` prints, shown while ``fit`` runs without any logging set-up.

    Nothing is added when the caller already shows torchstyle's INFO lines (their own
    handlers), so no line appears twice; ``verbose=False`` leaves warnings only.
    """
    logger = logging.getLogger("torchstyle")
    level, propagate = logger.level, logger.propagate
    root = logging.getLogger()
    shown = bool(logger.handlers) or (
        bool(root.handlers) and logger.getEffectiveLevel() <= logging.INFO
    )
    handler: logging.Handler | None = None
    if not verbose:
        logger.setLevel(logging.WARNING)
    elif not shown:
        # A notebook shows stdout plainly (stderr is painted as an error); under torchrun
        # the main process speaks.
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        main = int(os.environ.get("RANK", "0") or 0) == 0
        logger.setLevel(logging.INFO if main else logging.WARNING)
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


_VALUE = r"('[^']*'|\"[^\"]*\"|[\w./~:-]*[\w/~])"
_WORDS = {"to", "and", "or", "with", "is", "must", "the", "a", "an", "for", "of", "in", "on"}


def in_python_terms(message: str) -> str:
    """A message written for the command line, with each ``--flag`` as fit's keyword.

    ``--resume RUN`` becomes ``resume='RUN'``, ``--overwrite`` ``overwrite=True``, ``drop
    --flag`` ``leave out flag=``, and ``torchstyle train`` ``torchstyle.fit``.
    """
    import dataclasses
    import re

    from torchstyle.config import TrainConfig, choices_of

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}

    def keyword(match: re.Match[str]) -> str:
        drop, flag, value = match.group(1), match.group(2), match.group(3)
        name = flag.replace("-", "_")
        negated = name.startswith("no_") and name[3:] in fields
        name = name[3:] if negated else name
        if name not in fields:
            return match.group(0)
        is_bool = fields[name].type in ("bool", bool)
        # A following word is the flag's value only when it looks like one: quoted, a path or
        # a number, or one of its choices ("--resume auto"); "--resume would" is prose.
        is_value = bool(value) and (
            value[0] in "'\"" or not value.isalpha() or value in (choices_of(name) or ["auto"])
        )
        tail = f" {value}" if value and (is_bool or not is_value) else ""
        if drop:
            return f"leave out {name}=" + ("True" if is_bool else "") + tail
        if is_bool:
            return f"{name}={not negated}{tail}"
        if is_value:
            plain = value.strip("'\"")
            shown = plain if re.fullmatch(r"-?[0-9.e+-]+|True|False|None", plain) else repr(plain)
            return f"{name}={shown}"
        return f"{name}{tail}"

    text = re.sub(r"(drop )?--([a-z][a-z0-9-]*)(?: " + _VALUE + ")?", keyword, message)
    return text.replace("torchstyle train", "torchstyle.fit")


def _check_dataset(name: str, dataset: Any) -> None:
    """Refuses what ``fit`` cannot batch itself, naming the cause.

    Raises:
        UserError: A DataLoader, or samples that are dicts.
    """
    if dataset is None:
        return
    from torch.utils.data import DataLoader

    if isinstance(dataset, DataLoader):
        raise UserError(
            f"{name} is a DataLoader; torchstyle.fit batches the data itself (so a resume "
            f"continues at the right sample): pass its dataset ({name}.dataset) and "
            f"batch_size={dataset.batch_size}"
        )
    first = dataset[0] if hasattr(dataset, "__getitem__") else None
    if isinstance(first, dict):
        raise UserError(
            f"{name}'s samples are dicts (keys {sorted(first)}); torchstyle.fit trains on "
            "(image, label) pairs: return (sample['image'], sample['label']) from the dataset"
        )


def _model_for(
    model: Any, model_args: dict[str, Any] | None, spec: Any, train_data: Any
) -> tuple[Any, str]:
    """The engine's model and the run's name for it, from what ``fit`` was given."""
    from torchstyle.models.adapters import adapt
    from torchstyle.models.loading import ModelBuild, record_for_object
    from torchstyle.models.sources import check_output

    module, rec = record_for_object(model, model_args)
    engine_model, adapter = adapt(module)
    if adapter == "classification":
        _check_not_tuple(module, train_data[0][0])
        check_output(module, spec, f"model {type(module).__name__}")
    name = rec.get("spec") or type(module).__name__
    return ModelBuild(engine_model, {**rec, "adapter": adapter}), str(name)


def _check_not_tuple(module: Any, image: Any) -> None:
    """A classifier's forward returns logits; a tuple (logits and features, say) is refused.

    Raises:
        UserError: ``forward`` returns a tuple, list or dict.
    """
    import torch

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(image[None])
    except Exception:  # the shape check that follows names what went wrong
        return
    finally:
        module.train(was_training)
    if isinstance(out, (tuple, list, dict)):
        raise UserError(
            f"model {type(module).__name__} returns a {type(out).__name__}; torchstyle.fit "
            "trains a plain module as a classifier, whose forward returns the logits (B, "
            "classes) alone: return only the logits, or give the module its own "
            "training_step and evaluation_step"
        )


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
