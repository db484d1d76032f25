"""What a project saves with ``torch.save``: the project fact behind TS502's fix.

``torch.load(..., weights_only=True)`` refuses pickled objects other than tensors, numbers,
strings and containers of them. Adding it is safe only when the project's own checkpoints
hold nothing else; :func:`project_saves_objects` tells, once per project.
"""

from __future__ import annotations

import ast
import functools
import itertools
import os
import re
from dataclasses import dataclass, field

from torchstyle.lint import files
from torchstyle.lint.facts import TENSOR_FACTORIES, is_model_name, keyword, last_name

#: A call of ``save(...)``/``x.save(...)`` or ``save_hyperparameters``: a file with none
#: of them saves nothing itself (``save_checkpoint(...)`` is found as a saver's caller).
_SAVE_CALL = re.compile(r"\bsave\s*\(|save_hyperparameters")
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


@dataclass(eq=False)
class _Scope:
    """A module or function body: its parameters, its calls, what its names are given."""

    node: ast.AST
    params: list[str]
    calls: list[ast.Call] = field(default_factory=list)
    values: dict[str, list[ast.expr]] = field(default_factory=dict)

    def give(self, name: str, value: ast.expr) -> None:
        self.values.setdefault(name, []).append(value)


@dataclass(eq=False)
class _Index:
    """One pass over a file: its scopes, the names bound to ``torch``/``torch.save``, and
    whether it calls Lightning's ``save_hyperparameters()``."""

    scopes: list[_Scope]
    torch_names: set[str]
    hyperparameters: bool


def _parameters(node: ast.AST) -> list[str]:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return []
    args = node.args
    return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]


def _note(node: ast.AST, scope: _Scope, index: _Index) -> None:
    """Records what ``node`` tells about saves in ``scope``."""
    if isinstance(node, ast.Call):
        scope.calls.append(node)
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.attr in ("update", "setdefault", "append")
        ):
            for value in [*node.args, *(kw.value for kw in node.keywords)]:
                scope.give(func.value.id, value)
        if isinstance(func, ast.Attribute) and func.attr == "save_hyperparameters":
            index.hyperparameters = True
    elif isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                scope.give(target.id, node.value)
            elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                scope.give(target.value.id, node.value)
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        if isinstance(node.target, ast.Name):
            scope.give(node.target.id, node.value)
    elif isinstance(node, ast.Import):
        index.torch_names.update(a.asname for a in node.names if a.name == "torch" and a.asname)
    elif isinstance(node, ast.ImportFrom) and node.module == "torch":
        index.torch_names.update(a.asname or a.name for a in node.names if a.name == "save")


def _index(tree: ast.Module) -> _Index:
    """Walks ``tree`` once (without recursion: deep code cannot overflow the stack)."""
    module = _Scope(tree, [])
    index = _Index([module], {"torch"}, False)
    todo: list[tuple[ast.AST, _Scope]] = [(tree, module)]
    while todo:
        node, scope = todo.pop()
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = _Scope(child, _parameters(child))
                index.scopes.append(inner)
            else:
                _note(child, scope, index)
            todo.append((child, inner))
    return index


def _facts(index: _Index) -> SaveFacts:
    result = SaveFacts()
    for scope in index.scopes:
        for call in scope.calls:
            payload = _save_payload(call, index.torch_names)
            if payload is None:
                continue
            params = scope.params
            node = scope.node
            if (
                isinstance(payload, ast.Name)
                and payload.id in params
                and payload.id not in scope.values
                and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            ):
                position = params.index(payload.id)
                if params[0] in ("self", "cls"):
                    position -= 1  # called as a method: the receiver is not an argument
                result.savers[node.name] = (position, payload.id)
            elif _holds_objects(payload, scope.values, set(), params):
                result.objects = True
    return result


class FileSaves:
    """The save facts of the file being checked, fed by the checker's own walk.

    A rule hands over the nodes it gets (assignments, imports, the calls ``save``,
    ``update``, ``setdefault``, ``append``, ``save_hyperparameters``) with the function
    they are in, so the file is not walked a second time.
    """

    def __init__(self, tree: ast.Module) -> None:
        self._module = _Scope(tree, [])
        self._scopes: dict[int, _Scope] = {id(tree): self._module}
        self._index = _Index([self._module], {"torch"}, False)

    def note(self, node: ast.AST, function: ast.AST | None) -> None:
        """Records ``node``, found in ``function`` (None: at module level)."""
        scope = self._module
        if function is not None:
            scope = self._scopes.get(id(function)) or self._new_scope(function)
        _note(node, scope, self._index)

    def _new_scope(self, function: ast.AST) -> _Scope:
        scope = self._scopes[id(function)] = _Scope(function, _parameters(function))
        self._index.scopes.append(scope)
        return scope

    def saves_objects(self) -> bool:
        """Whether a save of this file holds an object ``weights_only=True`` refuses."""
        return self._index.hyperparameters or _facts(self._index).objects


