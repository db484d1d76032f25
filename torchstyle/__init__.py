"""torchstyle: the PyTorch style guide as working software.

Public API only; nothing here runs at import time beyond defining names.
"""

from torchstyle.models import create_model, list_models, register_model
from torchstyle.spec import DataSpec

__all__ = ["DataSpec", "create_model", "list_models", "register_model"]
__version__ = "0.1.0"
