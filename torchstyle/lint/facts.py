"""What torchstyle knows about PyTorch code without running it: names, patterns, heuristics.

Shared by the checker and the rules. Everything here is a pure function of AST nodes and
fully-qualified names (``torch.nn.functional.cross_entropy``), resolved through the file's
imports by :meth:`torchstyle.lint.context.FileContext.qualname`.
"""

from __future__ import annotations

import ast
import functools
import os
import re

from torchstyle.lint import files

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


# -- what a project saves with torch.save --------------------------------------------------

#: Receivers whose ``.save(obj, f)`` pickles ``obj`` like ``torch.save`` does.
_SAVERS = frozenset({"torch", "accelerator", "fabric", "xm"})
#: Names of objects that ``torch.load(..., weights_only=True)`` refuses: parsed arguments,
#: configurations, namespaces (``args``, ``self.hparams``, ``train_cfg``, ``opt``).
_OBJECT_NAME = re.compile(
    r"(?:^|_)(?:args|argv|opts?|options|config|configs|cfg|conf|hparams|hyper_?params|hp"
    r"|namespace|ns|flags|settings|params_dict)$",
    re.I,
)
#: Objects of these kinds are pickled whole when saved without ``.state_dict()``.
_WHOLE_OBJECT_NAME = re.compile(r"optim|^opt_|sched|scaler|ema$|^ema_", re.I)
#: Calls whose result is plain data (tensors, numbers, strings, containers of them).
_PLAIN_CALLS = frozenset(
    {
        "state_dict",
        "item",
        "tolist",
        "detach",
        "cpu",
        "clone",
        "float",
        "half",
        "int",
        "str",
        "len",
        "vars",
        "round",
        "max",
        "min",
        "sum",
        "get_rng_state",
        "get_state",
        "getstate",
        "copy",
        "keys",
    }
)


class SaveFacts:
    """What one file's ``torch.save`` calls hold, as far as its code tells.

    Attributes:
        objects: Some save holds an object that ``weights_only=True`` refuses (a namespace,
            a configuration, a whole module or optimizer, a numpy array), or something the
            code does not show.
        savers: Functions that pass one of their parameters to ``torch.save``: name ->
            (position, parameter name); their callers say what is saved.
    """

    def __init__(self) -> None:
        self.objects = False
        self.savers: dict[str, tuple[int, str]] = {}


def _assignments(body: ast.AST) -> dict[str, list[ast.expr]]:
    """Every value a name gets in ``body``: assignments, ``x[k] = v``, ``x.update(...)``."""
    found: dict[str, list[ast.expr]] = {}
    for node in ast.walk(body):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(node.value)
                elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                    found.setdefault(target.value.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            if isinstance(node.target, ast.Name):
                found.setdefault(node.target.id, []).append(node.value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("update", "setdefault", "append")
            and isinstance(node.func.value, ast.Name)
        ):
            values = [*node.args, *(kw.value for kw in node.keywords)]
            found.setdefault(node.func.value.id, []).extend(values)
    return found


def _holds_objects(
    node: ast.expr, values: dict[str, list[ast.expr]], seen: set[str], params: list[str]
) -> bool:
    """Whether saving ``node`` pickles an object that ``weights_only=True`` refuses.

    ``values`` are the assignments of the function (or module) around the save; a name
    that is one of ``params`` is left to the callers (not an object here).
    """
    if isinstance(node, ast.Constant):
        return False
    if isinstance(node, ast.Dict):
        return any(_holds_objects(v, values, seen, params) for v in node.values)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return any(_holds_objects(v, values, seen, params) for v in node.elts)
    if isinstance(node, ast.DictComp):
        return _holds_objects(node.value, values, seen, params)
    if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
        return _holds_objects(node.elt, values, seen, params)
    if isinstance(node, ast.BinOp | ast.UnaryOp | ast.Compare | ast.BoolOp | ast.JoinedStr):
        return False
    if isinstance(node, ast.Call):
        return _call_holds_objects(node, values, seen, params)
    if isinstance(node, ast.Subscript):
        return _holds_objects(node.value, values, seen, params)
    if isinstance(node, ast.Attribute):
        return bool(_OBJECT_NAME.search(node.attr)) or _is_whole_object(node.attr)
    if isinstance(node, ast.Name):
        return _name_holds_objects(node.id, values, seen, params)
    return True  # lambdas, conditionals, ...: the code does not show what is saved


def _is_whole_object(name: str) -> bool:
    return is_model_name(name) or bool(_WHOLE_OBJECT_NAME.search(name))


def _name_holds_objects(
    name: str, values: dict[str, list[ast.expr]], seen: set[str], params: list[str]
) -> bool:
    if _OBJECT_NAME.search(name) or (_is_whole_object(name) and name not in values):
        return True
    if name in seen or name in params:
        return False
    assigned = values.get(name)
    if not assigned:
        return False  # a loop variable, a global counter: epochs and steps are numbers
    seen = seen | {name}
    return any(_holds_objects(v, values, seen, params) for v in assigned)


def _call_holds_objects(
    node: ast.Call, values: dict[str, list[ast.expr]], seen: set[str], params: list[str]
) -> bool:
    func = node.func
    name = last_name(func) or ""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        if func.value.id in ("np", "numpy"):
            return True  # numpy arrays need add_safe_globals under weights_only
        if func.value.id == "torch":
            return False
    if name in _PLAIN_CALLS or name in TENSOR_FACTORIES:
        return False
    if name in ("dict", "OrderedDict"):
        items = [*node.args, *(kw.value for kw in node.keywords)]
        return any(_holds_objects(v, values, seen, params) for v in items)
    if name == "deepcopy" and node.args:
        return _holds_objects(node.args[0], values, seen, params)
    return name[:1].isupper() or name in ("parse_args", "parse_known_args", "load", "create")


def _save_payload(call: ast.Call, torch_names: set[str]) -> ast.expr | None:
    """The object ``call`` saves, if it is ``torch.save(obj, f)`` (or an alias of it)."""
    func = call.func
    if isinstance(func, ast.Attribute):
        if func.attr != "save" or last_name(func.value) not in (_SAVERS | torch_names):
            return None
    elif not (isinstance(func, ast.Name) and func.id in torch_names and func.id != "torch"):
        return None
    if call.args:
        return call.args[0]
    kw = keyword(call, "obj")
    return kw.value if kw is not None else None


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of ``scope``'s body, without those of functions and classes defined in it."""
    out: list[ast.AST] = []
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        out.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))
    return out