def save_facts(tree: ast.Module) -> SaveFacts:
    """What the ``torch.save`` calls of one file hold (see :class:`SaveFacts`)."""
    return _facts(_index(tree))


def _saver_arguments_hold_objects(
    index: _Index, savers: dict[str, tuple[int, str]], called: set[str]
) -> bool:
    """Whether a call of a saver function in the file passes it an object to save.

    Adds the savers called in the file to ``called``.
    """
    for scope in index.scopes:
        for node in scope.calls:
            name = last_name(node.func)
            if name not in savers:
                continue
            called.add(name)
            position, param = savers[name]
            kw = keyword(node, param)
            if kw is not None:
                arg: ast.expr = kw.value
            elif 0 <= position < len(node.args) and not any(
                isinstance(a, ast.Starred) for a in node.args[: position + 1]
            ):
                arg = node.args[position]
            else:
                return True  # passed through *args/**kwargs: the code does not show it
            if _holds_objects(arg, scope.values, set(), []):
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
    return _saves_objects([_index(tree) for tree in trees])


def _saves_objects(indexes: list[_Index]) -> bool:
    savers: dict[str, tuple[int, str]] = {}
    for index in indexes:
        facts = _facts(index)
        if facts.objects or index.hyperparameters:
            return True
        savers.update(facts.savers)
    if not savers:
        return False
    called: set[str] = set()
    if any(_saver_arguments_hold_objects(index, savers, called) for index in indexes):
        return True
    return bool(set(savers) - called)


def mentions_saving(source: str) -> bool:
    """Whether ``source`` may save anything (a cheap test before parsing it)."""
    return _SAVE_CALL.search(source) is not None


#: Files whose presence makes a folder a project's root.
_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
#: A project with more files than this is read only this far (the fact is about the code
#: around a training script, not a monorepo).
_PROJECT_FILES = 5000


def project_root(path: str) -> tuple[str, bool] | None:
    """The project of the file at ``path``: (folder, whether to read its subfolders too).

    The project is the nearest folder with a pyproject.toml, setup.py, setup.cfg or .git
    and everything under it; without one, the file's own folder (not its subfolders).
    None when ``path`` is not a file.
    """
    if not os.path.isfile(path):
        return None
    folder = os.path.dirname(os.path.abspath(path))
    current = folder
    while True:
        if any(os.path.exists(os.path.join(current, m)) for m in _PROJECT_MARKERS):
            return current, True
        parent = os.path.dirname(current)
        if parent == current:
            return folder, False
        current = parent


def _project_texts(root: str, recursive: bool) -> list[str]:
    if recursive:
        patterns = files.compile_patterns(list(files.DEFAULT_EXCLUDES), root)
        paths = list(itertools.islice(files.iter_python_files(root, patterns), _PROJECT_FILES))
    else:
        try:
            paths = sorted(e.path for e in os.scandir(root) if e.name.endswith(".py"))
        except OSError:
            paths = []
    texts = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
        except OSError:
            continue
    return texts


def _parsed(texts: list[str]) -> list[_Index]:
    out = []
    for text in texts:
        try:
            out.append(_index(ast.parse(text)))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return out


@functools.lru_cache(maxsize=16)
def project_saves_objects(root: str, recursive: bool = True) -> bool:
    """:func:`saves_objects` over the Python files of the project in folder ``root``.

    Computed once per project and process; only files that call ``save(...)`` (and the
    callers of the functions that save) are parsed.
    """
    texts = _project_texts(root, recursive)
    saving = [t for t in texts if mentions_saving(t)]
    indexes = _parsed(saving)
    savers: set[str] = set()
    for index in indexes:
        savers.update(_facts(index).savers)
    callers = [  # the callers of savers that do not save themselves
        t for t in texts if not mentions_saving(t) and any(f"{n}(" in t for n in savers)
    ]
    return _saves_objects(indexes + _parsed(callers))
