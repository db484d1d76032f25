"""``--data path/to/file.py:function`` or ``--data package.module:function``: a user's own data.

The function takes no argument (or one: the :class:`~torchstyle.data.DataOptions`) and
returns the splits as datasets, map-style or iterable, in any of these forms:

* ``{"train": ds, "test": ds}``, optionally with ``"val": ds`` and ``"classes": [names]``;
* ``(train, test)`` or ``(train, val, test)``;
* a :class:`~torchstyle.data.DataBundle`, used as it is.

``options.splits`` names the splits asked for: training asks for ``train``, ``val`` and
``test``; ``torchstyle test`` for ``test`` alone, so a function that takes the options may
build only those (a dict may then leave the others out; they are ignored if returned).

A sample is ``(image, label)`` (``classes`` layout: image a ``(C, H, W)`` float tensor of
any height and width, label an int), ``(vector, label)`` (``features`` layout: tabular data,
the vector a 1-D float tensor) or ``(a, b)``, two images (``paired`` layout). The sample shape
and layout are read from the first training sample; the class names from ``"classes"``, the
dataset's ``classes`` attribute (torchvision's convention), or by reading every training
label once. Images are used at the size the datasets yield; ``--image-size`` does not
resize them.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

from torchstyle.data.base import DataBundle, DataOptions
from torchstyle.data.splits import carve_val, labels_of
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec

log = logging.getLogger(__name__)

_REFERENCE = re.compile(r"^(?P<target>.+\.py|[A-Za-z_][\w.]*):(?P<function>[A-Za-z_]\w*)$")
_FORMS = (
    "return {'train': ds, 'test': ds} (optionally 'val' and 'classes'), (train, test), "
    "(train, val, test) or a DataBundle"
)


def is_function_reference(text: str) -> bool:
    """True for ``file.py:function`` or ``module:function``."""
    return _REFERENCE.match(text) is not None


def load_function(reference: str) -> Callable[..., Any]:
    """Imports the function ``file.py:function`` or ``module:function`` names.

    Raises:
        UserError: The file or module is missing or fails to import, or has no such function.
    """
    match = _REFERENCE.match(reference)
    if match is None:
        raise UserError(f"--data {reference}: expected path/to/file.py:function or module:function")
    target, name = match["target"], match["function"]
    module = _import(target, reference)
    function: object = getattr(module, name, None)
    if not callable(function):
        public = sorted(
            n
            for n, v in vars(module).items()
            if inspect.isfunction(v) and v.__module__ == module.__name__ and not n.startswith("_")
        )
        shown = ", ".join(public[:10]) + (
            f" and {len(public) - 10} more" if len(public) > 10 else ""
        )
        raise UserError(
            f"--data {reference}: {target} has no function {name!r}; it defines: {shown or 'none'}"
        )
    return function


def _import(target: str, reference: str) -> Any:
    if target.endswith(".py"):
        path = Path(os.path.expanduser(target))
        if not path.is_file():
            raise UserError(
                f"--data {reference}: no such file {path}; check the path (if it moved, pass "
                "--data NEW_PATH.py:function)"
            )
        module_name = f"torchstyle_user_data_{abs(hash(str(path.resolve())))}"
        folder = str(path.resolve().parent)
        if folder not in sys.path:  # as `python file.py` does: its neighbours import
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None, f"{path} is a .py file"
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up here
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the user's module: any error it raises is theirs to fix
            raise _raised(reference, "importing it", e) from None
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name != target.split(".")[0] and e.name != target:
            raise _raised(reference, "importing it", e) from None
        raise UserError(
            f"--data {reference}: no module named {target!r}; check the name, or run from the "
            "folder that holds it (or add that folder to PYTHONPATH)"
        ) from None
    except Exception as e:  # the user's module: any error it raises is theirs to fix
        raise _raised(reference, "importing it", e) from None


def _raised(reference: str, doing: str, error: BaseException) -> UserError:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return UserError(
        f"--data {reference}: {doing} raised {type(error).__name__}: {error}{where}; fix it there"
    )


def _call(function: Callable[..., Any], reference: str, options: DataOptions) -> Any:
    try:
        takes_options = bool(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # a builtin or C callable: call it without arguments
        takes_options = False
    try:
        return function(options) if takes_options else function()
    except Exception as e:  # the user's function: any error it raises is theirs to fix
        raise _raised(reference, "calling it", e) from None


def _splits(
    result: Any, reference: str, options: DataOptions
) -> tuple[Any, Any, Any, Sequence[str] | None]:
    """``(train, val, test, classes)`` from what the function returned; a dict needs the
    keys of the splits ``options.splits`` asks for, of train and test."""
    if isinstance(result, dict):
        unknown = sorted(set(result) - {"train", "val", "test", "classes"})
        needed = [s for s in ("train", "test") if options.wants(s)]
        if unknown or any(s not in result for s in needed):
            raise UserError(
                f"--data {reference}: the dict needs {' and '.join(map(repr, needed))} "
                f"key(s) (got {', '.join(map(repr, result)) or 'none'}); {_FORMS}"
            )
        return result.get("train"), result.get("val"), result.get("test"), result.get("classes")
    if isinstance(result, (tuple, list)) and len(result) in (2, 3):
        train, *rest = result
        val = rest[0] if len(rest) == 2 else None
        return train, val, rest[-1], None
    raise UserError(f"--data {reference}: the function returned {type(result).__name__}; {_FORMS}")


def _first(dataset: Any, split: str, reference: str) -> Any:
    if not isinstance(dataset, (Dataset, IterableDataset)) and not hasattr(dataset, "__getitem__"):
        raise UserError(
            f"--data {reference}: the {split} split is a {type(dataset).__name__}, not a dataset; "
            "return torch.utils.data datasets (map-style or iterable)"
        )
    try:
        if isinstance(dataset, IterableDataset):
            return next(iter(dataset))
        if len(dataset) == 0:
            raise UserError(f"--data {reference}: the {split} split is empty")
        return dataset[0]
    except StopIteration:
        raise UserError(f"--data {reference}: the {split} split is empty") from None
    except UserError:
        raise
    except Exception as e:  # the user's dataset: any error it raises is theirs to fix
        raise _raised(reference, f"reading the {split} split's first sample", e) from None


def _layout_of(sample: Any, reference: str) -> tuple[str, Tensor]:
    if not (
        isinstance(sample, (tuple, list)) and len(sample) == 2 and isinstance(sample[0], Tensor)
    ):
        raise UserError(
            f"--data {reference}: a sample must be (image, label) or (a, b) with (C, H, W) "
            f"image tensors, or (vector, label) with a 1-D tensor; got {type(sample).__name__}"
        )
    x, y = sample
    if x.ndim == 1:
        return "features", x
    if x.ndim != 3:
        raise UserError(
            f"--data {reference}: a sample must be a (C, H, W) image or a 1-D feature vector; "
            f"got shape {tuple(x.shape)} (flatten a table row to 1-D)"
        )
    paired = isinstance(y, Tensor) and y.ndim == 3
    return ("paired" if paired else "classes"), x


def _class_names(
    first: Any, classes: Sequence[str] | None, reference: str, options: DataOptions
) -> tuple[str, ...]:
    """The class names: returned, the dataset's ``classes``, the run's (``torchstyle test``),
    or counted from the labels of ``first`` (the training split when it was asked for)."""
    names = classes if classes is not None else getattr(first, "classes", None)
    if names is None and options.class_names is not None:
        names = options.class_names
    if names is not None:
        return tuple(str(n) for n in names)
    if isinstance(first, IterableDataset):
        labels = torch.tensor([int(y) for _, y in first])
    else:
        labels = labels_of(first)
    count = int(labels.max()) + 1
    log.info(
        "data: %d classes counted from the labels of %s; return 'classes' to name them",
        count,
        reference,
    )
    return tuple(str(i) for i in range(count))


def build_user_data(options: DataOptions) -> DataBundle:
    """Data source for ``--data file.py:function`` or ``--data module:function``.

    Raises:
        UserError: The function cannot be found or called, or returns something that is not
            the splits; the message says what to return.
    """
    reference = options.name
    if options.augment is not None:
        raise UserError(
            f"--augment {options.augment} does not apply to the datasets {reference} returns; "
            "augment inside them (the function receives the options), and drop --augment"
        )
    result = _call(load_function(reference), reference, options)
    if isinstance(result, DataBundle):
        return result
    train, val, test, classes = _splits(result, reference, options)
    # The shape is read from the first split asked for: train, else test.
    first_split = "train" if options.wants("train") or options.wants("val") else "test"
    first = train if first_split == "train" else test
    layout, x = _layout_of(_first(first, first_split, reference), reference)
    if layout != "features" and options.channels is not None and options.channels != x.shape[0]:
        raise UserError(
            f"{reference} yields {x.shape[0]}-channel images, not --channels {options.channels}; "
            "convert inside the datasets, or drop --channels"
        )
    if options.wants("test") and first_split != "test":
        _first(test, "test", reference)
    names = _class_names(first, classes, reference, options) if layout != "paired" else ()
    info: dict[str, Any] = {"source": f"{reference} ({type(first).__name__})"}
    if val is not None:
        info["val"] = f"the val split {reference} returned"
    elif options.val_split and options.wants("val"):
        train, val, record = carve_val(train, options.val_split, options.seed, source=reference)
        info.update(record)
    else:
        info["val"] = "none (return a 'val' split, or pass --val-split F)"
    if layout != "features" and options.image_size not in (None, max(x.shape[-2:])):
        log.info(
            "data: %s yields %dx%d images; they are used at that size (--image-size does not "
            "resize a function's datasets)",
            reference,
            x.shape[-2],
            x.shape[-1],
        )
    if layout == "features":
        spec = DataSpec.for_features(int(x.shape[0]), len(names), names)
    else:
        c, h, w = (int(n) for n in x.shape)
        spec = DataSpec.for_images(c, h, w, len(names), names, layout)
    return DataBundle(train=train, test=test, spec=spec, val=val, info=info)
