"""Datasets, loaders and device prefetch. Independent of the engine and of any model.

``--data`` names a source: ``digits`` (embedded, offline), ``cifar10`` (local folder),
``synthetic`` (benchmarks), or a folder path in the guide's ImageFolder layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torchstyle.data.base import DataBundle, DataOptions, TensorImageDataset
from torchstyle.data.loaders import DevicePrefetcher, EpochBatchSampler, make_loader, to_device

__all__ = [
    "DATA_SOURCES",
    "DataBundle",
    "DataOptions",
    "DevicePrefetcher",
    "EpochBatchSampler",
    "TensorImageDataset",
    "build_data",
    "make_loader",
    "to_device",
]


def _digits(options: DataOptions) -> DataBundle:
    from torchstyle.data.digits import build_digits

    return build_digits(options)


def _cifar10(options: DataOptions) -> DataBundle:
    from torchstyle.data.cifar import build_cifar10

    return build_cifar10(options)


def _synthetic(options: DataOptions) -> DataBundle:
    from torchstyle.data.synthetic import build_synthetic

    return build_synthetic(options)


def _stdlib(options: DataOptions) -> DataBundle:
    from torchstyle.data.stdlib import build_stdlib

    return build_stdlib(options)


# Named sources; anything else given to --data is taken as a folder path.
DATA_SOURCES: dict[str, Callable[[DataOptions], DataBundle]] = {
    "digits": _digits,
    "cifar10": _cifar10,
    "synthetic": _synthetic,
    "stdlib": _stdlib,
}


def build_data(options: DataOptions) -> DataBundle:
    """Builds the train and test splits that ``options.name`` names.

    Raises:
        UserError: The source is missing or malformed; the message names the fix.
    """
    source = DATA_SOURCES.get(options.name)
    if source is not None:
        return source(options)
    if options.layout == "paired":
        from torchstyle.data.paired import build_paired

        return build_paired(options)
    from torchstyle.data.folder import build_folder

    if (
        Path(options.name).suffix == ""
        and not Path(options.name).exists()
        and "/" not in options.name
    ):
        from torchstyle.errors import UserError

        raise UserError(
            f"unknown data source {options.name!r}; pass one of {', '.join(DATA_SOURCES)} "
            "or a folder path with train/ and test/ subfolders"
        )
    return build_folder(options)
