"""torchstyle: the PyTorch style guide as working software.

Public API only. Names are loaded on first use (PEP 562), so ``import torchstyle`` (and the
``lint`` and ``new`` commands) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchstyle.api import fit
    from torchstyle.models import create_model, list_models, register_model
    from torchstyle.spec import DataSpec

__all__ = ["DataSpec", "create_model", "fit", "list_models", "register_model"]
__version__ = "0.1.0"

_HOMES = {
    "DataSpec": "torchstyle.spec",
    "create_model": "torchstyle.models",
    "fit": "torchstyle.api",
    "list_models": "torchstyle.models",
    "register_model": "torchstyle.models",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'torchstyle' has no attribute {name!r}")
