"""What torchstyle knows about PyTorch code without running it: names, patterns, heuristics.

Shared by the checker and the rules. Everything here is a pure function of AST nodes and
fully-qualified names (``torch.nn.functional.cross_entropy``), resolved through the file's
imports by :meth:`torchstyle.lint.context.FileContext.qualname`.
"""

from __future__ import annotations

import ast
import re

#: Bases that make a class an ``nn.Module`` (besides any CapWords name under ``torch.nn.``).
MODULE_BASES = frozenset(
    {
        "torch.nn.Module",
        "torch.nn.modules.module.Module",
        "torch.jit.ScriptModule",
        "pytorch_lightning.LightningModule",
        "pytorch_lightning.core.LightningModule",
        "lightning.LightningModule",
        "lightning.pytorch.LightningModule",
        "lightning.pytorch.core.LightningModule",
    }
)

#: Bases that make a class a dataset.
DATASET_BASES = frozenset(
    {
        "torch.utils.data.Dataset",
        "torch.utils.data.IterableDataset",
        "torch.utils.data.dataset.Dataset",
        "torch.utils.data.dataset.IterableDataset",
        "torchvision.datasets.VisionDataset",
        "torchvision.datasets.vision.VisionDataset",
        "torchvision.datasets.ImageFolder",
        "torchvision.datasets.DatasetFolder",
    }
)

#: ``torch.nn`` names that are CapWords but not modules.
_NN_NON_MODULES = frozenset({"Parameter", "ParameterList", "ParameterDict", "Buffer", "init"})

#: ``torch.nn.functional`` losses: their result is a loss tensor.
LOSS_FUNCTIONS = frozenset(
    {
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "cosine_embedding_loss",
        "cross_entropy",
        "ctc_loss",
        "gaussian_nll_loss",
        "hinge_embedding_loss",
        "huber_loss",
        "kl_div",
        "l1_loss",
        "margin_ranking_loss",
        "mse_loss",
        "multi_margin_loss",
        "multilabel_margin_loss",
        "multilabel_soft_margin_loss",
        "nll_loss",
        "poisson_nll_loss",
        "smooth_l1_loss",
        "soft_margin_loss",
        "triplet_margin_loss",
        "triplet_margin_with_distance_loss",
    }
)

#: ``torch.<name>(...)`` calls that return a tensor.
TENSOR_FACTORIES = frozenset(
    {
        "arange",
        "as_tensor",
        "bmm",
        "cat",
        "clamp",
        "empty",
        "empty_like",
        "exp",
        "eye",
        "from_numpy",
        "full",
        "full_like",
        "linspace",
        "log",
        "matmul",
        "mm",
        "ones",
        "ones_like",
        "rand",
        "rand_like",
        "randint",
        "randn",
        "randn_like",
        "randperm",
        "sigmoid",
        "softmax",
        "sqrt",
        "stack",
        "tanh",
        "tensor",
        "where",
        "zeros",
        "zeros_like",
    }
)

#: Context managers and decorators that turn autograd off (or manage it explicitly).
GRAD_OFF = frozenset(
    {
        "torch.no_grad",
        "torch.inference_mode",
        "torch.set_grad_enabled",
        "torch.autograd.no_grad",
        "torch.autograd.inference_mode",
        "torch.autograd.set_grad_enabled",
        "torch.autograd.grad_mode.no_grad",
        "torch.autograd.grad_mode.inference_mode",
        "torch.autograd.grad_mode.set_grad_enabled",
    }
)

