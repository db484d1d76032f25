"""The built-in data sources and :func:`build_data`, which resolves what ``--data`` says.

Importing this module does not import torch (each source imports it when it builds), so the
CLI can list the sources in ``--help`` cheaply.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from torchstyle.data.registry import (
    DATA_SOURCES,
    SPLIT_NAMES,
    get_source,
    layout_error,
    layout_fits,
    register_source,
)
from torchstyle.errors import UserError

if TYPE_CHECKING:
    from torchstyle.data.base import DataBundle, DataOptions


@register_source("digits", description="8x8 handwritten digits embedded in scikit-learn (offline)")
def _digits(options: DataOptions) -> DataBundle:
    from torchstyle.data.digits import build_digits

    return build_digits(options)


@register_source("cifar10", description="CIFAR-10 from --data-dir (--download fetches it once)")
def _cifar10(options: DataOptions) -> DataBundle:
    from torchstyle.data.cifar import build_cifar10

    return build_cifar10(options)


@register_source(
    "synthetic", description="random 3x32x32 images with learnable labels (benchmarks)"
)
def _synthetic(options: DataOptions) -> DataBundle:
    from torchstyle.data.synthetic import build_synthetic

    return build_synthetic(options)


@register_source(
    "digits-pairs",
    description="digits as pix2pix pairs: A = a digit's edges, B = the digit (offline)",
    layout="paired",
)
def _digits_pairs(options: DataOptions) -> DataBundle:
    from torchstyle.data.digit_pairs import build_digit_pairs

    return build_digit_pairs(options)


@register_source(
    "stdlib",
    description="the running Python's standard library source files as bytes (offline)",
    layout="tokens",
)
def _stdlib(options: DataOptions) -> DataBundle:
    from torchstyle.data.stdlib import build_stdlib

    return build_stdlib(options)


@register_source(
    "breast-cancer",
    description="breast cancer diagnosis, 30 features per sample, in scikit-learn (offline)",
    layout="features",
)
def _breast_cancer(options: DataOptions) -> DataBundle:
    from torchstyle.data.tabular import build_breast_cancer

    return build_breast_cancer(options)


def build_data(options: DataOptions) -> DataBundle:
    """Builds the splits that ``options.name`` names, in the layout ``options.layout`` needs.

    Only the splits ``options.splits`` asks for are read; the bundle holds those alone (a
    split not asked for is None, even if a source built it anyway).

    Raises:
        UserError: The source is missing or malformed, its layout is not the one asked
            for, or it gave no split asked for; the message names the fix.
    """
    unknown = sorted(set(options.splits) - set(SPLIT_NAMES))
    if unknown or not options.splits:
        raise ValueError(f"splits must be some of {SPLIT_NAMES}, got {options.splits!r}")
    source = get_source(options.name)
    if source is not None:
        if not layout_fits(options.layout, source.layout):
            raise UserError(layout_error(options.layout, source.layout, options.name))
        bundle = source.build(options)
    else:
        bundle = _build_unnamed(options)
    if not layout_fits(options.layout, bundle.spec.layout):
        raise UserError(layout_error(options.layout, bundle.spec.layout, options.name))
    return _only_asked(bundle, options)


def _only_asked(bundle: DataBundle, options: DataOptions) -> DataBundle:
    """The bundle with the splits not asked for dropped; refuses a missing one asked for."""
    for split in ("train", "test"):  # a source may have no val split; it must have these
        if options.wants(split) and getattr(bundle, split) is None:
            raise UserError(
                f"--data {options.name} gave no {split} split; a data source must build every "
                f"split in DataOptions.splits ({', '.join(options.splits)})"
            )
    bundle.train = bundle.train if options.wants("train") else None
    bundle.val = bundle.val if options.wants("val") else None
    bundle.test = bundle.test if options.wants("test") else None
    return bundle


def _build_unnamed(options: DataOptions) -> DataBundle:
    from torchstyle.data.user import build_user_data, is_function_reference

    path = Path(os.path.expanduser(options.name))
    if not path.is_dir() and is_function_reference(options.name):
        return build_user_data(options)
    if path.suffix == "" and not path.exists() and "/" not in options.name:
        raise UserError(
            f"unknown data source {options.name!r}; pass one of {', '.join(DATA_SOURCES)}, "
            "a folder path with train/ and test/ subfolders, or file.py:function"
        )
    if options.layout == "paired":
        from torchstyle.data.paired import build_paired

        return build_paired(options)
    from torchstyle.data.folder import build_folder

    return build_folder(options)