def _parameters(scope: ast.AST) -> list[str]:
    if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
        return []
    args = scope.args
    return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]


def _scopes(tree: ast.Module) -> list[ast.AST]:
    found: list[ast.AST] = [tree]
    found += [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return found


def save_facts(
    tree: ast.Module,
    walked: tuple[list[ast.Call], list[ast.FunctionDef | ast.AsyncFunctionDef], set[str]]
    | None = None,
) -> SaveFacts:
    """What the ``torch.save`` calls of one file hold (see :class:`SaveFacts`).

    Each save is given to the innermost function around it (by line span), and only
    functions that save are read further. ``walked``: the file's ``save`` calls, function
    definitions and names bound to ``torch``/``torch.save``, when the checker's walk has
    collected them already (then the tree is not walked again).
    """
    result = SaveFacts()
    if walked is not None:
        candidates, functions, torch_names = walked
        return _judge_saves(tree, result, candidates, functions, torch_names | {"torch"})
    torch_names = {"torch"}
    functions = []
    candidates = []
    for node in ast.walk(tree):
        cls = node.__class__
        if cls is ast.Call:
            func = node.func  # type: ignore[attr-defined]
            if (func.__class__ is ast.Attribute and func.attr == "save") or (
                func.__class__ is ast.Name
            ):
                candidates.append(node)  # type: ignore[arg-type]
        elif cls is ast.FunctionDef or cls is ast.AsyncFunctionDef:
            functions.append(node)  # type: ignore[arg-type]
        elif cls is ast.Import:
            torch_names.update(
                a.asname
                for a in node.names  # type: ignore[attr-defined]
                if a.name == "torch" and a.asname
            )
        elif cls is ast.ImportFrom and node.module == "torch":  # type: ignore[attr-defined]
            torch_names.update(
                a.asname or a.name
                for a in node.names  # type: ignore[attr-defined]
                if a.name == "save"
            )
    return _judge_saves(tree, result, candidates, functions, torch_names)


def _judge_saves(
    tree: ast.Module,
    result: SaveFacts,
    candidates: list[ast.Call],
    functions: list[ast.FunctionDef | ast.AsyncFunctionDef],
    torch_names: set[str],
) -> SaveFacts:
    by_scope: dict[int, tuple[ast.AST, list[ast.expr]]] = {}
    for call in candidates:
        payload = _save_payload(call, torch_names)
        if payload is None:
            continue
        owner: ast.AST = _innermost_function(functions, call) or tree
        by_scope.setdefault(id(owner), (owner, []))[1].append(payload)
    for scope, saves in by_scope.values():
        values = _assignments(scope)
        params = _parameters(scope)
        for payload in saves:
            if isinstance(payload, ast.Name) and payload.id in params and payload.id not in values:
                assert isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef)
                index = params.index(payload.id)
                if params[0] in ("self", "cls"):
                    index -= 1  # called as a method: the receiver is not an argument
                result.savers[scope.name] = (index, payload.id)
            elif _holds_objects(payload, values, set(), params):
                result.objects = True
    return result


