"""Initialising from a weights file (``--weights``) and freezing parameters (``--freeze``).

A weights file is local, never a download: a ``state_dict`` saved with ``torch.save``, a
torchstyle checkpoint, or a safetensors file (``torchstyle export`` writes one). Keys are
matched after the usual prefixes (``module.`` of DDP, ``net.`` of an adapter) are lined up;
a classification head whose size differs from the data's classes keeps its fresh weights
(fine-tuning), and a first convolution with other input channels is folded onto them.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchstyle.errors import UserError
from torchstyle.models.adapters import unwrap
from torchstyle.models.sources import find_head

log = logging.getLogger(__name__)

_PREFIXES = ("module.", "net.", "model.", "_orig_mod.")


@dataclass
class WeightsReport:
    """What loading a weights file did.

    Attributes:
        loaded: Keys whose values were copied.
        missing: Model keys the file lacks (they keep their fresh values).
        unexpected: File keys the model lacks (ignored).
        replaced_head: Head keys left fresh because the file's head has another size.
        adapted: Keys reshaped to the model (a first convolution's input channels).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    replaced_head: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def lines(self, path: Path) -> list[str]:
        """Human-readable summary lines."""
        out = [f"weights: {len(self.loaded)} tensors from {path}"]
        if self.replaced_head:
            out.append(
                f"  new classification head (other class count): {_abbrev(self.replaced_head)}"
            )
        if self.adapted:
            out.append(f"  input channels folded: {_abbrev(self.adapted)}")
        if self.missing:
            out.append(f"  missing in the file (kept fresh): {_abbrev(self.missing)}")
        if self.unexpected:
            out.append(f"  unexpected in the file (ignored): {_abbrev(self.unexpected)}")
        return out


def _abbrev(keys: list[str], n: int = 6) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def read_weights(path: Path) -> dict[str, Tensor]:
    """Reads a state_dict from a ``.safetensors`` file or a ``torch.save`` file.

    A torchstyle checkpoint gives its ``net`` entry; a dict with a ``state_dict`` or ``model``
    entry of tensors gives that.

    Raises:
        UserError: Missing, unreadable or unsafe file, or no tensors in it.
    """
    if not path.is_file():
        raise UserError(f"--weights {path}: no such file; pass a local .pt or .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise UserError(f"--weights {path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # not a pickle of objects: not a torch file
            raise UserError(f"--weights {path}: truncated or not a torch file") from None
        raise UserError(
            f"--weights {path}: it needs arbitrary unpickling, which can run code; save a "
            "state_dict (torch.save(model.state_dict(), f)) or a safetensors file"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(
            f"--weights {path}: truncated or not a torch file ({str(e)[:120]})"
        ) from None
    for key in ("net", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = (
        {k: v for k, v in obj.items() if isinstance(v, Tensor)} if isinstance(obj, dict) else {}
    )
    if not tensors:
        raise UserError(f"--weights {path}: holds no tensors; expected a state_dict")
    return tensors


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def _line_up(file_keys: list[str], model_keys: list[str]) -> dict[str, str]:
    """Maps file keys to model keys, matching them without the wrapper prefixes."""
    by_stripped = {_strip(k): k for k in model_keys}
    mapping = {}
    for k in file_keys:
        if k in model_keys:
            mapping[k] = k
        elif _strip(k) in by_stripped:
            mapping[k] = by_stripped[_strip(k)]
    return mapping


def _fold_channels(weight: Tensor, channels: int) -> Tensor:
    """A conv weight ``(O, I, ...)`` for ``channels`` inputs: summed to one, or tiled and scaled."""
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-channels // weight.shape[1])
    return weight.repeat(1, reps, *([1] * (weight.ndim - 2)))[:, :channels] * (
        weight.shape[1] / channels
    )


def load_weights(model: nn.Module, path: Path) -> WeightsReport:
    """Initialises ``model`` (the user's network inside an adapter) from a weights file.

    Raises:
        UserError: Unreadable file, no key in common, or a shape that differs outside the head
            and the first convolution; the message names the keys.
    """
    target = unwrap(model)
    state = read_weights(path)
    own = target.state_dict()
    mapping = _line_up(list(state), list(own))
    if not mapping:
        raise UserError(
            f"--weights {path}: no tensor name matches the model (file: {_abbrev(list(state), 3)}; "
            f"model: {_abbrev(list(own), 3)}); was it saved from another architecture?"
        )
    head = find_head(target)
    head_keys = {f"{head[0]}.weight", f"{head[0]}.bias"} if head else set()
    first_conv = next(
        (f"{n}.weight" for n, m in target.named_modules() if isinstance(m, nn.Conv2d)), None
    )
    report = WeightsReport()
    new_state: dict[str, Tensor] = {}
    mismatched = []
    for fk, mk in mapping.items():
        value, want = state[fk], own[mk]
        if value.shape == want.shape:
            new_state[mk] = value
        elif mk in head_keys:
            report.replaced_head.append(mk)
        elif mk == first_conv and value.shape[0] == want.shape[0] and value.ndim == want.ndim:
            new_state[mk] = _fold_channels(value, want.shape[1]).to(want.dtype)
            report.adapted.append(mk)
        else:
            mismatched.append(f"{mk} {tuple(value.shape)} vs {tuple(want.shape)}")
    if mismatched:
        raise UserError(
            f"--weights {path}: shapes differ from the model's: {_abbrev(mismatched, 3)}; "
            "was it saved with other --model-arg values?"
        )
    target.load_state_dict(new_state, strict=False)
    report.loaded = sorted(new_state)
    report.replaced_head.sort()
    report.missing = sorted(set(own) - set(new_state) - set(report.replaced_head))
    report.unexpected = sorted(set(state) - set(mapping))
    for line in report.lines(path):
        log.info("%s", line)
    return report


def freeze(model: nn.Module, prefixes: list[str]) -> int:
    """Turns off gradients of parameters whose name starts with one of ``prefixes``.

    Names are those of the user's network (``layer1.0.conv1.weight``); a prefix also matches
    the model's full names.

    Returns:
        The number of parameters frozen.

    Raises:
        UserError: A prefix matches no parameter; the message lists the top-level names.
    """
    target = unwrap(model)
    frozen = 0
    for prefix in prefixes:
        matched = [p for n, p in target.named_parameters() if n.startswith(prefix)]
        if not matched and target is not model:
            matched = [p for n, p in model.named_parameters() if n.startswith(prefix)]
        if not matched:
            tops = sorted({n.split(".")[0] for n, _ in target.named_parameters()})
            raise UserError(
                f"--freeze {prefix}: no parameter name starts with it; top-level names: {', '.join(tops)}"
            )
        for p in matched:
            if p.requires_grad:
                p.requires_grad_(False)
                frozen += 1
    total = sum(1 for _ in target.parameters())
    log.info("froze %d of %d parameter tensors (%s)", frozen, total, ", ".join(prefixes))
    return frozen


def describe(model: nn.Module) -> dict[str, Any]:
    """Parameter counts: total and trainable (for the start-up summary)."""
    params = list(model.parameters())
    return {
        "parameters": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }
