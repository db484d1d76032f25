"""The semantic model rules query instead of names: what an object is and what belongs together.

Two levels, both computed lazily (only when a rule asks, so files that never need them cost
nothing) and memoized:

* :class:`ProjectIndex`, once per process for every project file it is asked about: the
  classes each file defines and their bases, the names it imports, whether it parses command
  line flags. Files are summarized from their text with line patterns (no parse), so the
  cross-file facts cost a fraction of parsing them. It answers "is the class ``Foo`` that
  this file imports an ``nn.Module``?" (bases followed across files) and "does the function
  ``parse_args`` this script imports from the project parse flags?".
* :class:`SemanticModel`, once per file, from its AST: the type of a name where it can be
  known (annotations, constructor calls, ``self.x = Cls(...)``); which scheduler drives
  which optimizer and which modules' parameters reach an optimizer (trained) versus copies
  (EMA, teachers, frozen networks); which functions run with autograd off because every
  caller turns it off; and which names hold plain Python numbers (shapes, lengths, literals,
  arithmetic on them) through any number of assignments.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from torchstyle.lint import facts

Qualname = Callable[[ast.expr], str | None]

#: ``class Name(Base1, mod.Base2):`` on one line (multi-line bases are read up to the line end).
_CLASS = re.compile(r"^[ \t]*class[ \t]+(\w+)[ \t]*(?:\(([^)]*)\)?)?[ \t]*:?", re.M)
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+\(?([^)\n#]*)", re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#]+)", re.M)
_DEF = re.compile(r"^([ \t]*)def[ \t]+(\w+)", re.M)
#: Text that shows a file reads command-line flags (or a config parser that stands for them).
_PARSES_FLAGS = re.compile(
    r"\b(?:argparse|ArgumentParser|click\.|typer|fire\.Fire|hydra|jsonargparse|absl|tyro"
    r"|simple_parsing|docopt|configargparse|OmegaConf|sys\.argv|HfArgumentParser|LightningCLI"
    r"|gin\.parse_config)"
)
_MAX_DEPTH = 8


@dataclass
class FileSummary:
    """What a project file defines and imports, read from its text."""

    path: str
    #: class name -> the source text of each base (``nn.Module``, ``BaseModel``)
    classes: dict[str, list[str]] = field(default_factory=dict)
    #: local alias -> (module as written, imported name or "" for ``import x``)
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)
    parses_flags: bool = False
    #: top-level functions whose body reads flags
    flag_functions: set[str] = field(default_factory=set)


def summarize(path: str) -> FileSummary | None:
    """Reads ``path`` and summarizes it (None when it cannot be read).

    Cached per file version (its modification time), so a long-running process (an
    editor's server) sees edits.
    """
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return _summarize(path, mtime)


@lru_cache(maxsize=4096)
def _summarize(path: str, mtime: int) -> FileSummary | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return summarize_text(path, text)


def summarize_text(path: str, text: str) -> FileSummary:
    """Summarizes the code ``text`` of ``path``."""
    summary = FileSummary(path)
    for match in _CLASS.finditer(text):
        bases = [b.strip() for b in (match.group(2) or "").split(",")]
        summary.classes[match.group(1)] = [b for b in bases if b and "=" not in b]
    for match in _FROM_IMPORT.finditer(text):
        module = match.group(1)
        for part in match.group(2).split(","):
            words = part.split()
            if not words or words[0] == "*":
                continue
            alias = words[2] if len(words) == 3 and words[1] == "as" else words[0]
            summary.imports[alias] = (module, words[0])
    for match in _IMPORT.finditer(text):
        for part in match.group(1).split(","):
            words = part.split()
            if words:
                alias = words[2] if len(words) == 3 and words[1] == "as" else words[0]
                summary.imports[alias.split(".")[0] if len(words) == 1 else alias] = (words[0], "")
    flags = _PARSES_FLAGS.search(text)
    summary.parses_flags = flags is not None
    if flags is not None:
        defs = list(_DEF.finditer(text))
        for i, match in enumerate(defs):
            if match.group(1):
                continue  # only top-level functions are imported by name
            end = len(text)
            for later in defs[i + 1 :]:
                if not later.group(1):
                    end = later.start()
                    break
            if _PARSES_FLAGS.search(text, match.end(), end):
                summary.flag_functions.add(match.group(2))
    return summary


def resolve_module(from_path: str, module: str) -> str | None:
    """The project file ``module`` (as written in ``from_path``: ``.base``, ``utils.opts``) names.

    Relative modules resolve against the importing file's folder; absolute ones against that
    folder and each folder above it (a script run from the project's root), so imports of
    installed packages find nothing.
    """
    level = len(module) - len(module.lstrip("."))
    parts = [p for p in module.lstrip(".").split(".") if p]
    here = os.path.dirname(os.path.abspath(from_path))
    if level:
        for _ in range(level - 1):
            here = os.path.dirname(here)
        roots = [here]
    else:
        roots = [here]
        for _ in range(3):
            parent = os.path.dirname(roots[-1])
            if parent == roots[-1]:
                break
            roots.append(parent)
    for root in roots:
        base = os.path.join(root, *parts) if parts else root
        for candidate in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(candidate):
                return candidate
    return None


class ProjectIndex:
    """Cross-file facts, from the summaries of the project files a question leads to."""

    def __init__(self) -> None:
        self._module_memo: dict[tuple[str, str, int], bool | None] = {}

    def class_kind(self, path: str, name: str, depth: int = 0) -> bool | None:
        """Whether class ``name`` as seen from file ``path`` is an ``nn.Module``.

        True: a module (a base is one, followed across files); False: a plain class whose
        every base is known and none is a module; None: unknown (not found, an external base).
        """
        summary = summarize(path)
        key = (path, name, id(summary))  # a new summary (the file changed) asks again
        if key in self._module_memo:
            return self._module_memo[key]
        self._module_memo[key] = None  # cycles
        result = self._class_kind(path, name, depth)
        self._module_memo[key] = result
        return result

    def _class_kind(self, path: str, name: str, depth: int) -> bool | None:
        if depth > _MAX_DEPTH:
            return None
        summary = summarize(path)
        if summary is None:
            return None
        head, _, last = name.rpartition(".")
        if head:  # networks.PNetLin after `from . import networks_basic as networks`
            imported = summary.imports.get(head)
            if imported is None:
                return None
            module, member = imported
            target = resolve_module(path, f"{module}.{member}" if member else module)
            if target is None and member:
                target = resolve_module(path, module)
            return None if target is None else self.class_kind(target, last, depth + 1)
        bases = summary.classes.get(name)
        if bases is not None:
            return self._bases_kind(path, bases, depth)
        imported = summary.imports.get(name)
        if imported is None or not imported[1]:
            return None
        target = resolve_module(path, imported[0])
        return None if target is None else self.class_kind(target, imported[1], depth + 1)

    def _bases_kind(self, path: str, bases: list[str], depth: int) -> bool | None:
        summary = summarize(path)
        unknown = False
        for base in bases:
            if base in ("object", "ABC", "abc.ABC") or base.startswith(("Generic", "metaclass")):
                continue
            qual = _qualify(base, summary)
            if facts.is_nn_module_qualname(qual) or qual.rsplit(".", 1)[-1] in ("Module",):
                return True
            if qual.startswith(("torch.", "torchvision.", "timm.", "lightning")):
                unknown = True
                continue
            kind = self.class_kind(path, base, depth + 1)
            if kind:
                return True
            unknown |= kind is None
        return None if unknown else False

    def parses_flags_via(self, path: str, name: str) -> bool:
        """Whether ``name``, imported by ``path`` from a project module, reads flags."""
        summary = summarize(path)
        if summary is None:
            return False
        imported = summary.imports.get(name)
        if imported is None:
            return False
        module, member = imported
        target = resolve_module(path, module)
        if target is None:
            return False
        other = summarize(target)
        if other is None:
            return False
        return member in other.flag_functions if member else other.parses_flags


def _qualify(base: str, summary: FileSummary | None) -> str:
    """``nn.Module`` -> ``torch.nn.Module`` through the summary's imports."""
    if summary is None:
        return base
    head, _, rest = base.partition(".")
    imported = summary.imports.get(head)
    if imported is None:
        return base
    module, member = imported
    full = f"{module}.{member}" if member else module
    return f"{full}.{rest}" if rest else full


#: One index per process: summaries of files are shared by every file that imports them.
PROJECT = ProjectIndex()


# -- the per-file model ----------------------------------------------------------------------

_SCHEDULER_CALL = re.compile(
    r"(?:LR|Scheduler|Annealing|Warmup|Plateau|Schedule)\w*$|^get_\w*schedule"
)
_COPY_NAME = re.compile(r"ema|teacher|target|frozen|momentum|average|avg|swa|shadow|old|prev", re.I)
_SHAPE_ATTRS = frozenset({"shape", "ndim"})
_SHAPE_METHODS = frozenset({"size", "dim", "numel", "__len__", "item"})
_NUMBER_CALLS = frozenset({"len", "int", "float", "round", "abs", "min", "max", "sum", "range"})


def target_key(node: ast.expr) -> str | None:
    """A stable key for a name or attribute chain: ``self.opt_g`` -> ``"self.opt_g"``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


@dataclass
class WalkFacts:
    """What the checker's single walk records for the model (no second walk needed).

    Attributes:
        call_modes: callee's last name -> 1 when called with autograd on somewhere, | 2 when
            called with it off somewhere.
        function_steps: function name -> it back-propagates or steps an optimizer itself.
        function_calls: function name -> the last names of the callees in its body.
        save_calls, functions: for the "saves non-tensor objects" fact, without a walk.
    """

    call_modes: dict[str, int] = field(default_factory=dict)
    function_steps: dict[str, bool] = field(default_factory=dict)
    function_calls: dict[str, set[str]] = field(default_factory=dict)
    #: every call whose callee's last name is ``save`` (``torch.save``, an alias of it)
    save_calls: list[ast.Call] = field(default_factory=list)
    #: every function definition of the file
    functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=list)
    #: every ``target = value`` so far (tuple targets matched element-wise)
    assigns: list[tuple[ast.expr, ast.expr]] = field(default_factory=list)
    #: calls that may build an optimizer (CapWords callee) or freeze a module
    optimizer_calls: list[ast.Call] = field(default_factory=list)


class SemanticModel:
    """Per-file facts rules query; each is computed on first use from the file's AST."""

    def __init__(
        self, tree: ast.Module, path: str, qualname: Qualname, walk: WalkFacts | None = None
    ) -> None:
        self.tree = tree
        self._live = walk is not None
        self.walk = walk if walk is not None else WalkFacts()
        self._stamp: tuple[int, int] = (-1, -1)
        self.path = path
        self._qualname = qualname  # FileContext.qualname
        self._assigns: list[tuple[ast.expr, ast.expr]] | None = None
        self._sched: dict[str, str] | None = None
        self._trained: set[str] | None = None
        self._trained_stamp: tuple[int, int] = (-1, -1)
        self._copies: set[str] | None = None
        self._grad_off_fns: set[str] | None = None
        self._class_memo: dict[str, bool | None] = {}
        self._training_fns: set[str] | None = None
        self._globals: dict[str, list[ast.expr]] | None = None
        self._writers: set[str] | None = None

    # -- assignments -------------------------------------------------------------------------

    @property
    def assigns(self) -> list[tuple[ast.expr, ast.expr]]:
        """Every ``target = value`` of the file (tuple targets matched element-wise).

        From the checker's walk when there is one: those walked so far.
        """
        if self._live:
            return self.walk.assigns
        if self._assigns is None:
            out: list[tuple[ast.expr, ast.expr]] = []
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        pairs(target, node.value, out)
                elif isinstance(node, ast.AnnAssign) and node.value is not None:
                    pairs(node.target, node.value, out)
            self._assigns = out
        return self._assigns

    def qualname(self, node: ast.expr) -> str | None:
        """The import-resolved dotted name of ``node``."""
        return self._qualname(node)

    # -- optimizers, schedulers, trained modules ---------------------------------------------

    def scheduler_optimizer(self, scheduler: ast.expr) -> str | None:
        """The key of the optimizer a scheduler was built on (``sched = StepLR(opt_g)``)."""
        if self._sched is None or self._stamp[0] != len(self.assigns):
            self._stamp = (len(self.assigns), self._stamp[1])
            found: dict[str, str] = {}
            for target, value in self.assigns:
                key = target_key(target)
                if key is None or not isinstance(value, ast.Call):
                    continue
                callee = facts.last_name(value.func) or ""
                if not _SCHEDULER_CALL.search(callee) and "lr_scheduler" not in (
                    self.qualname(value.func) or ""
                ):
                    continue
                first = value.args[0] if value.args else None
                kw = facts.keyword(value, "optimizer")
                first = kw.value if kw is not None else first
                opt = target_key(first) if first is not None else None
                if opt is not None:
                    found[key] = opt
            self._sched = found
        key = target_key(scheduler)
        return None if key is None else self._sched.get(key)

    def _optimizer_params(self) -> None:
        trained: set[str] = set()
        copies: set[str] = set()
        aliases: dict[str, ast.expr] = {}
        for target, value in self.assigns:
            key = target_key(target)
            if key is None:
                continue
            aliases[key] = value
            name = self.qualname(value.func) if isinstance(value, ast.Call) else None
            if name in ("copy.deepcopy", "deepcopy") or (
                _COPY_NAME.search(key.rsplit(".", 1)[-1]) and isinstance(value, ast.Call)
            ):
                copies.add(key)
        calls = (
            self.walk.optimizer_calls
            if self._live
            else [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)]
        )
        for node in calls:
            callee = self.qualname(node.func) or ""
            if facts.is_optimizer_qualname(callee) or (
                callee.rsplit(".", 1)[-1][:1].isupper()
                and any(k in callee for k in ("Adam", "SGD", "LARS", "Lamb", "Optim"))
            ):
                for arg in [*node.args[:1], *(k.value for k in node.keywords if k.arg == "params")]:
                    self._param_owners(arg, aliases, trained, 0)
            elif (
                facts.last_name(node.func) == "requires_grad_"
                and node.args
                and facts.is_false(node.args[0])
                and isinstance(node.func, ast.Attribute)
            ):
                key = target_key(node.func.value)
                if key is not None:
                    copies.add(key)
        self._trained, self._copies = trained, copies - trained

    def _param_owners(
        self, node: ast.expr, aliases: dict[str, ast.expr], out: set[str], depth: int
    ) -> None:
        if depth > 4:
            return
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
                if "param" in sub.func.attr:  # parameters(), named_parameters(), get_params()
                    key = target_key(sub.func.value)
                    if key is not None:
                        out.add(key)
                        out.add(key.rsplit(".", 1)[-1])
            elif isinstance(sub, ast.Name) and sub.id in aliases:
                value = aliases.pop(sub.id)
                self._param_owners(value, aliases, out, depth + 1)

    def is_trained(self, module: ast.expr) -> bool | None:
        """True when the module's parameters reach an optimizer in this file; False when it
        is a copy (deep-copied, named EMA/teacher/target, frozen) that none reaches; None when
        the file does not say."""
        stamp = (len(self.assigns), len(self.walk.optimizer_calls))
        if self._trained is None or (self._live and stamp != self._trained_stamp):
            self._trained_stamp = stamp
            self._optimizer_params()
        assert self._trained is not None and self._copies is not None
        key = target_key(module)
        if key is None:
            return None
        last = key.rsplit(".", 1)[-1]
        if key in self._trained or last in self._trained:
            return True
        if key in self._copies or _COPY_NAME.search(last):
            return False
        return None

    # -- autograd mode through callers -------------------------------------------------------

    def grad_off_by_callers(self, function: str) -> bool:
        """Whether every call of ``function`` in this file runs with autograd off (at least
        one): called from a ``@torch.no_grad()`` function or a ``with no_grad():`` block.

        Decided by the whole walk: ask from ``end_file``.
        """
        return self.walk.call_modes.get(function) == 2

    def trains(self, function: str) -> bool:
        """Whether a function of this file named ``function`` back-propagates or steps an
        optimizer (itself, or through another such function it calls).

        Decided by the whole walk: ask from ``end_file``.
        """
        if self._training_fns is None:
            self._training_fns = _training_functions(self.walk)
        return function in self._training_fns

    def loop_trains(self, loop: ast.AST) -> bool:
        """Whether the body of ``loop`` calls a function of this file that trains."""
        for node in ast.walk(loop):
            if isinstance(node, ast.Call):
                name = facts.last_name(node.func)
                if name is not None and self.trains(name):
                    return True
        return False

    def module_values(self) -> dict[str, list[ast.expr]]:
        """Every value a module-level name gets (also under top-level ``if``/``try``, e.g.
        constants set in ``if __name__ == "__main__":``)."""
        if self._globals is None:
            found: dict[str, list[ast.expr]] = {}
            todo: list[ast.stmt] = list(self.tree.body)
            while todo:
                stmt = todo.pop()
                if isinstance(stmt, ast.Assign):
                    matched: list[tuple[ast.expr, ast.expr]] = []
                    for target in stmt.targets:
                        pairs(target, stmt.value, matched)
                    for target, value in matched:
                        if isinstance(target, ast.Name):
                            found.setdefault(target.id, []).append(value)
                elif isinstance(stmt, ast.AugAssign | ast.AnnAssign):
                    if isinstance(stmt.target, ast.Name) and stmt.value is not None:
                        found.setdefault(stmt.target.id, []).append(stmt.value)
                elif isinstance(stmt, ast.If | ast.Try | ast.With):
                    todo.extend(stmt.body)
                    todo.extend(getattr(stmt, "orelse", []))
                elif isinstance(stmt, ast.For):
                    for sub in ast.walk(stmt.target):
                        if isinstance(sub, ast.Name):
                            found.setdefault(sub.id, []).append(stmt.iter)
                    todo.extend(stmt.body)
                elif isinstance(stmt, ast.While):
                    todo.extend(stmt.body)
            self._globals = found
        return self._globals

    def global_number(self, name: str) -> bool:
        """Whether module-level ``name`` only ever holds Python numbers (``d_k = 64``)."""
        values = self.module_values()
        found = values.get(name)
        if not found:
            return False
        lookup = single_values(values, name)
        return all(number_expr(value, lookup) for value in found)

    def writes_argument(self, function: str) -> bool:
        """Whether a function of this file named ``function`` writes its arguments in place:
        hands a parameter to ``torch.nn.init`` (any spelling) or calls an in-place method
        (``p.zero_()``) on one. ``def xavier(param): init.xavier_uniform(param)``."""
        if self._writers is None:
            self._writers = set()
            self._not_writers: set[str] = set()
        if function in self._writers or function in self._not_writers:
            return function in self._writers
        functions = (
            self.walk.functions
            if self._live
            else [
                n
                for n in ast.walk(self.tree)
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
        )
        writes = any(f.name == function and _writes_params(f, self.qualname) for f in functions)
        (self._writers if writes else self._not_writers).add(function)
        return writes

    # -- types of names ----------------------------------------------------------------------

    def class_is_module(self, ref: ast.expr) -> bool | None:
        """Whether the class ``ref`` names (``Foo``, ``nets.Foo``) is an ``nn.Module``.

        Classes of this file are answered by the caller; this follows imports into the
        project's other files. None when unknown.
        """
        text = target_key(ref)
        if text is None:
            return None
        if text not in self._class_memo:
            qual = self.qualname(ref)
            if qual is not None and facts.is_nn_module_qualname(qual):
                self._class_memo[text] = True
            elif qual is not None and qual.startswith(("torch.", "numpy.", "builtins.")):
                self._class_memo[text] = None
            else:
                self._class_memo[text] = PROJECT.class_kind(self.path, text)
        return self._class_memo[text]


def pairs(
    target: ast.expr,
    value: ast.expr,
    out: list[tuple[ast.expr, ast.expr]],
    *,
    items: bool = False,
) -> None:
    """Appends ``(target, value)`` to ``out``, matching tuple targets element-wise.

    Args:
        target: What is assigned to.
        value: The value assigned.
        out: Where the pairs go.
        items: A tuple target whose value is not a tuple of its length (``h, w =
            x.shape[2:]``) pairs each of its names with ``value[0]``, an item of the value.
            Without it, such a target is paired with the whole value, or with nothing when
            the value is a tuple of another length.
    """
    if isinstance(target, ast.Tuple | ast.List):
        if isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(target.elts):
            for t, v in zip(target.elts, value.elts, strict=True):
                pairs(t, v, out, items=items)
            return
        if items:
            item = ast.Subscript(value=value, slice=ast.Constant(0), ctx=ast.Load())
            out.extend((t, item) for t in target.elts)
            return
        if isinstance(value, ast.Tuple | ast.List):
            return
    out.append((target, value))


def is_init_call(call: ast.Call, qualname: Qualname) -> bool:
    """Whether ``call`` initialises its argument in place: ``torch.nn.init.*`` (old names
    without ``_`` too) or a callee named like an initialiser (``weight_init(w)``)."""
    name = qualname(call.func) or ""
    if name.startswith(("torch.nn.init.", "init.")):
        return True
    last = (facts.last_name(call.func) or "").lower()
    return last.startswith("init") or last.endswith("init") or last.endswith("_init_")


def _writes_params(function: ast.FunctionDef | ast.AsyncFunctionDef, qualname: Qualname) -> bool:
    params = {a.arg for a in [*function.args.posonlyargs, *function.args.args]}
    for node in ast.walk(function):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr.endswith("_")
            and not func.attr.startswith("__")
            and isinstance(func.value, ast.Name)
            and func.value.id in params
        ):
            return True
        if is_init_call(node, qualname) and any(
            isinstance(a, ast.Name) and a.id in params for a in node.args
        ):
            return True
    return False


def _training_functions(walk: WalkFacts) -> set[str]:
    """Names of the functions that train, directly or through each other."""
    found = {name for name, steps in walk.function_steps.items() if steps}
    changed = True
    while changed:
        changed = False
        for name, called in walk.function_calls.items():
            if name not in found and not called.isdisjoint(found):
                found.add(name)
                changed = True
    return found


def single_values(
    values: Mapping[str, list[ast.expr]], name: str
) -> Callable[[str], ast.expr | None]:
    """A ``lookup`` for :func:`number_expr` that follows the names of ``values`` from ``name``:
    a name's value when it gets exactly one, each name at most once (so no cycle loops)."""
    seen = {name}

    def lookup(other: str) -> ast.expr | None:
        if other in seen:
            return None
        seen.add(other)
        got = values.get(other)
        return got[0] if got is not None and len(got) == 1 else None

    return lookup


def number_expr(node: ast.expr, lookup: Callable[[str], ast.expr | None], depth: int = 0) -> bool:
    """Whether ``node`` certainly evaluates to a Python number (or a tuple of them).

    Shapes and sizes of tensors, ``len()``, literals and arithmetic on them count, and so do
    names: ``lookup(name)`` returns the value a name was last assigned (or None).
    """
    if depth > 12:
        return False
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return number_expr(node.operand, lookup, depth + 1)
    if isinstance(node, ast.BinOp):
        return number_expr(node.left, lookup, depth + 1) and number_expr(
            node.right, lookup, depth + 1
        )
    if isinstance(node, ast.Tuple | ast.List):
        return all(number_expr(e, lookup, depth + 1) for e in node.elts)
    if isinstance(node, ast.Subscript):
        return number_expr(node.value, lookup, depth + 1)
    if isinstance(node, ast.Attribute):
        return node.attr in _SHAPE_ATTRS
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _SHAPE_METHODS:
            return True
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            return func.value.id == "math"  # math.sqrt(d), math.log(10000.0)
        return isinstance(func, ast.Name) and func.id in _NUMBER_CALLS
    if isinstance(node, ast.Name):
        value = lookup(node.id)
        return value is not None and number_expr(value, lookup, depth + 1)
    return False