def _innermost_function(
    functions: list[ast.FunctionDef | ast.AsyncFunctionDef], call: ast.Call
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The innermost function whose body holds ``call`` (by line span), if any."""
    best = None
    line = call.lineno
    for function in functions:
        if function.body[0].lineno <= line <= (function.end_lineno or 0) and (
            best is None or function.lineno >= best.lineno
        ):
            best = function
    return best


def _saver_arguments_hold_objects(
    tree: ast.Module, savers: dict[str, tuple[int, str]], called: set[str]
) -> bool:
    """Whether a call of a saver function in ``tree`` passes it an object to save.

    Adds the savers called in ``tree`` to ``called``.
    """
    for scope in _scopes(tree):
        values: dict[str, list[ast.expr]] | None = None
        for node in _own_nodes(scope):
            if not isinstance(node, ast.Call):
                continue
            name = last_name(node.func)
            if name not in savers:
                continue
            called.add(name)
            index, param = savers[name]
            kw = keyword(node, param)
            if kw is not None:
                arg: ast.expr = kw.value
            elif 0 <= index < len(node.args) and not any(
                isinstance(a, ast.Starred) for a in node.args[: index + 1]
            ):
                arg = node.args[index]
            else:
                return True  # passed through *args/**kwargs: the code does not show it
            if values is None:
                values = _assignments(scope)
            if _holds_objects(arg, values, set(), []):
                return True
    return False


def saves_objects(trees: list[ast.Module]) -> bool:
    """Whether the code in ``trees`` (one project) saves anything but plain data.

    True when a ``torch.save`` holds a namespace, a configuration, a whole module or
    optimizer, a numpy array or something the code does not show; when a function that
    saves its argument is called with such an object, or never called (its callers are
    elsewhere); and when Lightning's ``save_hyperparameters()`` puts hyperparameters in
    the checkpoints. Then ``torch.load(..., weights_only=True)`` may refuse the project's
    own checkpoints.
    """
    savers: dict[str, tuple[int, str]] = {}
    for tree in trees:
        facts = save_facts(tree)
        if facts.objects:
            return True
        savers.update(facts.savers)
    for tree in trees:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "save_hyperparameters"
            ):
                return True
    if not savers:
        return False
    called: set[str] = set()
    if any(_saver_arguments_hold_objects(tree, savers, called) for tree in trees):
        return True
    return bool(set(savers) - called)


#: Files whose presence makes a folder a project's root.
_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
#: A project with more files than this is read only this far (the fact is about the code
#: around a training script, not a monorepo).
_PROJECT_FILES = 5000


def project_root(path: str) -> str | None:
    """The project folder of the file at ``path``: the nearest with a pyproject.toml,
    setup.py, setup.cfg or .git; else the file's own folder. None when no such file exists.
    """
    if not os.path.isfile(path):
        return None
    folder = os.path.dirname(os.path.abspath(path))
    current = folder
    while True:
        if any(os.path.exists(os.path.join(current, m)) for m in _PROJECT_MARKERS):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return folder
        current = parent


@functools.lru_cache(maxsize=16)
def project_saves_objects(root: str) -> bool:
    """:func:`saves_objects` over the Python files of the project in folder ``root``.

    Computed once per project and process; only files that mention ``save`` (and the
    callers of the functions that save) are parsed.
    """
    patterns = files.compile_patterns(list(files.DEFAULT_EXCLUDES), root)
    texts: list[str] = []
    for count, path in enumerate(files.iter_python_files(root, patterns)):
        if count >= _PROJECT_FILES:
            break
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
        except OSError:
            continue
    trees = []
    for text in texts:
        if "save" in text:
            try:
                trees.append(ast.parse(text))
            except (SyntaxError, ValueError, RecursionError):
                continue
    savers: dict[str, tuple[int, str]] = {}
    for tree in trees:
        savers.update(save_facts(tree).savers)
    for text in texts:  # the callers of savers that do not mention save themselves
        if "save" not in text and any(f"{name}(" in text for name in savers):
            try:
                trees.append(ast.parse(text))
            except (SyntaxError, ValueError, RecursionError):
                continue
    return saves_objects(trees)
