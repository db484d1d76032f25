"""Datasets, loaders and device prefetch. Independent of the engine and of any model.

``--data`` names a source registered with :func:`register_source` (``digits``,
``digits-pairs``, ``cifar10``, ``synthetic``; :func:`list_sources` lists them), a folder path
(class folders, or A|B pairs for a paired model), or ``path/to/file.py:function`` /
``module:function`` returning the splits as datasets.

The registry's names load without torch (PEP 562), so ``--help`` can list the sources
cheaply; the datasets and loaders load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from torchstyle.data.registry import (
    DATA_SOURCES,
    LAYOUTS,
    default_source,
    get_source,
    list_sources,
    register_source,
    sources_help,
)
from torchstyle.data.sources import build_data

if TYPE_CHECKING:
    from torchstyle.data.base import DataBundle, DataOptions, TensorImageDataset
    from torchstyle.data.loaders import (
        DevicePrefetcher,
        EpochBatchSampler,
        make_loader,
        to_device,
    )

__all__ = [
    "DATA_SOURCES",
    "LAYOUTS",
    "DataBundle",
    "DataOptions",
    "DevicePrefetcher",
    "EpochBatchSampler",
    "TensorImageDataset",
    "build_data",
    "default_source",
    "get_source",
    "list_sources",
    "make_loader",
    "register_source",
    "sources_help",
    "to_device",
]

_HOMES = {
    "DataBundle": "torchstyle.data.base",
    "DataOptions": "torchstyle.data.base",
    "TensorImageDataset": "torchstyle.data.base",
    "DevicePrefetcher": "torchstyle.data.loaders",
    "EpochBatchSampler": "torchstyle.data.loaders",
    "make_loader": "torchstyle.data.loaders",
    "to_device": "torchstyle.data.loaders",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'torchstyle.data' has no attribute {name!r}")