#: Receivers of ``.backward(loss)`` that take the loss as an argument (Accelerate, DeepSpeed).
_BACKWARD_BY_ARGUMENT = re.compile(r"accelerator|fabric|engine|trainer|manual_backward", re.I)
_OPTIMIZER_NAME = re.compile(r"optim|^opt(?:_\w+|[gd]|\d*)$|_opt$|engine", re.I)
_SCALER_NAME = re.compile(r"scaler", re.I)
_MODEL_NAME = re.compile(
    r"model|(?:^|_)net|net(?:[gd]|_\w+)?$|encoder|decoder|classifier|generator|discriminator"
    r"|backbone|^[gd]$|^critic$",
    re.I,
)
#: Identifiers of evaluation data: val_loader, testloader, eval_dataloader, valid_ds, ...
EVAL_DATA_NAME = re.compile(
    r"(?:^|_)(?:val|valid|validation|test|testing|eval|evaluation|dev)"
    r"(?:$|_|loader|dataloader|set|data|ds|dl|iter|batches|samples)",
    re.I,
)
#: Function names of evaluation routines: evaluate, validate_epoch, predict_batch, test, ...
#: (``test_*`` names other than test_epoch/test_model are unit tests, not evaluation.)
EVAL_FUNCTION_NAME = re.compile(
    r"^_*(?:evaluate|evaluation|eval|validate|validation|val|predict|inference|infer)(?:_|$)"
    r"|^test(?:_epoch|_model|_loop|_one_epoch)?$",
    re.I,
)


def last_name(node: ast.expr) -> str | None:
    """The rightmost identifier of ``a.b.c`` (``c``), of ``a`` or of ``a.b()`` (``b``)."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def is_nn_module_qualname(qualname: str) -> bool:
    """Whether ``qualname`` names an ``nn.Module`` class (``torch.nn.Conv2d``, ...)."""
    if qualname in MODULE_BASES:
        return True
    if qualname.startswith("torch.nn."):
        last = qualname.rsplit(".", 1)[1]
        return last[:1].isupper() and last not in _NN_NON_MODULES
    return False


def is_module_factory(qualname: str) -> bool:
    """Whether calling ``qualname`` returns an ``nn.Module``: constructors and model zoos."""
    if is_nn_module_qualname(qualname):
        return True
    if qualname.startswith("torchvision.models."):
        last = qualname.rsplit(".", 1)[1]
        return last[:1].islower() and not last.startswith(("get_", "list_"))
    return qualname in {"timm.create_model", "torch.hub.load"}


def is_loss_module_qualname(qualname: str) -> bool:
    """Whether ``qualname`` is a loss module class (``torch.nn.CrossEntropyLoss``)."""
    return qualname.startswith("torch.nn.") and qualname.endswith("Loss")


def is_optimizer_qualname(qualname: str) -> bool:
    """Whether ``qualname`` is an optimizer class (``torch.optim.Adam``)."""
    if not qualname.startswith("torch.optim."):
        return False
    last = qualname.rsplit(".", 1)[1]
    return last[:1].isupper() and "Scheduler" not in last and "LR" not in last


def is_optimizer_step(func: ast.Attribute) -> bool:
    """Whether ``func`` (the callee ``x.step``) is an optimizer or GradScaler step."""
    receiver = last_name(func.value)
    if receiver is None:
        return False
    return bool(_OPTIMIZER_NAME.search(receiver) or _SCALER_NAME.search(receiver))


def backward_takes_argument(func: ast.Attribute) -> bool:
    """Whether ``func`` is ``accelerator.backward``-style (the loss is the argument)."""
    receiver = last_name(func.value)
    return receiver is not None and bool(_BACKWARD_BY_ARGUMENT.search(receiver))


def is_model_name(name: str) -> bool:
    """Whether an identifier names a network by convention (model, net, netG, encoder, ...)."""
    return bool(_MODEL_NAME.search(name))


def names_in(node: ast.AST) -> list[str]:
    """Every identifier loaded in ``node``."""
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]


def loss_roots(node: ast.expr) -> list[str]:
    """Names of the tensors a backward pass starts from: ``loss`` in ``(loss / k).backward()``.

    Follows ``scaler.scale(x)``, ``x.sum()``/``x.mean()``, sums of losses, and products whose
    other factor is a constant or an obvious weight; never returns plain counters.
    """
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add | ast.Sub):
            return loss_roots(node.left) + loss_roots(node.right)
        if isinstance(node.op, ast.Mult | ast.Div):
            left, right = node.left, node.right
            if isinstance(right, ast.Constant) or isinstance(node.op, ast.Div):
                return loss_roots(left)
            if isinstance(left, ast.Constant):
                return loss_roots(right)
            return [n for n in loss_roots(left) + loss_roots(right) if "loss" in n.lower()]
        return []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        attr = node.func.attr
        if attr == "scale" and node.args:
            return loss_roots(node.args[0])
        if attr in {"sum", "mean", "float", "double", "squeeze"}:
            return loss_roots(node.func.value)
    return []


def is_number_literal(node: ast.expr) -> bool:
    """Whether ``node`` is an int/float literal (``-3``, ``1e-3``), not a bool."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    )


