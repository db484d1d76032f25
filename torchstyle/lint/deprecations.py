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
    """One deprecated (or removed) API.

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
        params: The old API's parameters that can be passed by position, in order. A fix
            passes every positional argument after the first ``keep`` by keyword, under
            the old API's name for it, so that it cannot land in another parameter of the
            new API; a call with more positional arguments than this gets no fix.
        keep: How many leading positional arguments mean the same in the new API and stay
            positional.
        same_signature: The new API takes exactly the old one's arguments: positional
            arguments stay as they are.
        removed: The API no longer works in current torch (it raises); ``since`` is when it
            was deprecated.
    """

    name: str
    since: str
    replacement: str
    note: str
    fix: FixKind = "none"
    target: str = ""
    argument: str = ""
    safe: bool = False
    params: tuple[str, ...] = ()
    keep: int = 0
    same_signature: bool = False
    removed: bool = False


_GATHER = ("output_tensor", "input_tensor", "group", "async_op")
_SCATTER = ("output", "input", "op", "group", "async_op")
_GATHER_ONE = ("tensor", "gather_tensor", "dst", "group", "async_op", "group_dst")
_AUTOCAST = ("enabled", "dtype", "cache_enabled")
_SCALER = ("init_scale", "growth_factor", "backoff_factor", "growth_interval", "enabled")
#: functorch's functions whose torch.func namesakes have the same signature.
_FUNCTORCH = (
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
_LINALG_NOTE = "deprecated in favour of torch.linalg"
_REMOVED_LINALG = (
    ("solve", "torch.linalg.solve(A, B)", "arguments reversed; no LU factorization returned"),
    ("lstsq", "torch.linalg.lstsq(A, B)", "arguments reversed"),
    ("symeig", "torch.linalg.eigh / torch.linalg.eigvalsh", "lower triangle by default"),
    ("eig", "torch.linalg.eig / torch.linalg.eigvals", "complex results"),
    ("matrix_rank", "torch.linalg.matrix_rank", "`symmetric` is now `hermitian`"),
    ("qr", "torch.linalg.qr(A, mode=...)", "`some=False` is `mode='complete'`"),
    ("cholesky", "torch.linalg.cholesky(A) (`.mH` for upper=True)", ""),
)
_TV_IO = (
    "read_image",
    "decode_image",
    "decode_jpeg",
    "decode_png",
    "decode_webp",
    "decode_avif",
    "decode_heic",
    "decode_gif",
    "encode_jpeg",
    "encode_png",
    "write_jpeg",
    "write_png",
    "read_file",
    "write_file",
)


def _renamed(
    name: str, since: str, target: str, note: str = "", *, params: tuple[str, ...], keep: int = 0
) -> Deprecation:
    """An API whose replacement takes the same arguments: a safe rename."""
    return Deprecation(
        name, since, target, note, "rename", target, safe=True, params=params, keep=keep
    )


TABLE: tuple[Deprecation, ...] = (
    *(
        Deprecation(
            f"torch.{device}.amp.{api}",
            "2.4",
            f'torch.amp.{api}("{device}", ...)',
            "",
            "device-first",
            f"torch.amp.{api}",
            f'"{device}"',
            safe=True,
            params=params,
        )
        for device in ("cuda", "cpu")
        for api, params in (("autocast", _AUTOCAST), ("GradScaler", _SCALER))
    ),
    Deprecation("torch.cuda.amp.custom_fwd", "2.4", 'torch.amp.custom_fwd(device_type="cuda")', ""),
    Deprecation("torch.cuda.amp.custom_bwd", "2.4", 'torch.amp.custom_bwd(device_type="cuda")', ""),
    Deprecation(
        "torch.testing.assert_allclose",
        "1.12",
        "torch.testing.assert_close",
        "to be removed; assert_close also checks dtypes",
        "rename",
        "torch.testing.assert_close",
        params=("actual", "expected", "rtol", "atol", "equal_nan", "msg"),
        keep=2,
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
        params=("module", "name", "dim"),
        keep=1,
    ),
    Deprecation(
        "torch.nn.utils.stateless.functional_call",
        "2.0",
        "torch.func.functional_call",
        "",
        "rename",
        "torch.func.functional_call",
        params=("module", "parameters_and_buffers", "args", "kwargs"),
        keep=2,
    ),
    _renamed(
        "torch.nn.utils.clip_grad_norm",
        "1.0",
        "torch.nn.utils.clip_grad_norm_",
        "it calls clip_grad_norm_",
        params=("parameters", "max_norm", "norm_type", "error_if_nonfinite", "foreach"),
        keep=2,
    ),
    Deprecation(
        "torch.chain_matmul",
        "1.9",
        "torch.linalg.multi_dot([...])",
        "to be removed; multi_dot takes a list",
    ),
    Deprecation("torch.lu", "1.13", "torch.linalg.lu_factor", ""),
    Deprecation("torch.norm", "1.9", "torch.linalg.vector_norm / matrix_norm / norm", _LINALG_NOTE),
    Deprecation(
        "torch.svd",
        "1.9",
        "torch.linalg.svd",
        "`some` becomes `full_matrices`; V is returned transposed",
    ),
    Deprecation(
        "torch.lu_solve", "1.13", "torch.linalg.lu_solve(LU, pivots, B)", "arguments reordered"
    ),
    Deprecation(
        "torch.triangular_solve", "1.11", "torch.linalg.solve_triangular", "arguments reordered"
    ),
    Deprecation(
        "torch.range",
        "1.0",
        "torch.arange (its end is exclusive)",
        "inconsistent with Python's range: the end is included and the result is float",
    ),
    _renamed(
        "torch.ger", "1.8", "torch.outer", "an alias of outer", params=("input", "vec2"), keep=2
    ),
    *(
        Deprecation(f"torch.{api}", "1.9", replacement, note, removed=True)
        for api, replacement, note in _REMOVED_LINALG
    ),
    _renamed(
        "torch.nn.functional.upsample",
        "1.0",
        "torch.nn.functional.interpolate",
        "it calls interpolate with the same arguments",
        params=("input", "size", "scale_factor", "mode", "align_corners"),
        keep=1,
    ),
    *(
        Deprecation(
            f"torch.nn.{cls}", "1.0", "torch.nn.functional.interpolate / torch.nn.Upsample", ""
        )
        for cls in ("UpsamplingNearest2d", "UpsamplingBilinear2d")
    ),
    _renamed(
        "torch.nn.NLLLoss2d",
        "1.0",
        "torch.nn.NLLLoss",
        "a drop-in replacement",
        params=("weight", "size_average", "ignore_index", "reduce", "reduction"),
    ),
    Deprecation("torch.nn.Container", "1.0", "torch.nn.Module", "subclass Module instead"),
    _renamed(
        "torch.cuda.memory_cached",
        "1.4",
        "torch.cuda.memory_reserved",
        "renamed",
        params=("device",),
    ),
    _renamed(
        "torch.cuda.max_memory_cached",
        "1.4",
        "torch.cuda.max_memory_reserved",
        "renamed",
        params=("device",),
    ),
    Deprecation(
        "torch.utils._pytree._register_pytree_node",
        "2.2",
        "torch.utils._pytree.register_pytree_node",
        "to_str_fn/maybe_from_str_fn are gone",
    ),
    Deprecation("torch.library.impl_abstract", "2.4", "torch.library.register_fake", "renamed"),
    Deprecation(
        "torch.distributed.checkpoint.save_state_dict",
        "2.2",
        "torch.distributed.checkpoint.save",
        "",
    ),
    Deprecation(
        "torch.distributed.checkpoint.load_state_dict",
        "2.2",
        "torch.distributed.checkpoint.load",
        "",
    ),
    *(
        _renamed(
            f"torch.distributed.{old}",
            since,
            f"torch.distributed.{new}",
            note,
            params=params,
            keep=2,
        )
        for old, since, new, note, params in (
            ("_all_gather_base", "2.0", "all_gather_into_tensor", "a private function", _GATHER),
            (
                "_reduce_scatter_base",
                "2.0",
                "reduce_scatter_tensor",
                "a private function",
                _SCATTER,
            ),
            ("all_gather_into_tensor", "2.14", "all_gather_single", "", _GATHER),
            ("reduce_scatter_tensor", "2.14", "reduce_scatter_single", "", _SCATTER),
            ("gather_into_tensor", "2.14", "gather_single", "", _GATHER_ONE),
        )
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
            same_signature=True,
        )
        for api in _FUNCTORCH
    ),
    *(
        Deprecation(
            f"torchvision.transforms.v2{module}.{api}",
            "2.1",  # torchvision 0.16
            replacement,
            "torchvision 0.16",
        )
        for module, api, replacement in (
            ("", "ToTensor", "v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])"),
            (".functional", "to_tensor", "v2.functional.to_image + to_dtype(..., scale=True)"),
            (".functional", "get_image_size", "v2.functional.get_size"),
        )
    ),
    *(
        Deprecation(
            f"torchvision.io.{api}",
            "2.14",  # torchvision 0.29
            "TorchCodec's decoders and encoders",
            "torchvision 0.29; its image decoding and encoding will be removed",
        )
        for api in _TV_IO
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

#: torchvision's model builders (``torchvision.models.list_models()``; the quantized ones
#: also without their prefix, as ``torchvision.models.quantization`` names them). Since
#: torchvision 0.13 they take keyword arguments only: ``resnet50(True)`` is the old
#: ``pretrained`` passed by position.
TORCHVISION_BUILDERS = frozenset(
    {
        "alexnet",
        "convnext_base",
        "convnext_large",
        "convnext_small",
        "convnext_tiny",
        "deeplabv3_mobilenet_v3_large",
        "deeplabv3_resnet101",
        "deeplabv3_resnet50",
        "densenet121",
        "densenet161",
        "densenet169",
        "densenet201",
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b2",
        "efficientnet_b3",
        "efficientnet_b4",
        "efficientnet_b5",
        "efficientnet_b6",
        "efficientnet_b7",
        "efficientnet_v2_l",
        "efficientnet_v2_m",
        "efficientnet_v2_s",
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "fasterrcnn_mobilenet_v3_large_fpn",
        "fasterrcnn_resnet50_fpn",
        "fasterrcnn_resnet50_fpn_v2",
        "fcn_resnet101",
        "fcn_resnet50",
        "fcos_resnet50_fpn",
        "googlenet",
        "inception_v3",
        "keypointrcnn_resnet50_fpn",
        "lraspp_mobilenet_v3_large",
        "maskrcnn_resnet50_fpn",
        "maskrcnn_resnet50_fpn_v2",
        "maxvit_t",
        "mc3_18",
        "mnasnet0_5",
        "mnasnet0_75",
        "mnasnet1_0",
        "mnasnet1_3",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "mvit_v1_b",
        "mvit_v2_s",
        "quantized_googlenet",
        "quantized_inception_v3",
        "quantized_mobilenet_v2",
        "quantized_mobilenet_v3_large",
        "quantized_resnet18",
        "quantized_resnet50",
        "quantized_resnext101_32x8d",
        "quantized_resnext101_64x4d",
        "quantized_shufflenet_v2_x0_5",
        "quantized_shufflenet_v2_x1_0",
        "quantized_shufflenet_v2_x1_5",
        "quantized_shufflenet_v2_x2_0",
        "r2plus1d_18",
        "r3d_18",
        "raft_large",
        "raft_small",
        "regnet_x_16gf",
        "regnet_x_1_6gf",
        "regnet_x_32gf",
        "regnet_x_3_2gf",
        "regnet_x_400mf",
        "regnet_x_800mf",
        "regnet_x_8gf",
        "regnet_y_128gf",
        "regnet_y_16gf",
        "regnet_y_1_6gf",
        "regnet_y_32gf",
        "regnet_y_3_2gf",
        "regnet_y_400mf",
        "regnet_y_800mf",
        "regnet_y_8gf",
        "resnet101",
        "resnet152",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "resnext50_32x4d",
        "retinanet_resnet50_fpn",
        "retinanet_resnet50_fpn_v2",
        "s3d",
        "shufflenet_v2_x0_5",
        "shufflenet_v2_x1_0",
        "shufflenet_v2_x1_5",
        "shufflenet_v2_x2_0",
        "squeezenet1_0",
        "squeezenet1_1",
        "ssd300_vgg16",
        "ssdlite320_mobilenet_v3_large",
        "swin3d_b",
        "swin3d_s",
        "swin3d_t",
        "swin_b",
        "swin_s",
        "swin_t",
        "swin_v2_b",
        "swin_v2_s",
        "swin_v2_t",
        "vgg11",
        "vgg11_bn",
        "vgg13",
        "vgg13_bn",
        "vgg16",
        "vgg16_bn",
        "vgg19",
        "vgg19_bn",
        "vit_b_16",
        "vit_b_32",
        "vit_h_14",
        "vit_l_16",
        "vit_l_32",
        "wide_resnet101_2",
        "wide_resnet50_2",
    }
)
TORCHVISION_BUILDERS |= {n.removeprefix("quantized_") for n in TORCHVISION_BUILDERS}

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
