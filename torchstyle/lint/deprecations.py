"""The deprecated and removed PyTorch and torchvision APIs that TS503 finds: a table of facts.

Each entry comes from the deprecation notice in the library's own source or documentation
(the warning it raises, or the ``.. warning::`` in its docstring), with the torch version the
notice and its replacement apply from. torchvision versions are given as the torch release
they ship with (torchvision 0.13 = torch 1.12). ``[tool.torchstyle.lint] target-torch``
drops entries that apply only after the targeted version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: How a finding is fixed: rename the callee, rename and add a first argument, or nothing.
FixKind = Literal["rename", "device-first", "none"]


@dataclass(frozen=True)
class Deprecation:
    """One deprecated API.

    Attributes:
        name: The fully qualified name as imported (``torch.cuda.amp.autocast``).
        since: The torch version from which it is deprecated and its replacement exists.
        replacement: What to write instead, as shown to the user.
        note: What else the notice says, shortened ("" when nothing).
        fix: How a call is rewritten (``rename``: to ``target``; ``device-first``: to
            ``target`` with ``argument`` inserted first).
        target: The new qualified name for a fix.
        argument: The argument inserted by a ``device-first`` fix.
        safe: Whether the fix keeps behaviour exactly.
    """

    name: str
    since: str
    replacement: str
    note: str
    fix: FixKind = "none"
    target: str = ""
    argument: str = ""
    safe: bool = False


TABLE: tuple[Deprecation, ...] = (
    Deprecation(
        "torch.cuda.amp.autocast",
        "2.4",
        'torch.amp.autocast("cuda", ...)',
        "",
        "device-first",
        "torch.amp.autocast",
        '"cuda"',
        safe=True,
    ),
    Deprecation(
        "torch.cuda.amp.GradScaler",
        "2.4",
        'torch.amp.GradScaler("cuda", ...)',
        "",
        "device-first",
        "torch.amp.GradScaler",
        '"cuda"',
        safe=True,
    ),
    Deprecation(
        "torch.cpu.amp.autocast",
        "2.4",
        'torch.amp.autocast("cpu", ...)',
        "",
        "device-first",
        "torch.amp.autocast",
        '"cpu"',
        safe=True,
    ),
    Deprecation(
        "torch.cpu.amp.GradScaler",
        "2.4",
        'torch.amp.GradScaler("cpu", ...)',
        "",
        "device-first",
        "torch.amp.GradScaler",
        '"cpu"',
        safe=True,
    ),
    Deprecation(
        "torch.cuda.amp.custom_fwd",
        "2.4",
        'torch.amp.custom_fwd(device_type="cuda")',
        "",
    ),
    Deprecation(
        "torch.cuda.amp.custom_bwd",
        "2.4",
        'torch.amp.custom_bwd(device_type="cuda")',
        "",
    ),
    Deprecation(
        "torch.testing.assert_allclose",
        "1.12",
        "torch.testing.assert_close",
        "to be removed; assert_close also checks dtypes",
        "rename",
        "torch.testing.assert_close",
    ),
    Deprecation(
        "torch.backends.cuda.sdp_kernel",
        "2.3",
        "torch.nn.attention.sdpa_kernel([...])",
        "the new one takes a list of SDPBackend values",
    ),
    Deprecation(
        "torch.set_default_tensor_type",
        "2.1",
        "torch.set_default_dtype(...) and torch.set_default_device(...)",
        "",
    ),
    Deprecation(
        "torch.nn.utils.weight_norm",
        "2.1",
        "torch.nn.utils.parametrizations.weight_norm",
        "state_dict keys change: weight_g/weight_v become parametrizations.weight.original0/1",
        "rename",
        "torch.nn.utils.parametrizations.weight_norm",
    ),
    Deprecation(
        "torch.nn.utils.stateless.functional_call",
        "2.0",
        "torch.func.functional_call",
        "",
        "rename",
        "torch.func.functional_call",
    ),
    Deprecation(
        "torch.chain_matmul",
        "1.9",
        "torch.linalg.multi_dot([...])",
        "to be removed; multi_dot takes a list",
    ),
    Deprecation(
        "torch.lu",
        "1.13",
        "torch.linalg.lu_factor",
        "",
    ),
    Deprecation(
        "torch.nn.functional.upsample",
        "1.0",
        "torch.nn.functional.interpolate",
        "it calls interpolate with the same arguments",
        "rename",
        "torch.nn.functional.interpolate",
        safe=True,
    ),
    Deprecation(
        "torch.distributed._all_gather_base",
        "2.0",
        "torch.distributed.all_gather_into_tensor",
        "a private function",
        "rename",
        "torch.distributed.all_gather_into_tensor",
        safe=True,
    ),
    Deprecation(
        "torch.distributed._reduce_scatter_base",
        "2.0",
        "torch.distributed.reduce_scatter_tensor",
        "a private function",
        "rename",
        "torch.distributed.reduce_scatter_tensor",
        safe=True,
    ),
    *(
        Deprecation(
            f"functorch.{api}",
            "2.0",
            f"torch.func.{api}",
            "to be deleted",
            "rename",
            f"torch.func.{api}",
            safe=True,
        )
        for api in (
            "vmap",
            "grad",
            "grad_and_value",
            "vjp",
            "jvp",
            "jacrev",
            "jacfwd",
            "hessian",
            "functionalize",
        )
    ),
)

#: Deprecated arguments: the callees whose ``use_reentrant`` must be passed, and the torch
#: versions the argument notices apply from.
CHECKPOINT = frozenset(
    {
        "torch.utils.checkpoint.checkpoint",
        "torch.utils.checkpoint.checkpoint_sequential",
    }
)
CHECKPOINT_SINCE = "2.1"
PRETRAINED_SINCE = "1.12"  # torchvision 0.13
LOSS_REDUCTION_SINCE = "1.0"

BY_NAME: dict[str, Deprecation] = {d.name: d for d in TABLE}


def version(text: str) -> tuple[int, ...]:
    """``"2.4"`` -> ``(2, 4)``; raises ValueError for anything else."""
    parts = text.strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(text)
    return tuple(int(p) for p in parts)


def applies(since: str, target: tuple[int, ...] | None) -> bool:
    """Whether a notice from torch ``since`` applies to a project targeting ``target``."""
    return target is None or version(since) <= target