def is_true(node: ast.expr | None) -> bool:
    """Whether ``node`` is the literal ``True``."""
    return isinstance(node, ast.Constant) and node.value is True


def is_false(node: ast.expr | None) -> bool:
    """Whether ``node`` is the literal ``False``."""
    return isinstance(node, ast.Constant) and node.value is False


def keyword(call: ast.Call, name: str) -> ast.keyword | None:
    """The keyword argument ``name=`` of ``call``, if given."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw
    return None


def reduces_to_none(call: ast.Call) -> bool:
    """Whether a loss call passes ``reduction="none"`` (one loss per element)."""
    kw = keyword(call, "reduction")
    return kw is not None and isinstance(kw.value, ast.Constant) and kw.value.value == "none"


def has_star_kwargs(call: ast.Call) -> bool:
    """Whether ``call`` passes ``**kwargs`` (any keyword might be in there)."""
    return any(kw.arg is None for kw in call.keywords)


def eval_loop_marker(iter_names: list[str], function_name: str | None) -> str | None:
    """Why a loop looks like evaluation: ``over `val_loader` `` or ``in `evaluate()` ``; else None.

    Args:
        iter_names: Identifiers in the loop's iterable.
        function_name: Name of the enclosing function (None at module level).
    """
    for name in iter_names:
        if EVAL_DATA_NAME.search(name):
            return f"over `{name}`"
    if function_name is not None and EVAL_FUNCTION_NAME.search(function_name):
        return f"in `{function_name}()`"
    return None


def is_test_function(name: str, path: str, imports_test_framework: bool) -> bool:
    """Whether a function is a unit test (pytest/unittest), not an evaluation routine."""
    if not name.startswith("test_"):
        return False
    base = path.replace("\\", "/").rsplit("/", 1)[-1]
    return imports_test_framework or base.startswith("test_") or base.endswith("_test.py")


def mode_call(node: ast.Call) -> str | None:
    """``"train"`` for ``m.train()``, ``"eval"`` for ``m.eval()``/``m.train(False)``/``m.train(flag)``."""
    func = node.func
    if not isinstance(func, ast.Attribute):
        return None
    if func.attr == "eval" and not node.args and not node.keywords:
        return "eval"
    if func.attr == "train":
        arg = node.args[0] if node.args else (node.keywords[0].value if node.keywords else None)
        return "train" if arg is None or is_true(arg) else "eval"
    return None


_ERROR_CALLS = frozenset({"_assert", "warn", "warning", "error", "exception"})


def reports_error(body: list[ast.stmt]) -> bool:
    """Whether a block raises, asserts or warns (it builds an error message, not a result)."""
    for stmt in body:
        if isinstance(stmt, ast.Raise | ast.Assert):
            return True
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and last_name(stmt.value.func) in _ERROR_CALLS
        ):
            return True
    return False


_SHORT_LOOP = 100


def short_fixed_loop(node: ast.AST) -> bool:
    """Whether ``node`` is ``for ... in range(n)`` with a literal ``n`` of at most 100 steps."""
    if not isinstance(node, ast.For) or not isinstance(node.iter, ast.Call):
        return False
    call = node.iter
    if getattr(call.func, "id", None) != "range" or not call.args or call.keywords:
        return False
    values = [a.value for a in call.args if isinstance(a, ast.Constant) and type(a.value) is int]
    if len(values) != len(call.args):
        return False
    start, stop = (0, values[0]) if len(values) == 1 else (values[0], values[1])
    step = values[2] if len(values) == 3 and values[2] else 1
    return 0 <= (stop - start) // step <= _SHORT_LOOP
