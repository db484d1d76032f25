"""What a project saves with ``torch.save``: the project fact behind TS502's fix.

``torch.load(..., weights_only=True)`` refuses pickled objects other than tensors, numbers,
strings and containers of them. Adding it is safe only when the project's own checkpoints
hold nothing else; :func:`project_saves_objects` tells, once per project.
"""

from __future__ import annotations

import ast
import itertools
import os
import re

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
    if walked is not None:
        candidates, functions, torch_names = walked
        return _judge_saves(tree, candidates, functions, torch_names | {"torch"})
    torch_names = {"torch"}
    functions = []
    candidates = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) or (
                isinstance(node.func, ast.Attribute) and node.func.attr == "save"
            ):
                candidates.append(node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.append(node)
        elif isinstance(node, ast.Import):
            torch_names.update(a.asname for a in node.names if a.name == "torch" and a.asname)
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            torch_names.update(a.asname or a.name for a in node.names if a.name == "save")
    return _judge_saves(tree, candidates, functions, torch_names)


def _judge_saves(
    tree: ast.Module,
    candidates: list[ast.Call],
    functions: list[ast.FunctionDef | ast.AsyncFunctionDef],
    torch_names: set[str],
) -> SaveFacts:
    result = SaveFacts()
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
    return next((above for above in files.ancestors(folder) if _is_project(above)), folder)


def _is_project(folder: str) -> bool:
    return any(os.path.exists(os.path.join(folder, m)) for m in _PROJECT_MARKERS)


def _project_paths(root: str) -> list[str]:
    """The Python sources of the project in ``root``: everything under a project's root,
    only the folder itself for a folder without a project marker (a folder of scripts)."""
    if _is_project(root):
        patterns = files.compile_patterns(list(files.DEFAULT_EXCLUDES), root)
        return list(itertools.islice(files.iter_python_files(root, patterns), _PROJECT_FILES))
    try:
        return sorted(e.path for e in os.scandir(root) if e.name.endswith(".py"))
    except OSError:
        return []


def _read_texts(paths: list[str]) -> list[str]:
    texts = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
        except OSError:
            continue
    return texts


Stamp = tuple[tuple[str, int, int], ...]


def _stamp(paths: list[str]) -> Stamp:
    """Each file's path, modification time and size: a change to any of them, or a file
    added or removed, changes the stamp."""
    stamp = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        stamp.append((path, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


class _KeptFacts:
    """The fact of each project read so far: root -> (the stamp of its files then, the fact)."""

    #: Projects whose fact is kept (the oldest is dropped first).
    size = 16

    def __init__(self) -> None:
        self.facts: dict[str, tuple[Stamp, bool]] = {}
        #: Whether a kept fact is checked against its project's files before each use.
        self.follow = False

    def keep(self, root: str, stamp: Stamp, fact: bool) -> None:
        self.facts.pop(root, None)
        if len(self.facts) >= self.size:
            del self.facts[next(iter(self.facts))]
        self.facts[root] = (stamp, fact)


_KEPT = _KeptFacts()


def follow_file_changes(on: bool = True) -> None:
    """Makes :func:`project_saves_objects` notice a project's files changing (a long-lived
    process, the language server, outlives many edits); a one-shot lint reads each once."""
    _KEPT.follow = on


def forget() -> None:
    """Drops every project's fact (the next use reads the project again)."""
    _KEPT.facts.clear()


def project_saves_objects(root: str) -> bool:
    """:func:`saves_objects` over the Python files of the project in folder ``root``.

    Computed once per project and process; under :func:`follow_file_changes`, again when a
    Python file of the project was added, removed or changed (its size or modification
    time). Only files that call ``save(...)`` (and the callers of the functions that save)
    are parsed.
    """
    known = _KEPT.facts.get(root)
    if known is not None and not _KEPT.follow:
        return known[1]
    paths = _project_paths(root)
    stamp = _stamp(paths)  # before reading: a file changed meanwhile is read again next time
    if known is not None and known[0] == stamp:
        return known[1]
    fact = _texts_save_objects(_read_texts(paths))
    _KEPT.keep(root, stamp, fact)
    return fact


def _texts_save_objects(texts: list[str]) -> bool:
    """:func:`saves_objects` over the sources ``texts`` of one project."""
    # Lightning's save_hyperparameters() puts hyperparameters in every checkpoint
    if any("save_hyperparameters(" in text for text in texts):
        return True
    parsed: list[tuple[str, ast.Module]] = []
    rest: list[str] = []
    for text in texts:
        if _SAVE_CALL.search(text):
            tree = _parse_blocks(text, _SAVE_CALL)
            if tree is not None:
                parsed.append((text, tree))
        else:
            rest.append(text)
    savers: dict[str, tuple[int, str]] = {}
    for _, tree in parsed:  # each file's save facts once
        facts = save_facts(tree)
        if facts.objects:
            return True
        savers.update(facts.savers)
    if not savers:
        return False
    calls = tuple(f"{name}(" for name in savers)
    called_here = re.compile("|".join(r"\b" + re.escape(c) for c in calls))
    callers = []
    for text in texts:  # the callers of savers, wherever they are
        if any(c in text for c in calls) and (tree := _parse_blocks(text, called_here)):
            callers.append(tree)
    called: set[str] = set()
    if any(_saver_arguments_hold_objects(tree, savers, called) for tree in callers):
        return True
    return bool(set(savers) - called)


_TOP_LEVEL_DEF = re.compile(r"(?:async\s+def|def|class)\s")
_TORCH_IMPORT = re.compile(r"(?:import\s+torch\b|from\s+torch\s+import\s)[^(\\]*$")


def _parse_blocks(text: str, pattern: re.Pattern[str]) -> ast.Module | None:
    """Parses only the top-level functions and classes of ``text`` in which ``pattern``
    occurs (with the file's torch imports): the project scan needs what is saved and by
    which function, not the whole file. The whole file is parsed when a match is in
    module-level code (its values may come from anywhere in the module) or the pieces do
    not parse on their own."""
    lines = text.split("\n")
    starts = [
        i for i, line in enumerate(lines) if line[:1] not in ("", " ", "\t", "#", ")", "]", "}")
    ]
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    chosen: dict[int, int] = {}
    for match in pattern.finditer(text):
        at = _line_of(offsets, match.start())
        k = _last_at_most(starts, at)
        if k < 0 or not _TOP_LEVEL_DEF.match(lines[starts[k]]):
            return _parse(text)  # module-level code
        chosen[starts[k]] = starts[k + 1] if k + 1 < len(starts) else len(lines)
    imports = [line for line in lines if _TORCH_IMPORT.match(line)]
    pieces = [*imports, *("\n".join(lines[a:b]) for a, b in sorted(chosen.items()))]
    return _parse("\n".join(pieces)) or _parse(text)


def _line_of(offsets: list[int], position: int) -> int:
    """The 0-based line of character ``position`` (``offsets``: where each line starts)."""
    low, high = 0, len(offsets) - 1
    while low < high:
        mid = (low + high + 1) // 2
        if offsets[mid] <= position:
            low = mid
        else:
            high = mid - 1
    return low


def _last_at_most(values: list[int], limit: int) -> int:
    """The index of the last of the sorted ``values`` that is at most ``limit`` (-1: none)."""
    low, high = 0, len(values)
    while low < high:
        mid = (low + high) // 2
        if values[mid] <= limit:
            low = mid + 1
        else:
            high = mid
    return low - 1


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
