"""Per-file state the checker keeps up to date during its single walk, shared by every rule.

* imports: ``np`` -> ``numpy``, ``F`` -> ``torch.nn.functional``, so rules match real names;
* scopes (module, class, function) and, inside each function, the stack of loops;
* name bindings: each assignment to a name is a new *binding* (a version); the checker
  records what a binding holds when it can tell (a module, a loss, a tensor, a number) and
  which bindings a backward pass started from, so rules can tell ``print(loss)`` on a tensor
  loss from ``print(loss)`` on the float it was turned into.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from torchstyle.lint import facts
from torchstyle.lint.base import Edit, Finding, Fix
from torchstyle.lint.fixes import without_duplicate_calls
from torchstyle.lint.semantic import SemanticModel, WalkFacts, target_key

#: What a binding holds. ``derived`` bindings hold whatever their dependencies hold.
KIND_MODULE = "module"
KIND_LOSS_FN = "lossfn"
KIND_LOSS = "loss"
KIND_TENSOR = "tensor"
KIND_NUMBER = "number"
KIND_OPTIMIZER = "optimizer"
KIND_DERIVED = "derived"

_NEWLINE = re.compile(r"\r\n?|\n")
_KEEP_KIND_METHODS = frozenset(
    {"to", "cuda", "cpu", "half", "float", "double", "bfloat16", "train", "eval", "requires_grad_"}
)
_NUMBER_METHODS = frozenset({"item", "tolist", "__float__"})
_NUMBER_BUILTINS = frozenset({"float", "int", "len", "round", "sum", "max", "min", "abs"})


@dataclass(eq=False)
class ClassInfo:
    """A class defined in the file, and what it is (from its bases)."""

    name: str
    node: ast.ClassDef
    is_module: bool
    is_dataset: bool
    is_loss: bool
    #: ``self.<attr>`` -> kind, for attributes assigned in the class's methods.
    attr_kinds: dict[str, str] = field(default_factory=dict)
    #: Not a module for certain: every base is known (here or in the project) and none is.
    plain: bool = False


@dataclass(eq=False)
class LoopFrame:
    """A ``for``/``while`` loop being walked (loops are tracked per function).

    Attributes:
        direct_step: This loop's own body (not a nested loop) runs an optimizer step, or a
            backward pass and ``zero_grad()``: it is a training-step loop.
        direct_backward: This loop's own body runs a backward pass.
        any_backward: A backward pass runs anywhere in this loop.
        nested_step: A loop nested in this one is a training-step loop (or contains one).
        child_step: A loop directly in this one's body is a training-step loop: this one is
            an epoch loop.
        calls_model: The body calls something that is (or is named like) a network.
        grad_off: The loop runs with autograd off (``with torch.no_grad()`` around it, or a
            decorated function).
        grad_off_inside: A ``with torch.no_grad()`` block sits inside the body.
        guard_base: The checker's guard depth when the loop was entered; a node is on every
            iteration's path when the current guard depth equals it.
        bound: Names assigned anywhere in the loop (its variables included).
        data: Free space for rules, keyed by rule code.
    """

    node: ast.For | ast.AsyncFor | ast.While
    parent: LoopFrame | None
    targets: frozenset[str]
    guard_base: int
    grad_off: bool
    direct_step: bool = False
    direct_backward: bool = False
    direct_zero_grad: bool = False
    any_backward: bool = False
    nested_step: bool = False
    child_step: bool = False
    calls_model: bool = False
    grad_off_inside: bool = False
    bound: set[str] = field(default_factory=set)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def has_step(self) -> bool:
        """Whether training happens anywhere inside this loop."""
        return self.direct_step or self.nested_step

    def iter_names(self) -> list[str]:
        """Identifiers in a ``for`` loop's iterable (``val_loader`` in ``enumerate(val_loader)``)."""
        node = self.node
        if isinstance(node, ast.For | ast.AsyncFor):
            return [
                n.attr if isinstance(n, ast.Attribute) else n.id
                for n in ast.walk(node.iter)
                if isinstance(n, ast.Name | ast.Attribute)
            ]
        return []


Binding = tuple["Scope", str, int]


@dataclass(eq=False)
class Scope:
    """A module, class or function body.

    Attributes:
        has_step: A backward pass, ``zero_grad()`` or optimizer step runs in this body.
        grad_off: Autograd is off for the whole body (decorator or ``set_grad_enabled``).
        data: Free space for rules, keyed by rule code.
    """

    kind: str
    node: ast.AST
    parent: Scope | None
    name: str
    class_info: ClassInfo | None = None
    grad_off: bool = False
    has_step: bool = False
    versions: dict[str, int] = field(default_factory=dict)
    kinds: dict[tuple[str, int], str] = field(default_factory=dict)
    deps: dict[tuple[str, int], tuple[Binding, ...]] = field(default_factory=dict)
    backwarded: set[tuple[str, int]] = field(default_factory=set)
    data: dict[str, Any] = field(default_factory=dict)
    #: last names of the callees called in this body (for the semantic model)
    called: set[str] = field(default_factory=set)


def _strip_optional(annotation: ast.expr) -> ast.expr:
    """``Foo | None`` / ``Optional[Foo]`` / ``"Foo"`` -> ``Foo``."""
    if (
        isinstance(annotation, ast.BinOp)
        and isinstance(annotation.op, ast.BitOr)
        and isinstance(annotation.right, ast.Constant)
        and annotation.right.value is None
    ):
        return _strip_optional(annotation.left)
    if isinstance(annotation, ast.Subscript) and facts.last_name(annotation.value) == "Optional":
        return _strip_optional(annotation.slice)
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            return ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return annotation
    return annotation


class FileContext:
    """Everything rules may ask about the file being checked."""

    def __init__(
        self,
        path: str,
        source: str,
        tree: ast.Module,
        target_torch: tuple[int, ...] | None = None,
    ) -> None:
        self.path = path
        #: ``[tool.torchstyle.lint] target-torch`` as a version tuple (None: the newest).
        self.target_torch = target_torch
        self.source = source
        self.tree = tree
        self.imports: dict[str, str] = {}
        self.imported_modules: set[str] = set()
        self.classes: dict[str, ClassInfo] = {}
        self.findings: list[Finding] = []
        self.scope: Scope = Scope("module", tree, None, "<module>")
        self.loop: LoopFrame | None = None
        self.guard_depth = 0
        self.grad_off_depth = 0
        self._lines: list[str] | None = None
        self._line_starts: list[int] | None = None
        self._loss_memo: dict[Binding, bool] = {}
        self._qualname_node: ast.AST | None = None
        self._qualname: str | None = None
        #: Every name a backward pass started from, anywhere in the file.
        self.backward_names: set[str] = set()
        self._semantic: SemanticModel | None = None
        #: what the walk tells the semantic model (calls, functions that train)
        self.walk_facts = WalkFacts()

    @property
    def semantic(self) -> SemanticModel:
        """The file's semantic model (built on first use, once per file)."""
        if self._semantic is None:
            self._semantic = SemanticModel(self.tree, self.path, self.qualname, self.walk_facts)
        return self._semantic

    def class_is_module(self, ref: ast.expr) -> bool | None:
        """Whether the class ``ref`` names is an ``nn.Module``: True, False (a plain class), or
        None (unknown). Classes of this file first, then the project's other files."""
        key = target_key(ref)
        info = self.classes.get(key) if key is not None else None
        if info is not None:
            return True if info.is_module else (False if info.plain else None)
        return self.semantic.class_is_module(ref)

    def value_type(self, node: ast.expr) -> bool | None:
        """For a name or ``self.attr``: True if it holds an ``nn.Module`` (annotation or
        constructor), False if it holds an instance of a plain class, None if unknown."""
        if isinstance(node, ast.Name):
            return self._name_type(node.id)
        if isinstance(node, ast.Attribute) and target_key(node) is not None:
            key = target_key(node)
            kinds = [
                self._value_class(value)
                for target, value in self.semantic.assigns
                if target_key(target) == key
            ]
            if kinds and all(k is False for k in kinds):
                return False
            if any(kinds):
                return True
        return None

    def _name_type(self, name: str) -> bool | None:
        scope = self.function
        if scope is None:
            return None
        node = scope.node
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            if arg.arg == name and arg.annotation is not None:
                return self.class_is_module(_strip_optional(arg.annotation))
        kinds = []
        for stmt in ast.walk(node):
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in stmt.targets
            ):
                kinds.append(self._value_class(stmt.value))
        if kinds and all(k is False for k in kinds):
            return False
        return True if any(kinds) else None

    def _value_class(self, value: ast.expr) -> bool | None:
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name | ast.Attribute):
            func = value.func
            last = func.attr if isinstance(func, ast.Attribute) else func.id
            if last[:1].isupper():
                return self.class_is_module(func)
        return None

    # -- source positions -----------------------------------------------------------------

    @property
    def lines(self) -> list[str]:
        """The file's lines, without line endings (``\n``, ``\r\n`` or a lone ``\r``)."""
        if self._lines is None:
            source = self.source
            if "\r" not in source:
                self._lines = source.split("\n")
                self._line_starts = None
            else:
                starts, lines, pos = [0], [], 0
                for match in _NEWLINE.finditer(source):
                    lines.append(source[pos : match.start()])
                    pos = match.end()
                    starts.append(pos)
                lines.append(source[pos:])
                self._lines, self._line_starts = lines, starts
        return self._lines

    def char_col(self, lineno: int, col_offset: int) -> int:
        """Converts an AST column (UTF-8 bytes) on 1-based ``lineno`` to a character index."""
        lines = self.lines
        if not 0 < lineno <= len(lines):
            return col_offset
        line = lines[lineno - 1]
        if line.isascii():
            return col_offset
        return len(line.encode("utf-8")[:col_offset].decode("utf-8", "replace"))

    def offset(self, lineno: int, col_offset: int) -> int:
        """The character offset into :attr:`source` of an AST position."""
        lines = self.lines
        if self._line_starts is None:
            starts = [0]
            for line in lines[:-1]:
                starts.append(starts[-1] + len(line) + 1)
            self._line_starts = starts
        starts = self._line_starts
        if not 0 < lineno <= len(starts):
            return len(self.source)
        return starts[lineno - 1] + self.char_col(lineno, col_offset)

    def span(self, node: ast.AST) -> tuple[int, int]:
        """Start and end character offsets of ``node`` in :attr:`source`."""
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return start, end

    def text(self, node: ast.AST) -> str:
        """The source text of ``node``."""
        start, end = self.span(node)
        return self.source[start:end]

    def report(
        self,
        code: str,
        node: ast.AST,
        message: str,
        fix: Fix | None = None,
        *,
        end: ast.AST | None = None,
    ) -> None:
        """Records a finding at ``node`` (through ``end``, when given)."""
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        last = end or node
        end_line = getattr(last, "end_lineno", None) or line
        end_col = getattr(last, "end_col_offset", None)
        end_col = col if end_col is None else end_col
        if fix is not None:
            fix = without_duplicate_calls(fix, self.source)
        self.findings.append(
            Finding(
                self.path,
                line,
                self.char_col(line, col) + 1,
                end_line,
                self.char_col(end_line, end_col) + 1,
                code,
                message,
                fix,
            )
        )

    def replace(self, node: ast.AST, text: str, applicability: str = "safe") -> Fix | None:
        """A fix replacing ``node``'s source with ``text`` (None when positions look wrong)."""
        start, end = self.span(node)
        if start >= end:
            return None
        return Fix((Edit(start, end, text),), applicability)  # type: ignore[arg-type]

    def append_to(self, node: ast.expr, text: str, applicability: str) -> Fix | None:
        """A fix that appends ``text`` to a name (``loss`` -> ``loss.item()``).

        None unless ``node`` is a plain name whose source position checks out.
        """
        if not isinstance(node, ast.Name):
            return None
        start, end = self.span(node)
        if self.source[start:end] != node.id:
            return None
        return Fix((Edit(end, end, text),), applicability)  # type: ignore[arg-type]

    # -- names ------------------------------------------------------------------------------

    def add_import(self, node: ast.Import | ast.ImportFrom) -> None:
        """Records the aliases an import statement binds."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.imported_modules.add(alias.name)
                if alias.asname:
                    self.imports[alias.asname] = alias.name
                else:
                    top = alias.name.split(".", 1)[0]
                    self.imports[top] = top
            return
        module = "." * node.level + (node.module or "")
        if module:
            self.imported_modules.add(module)
        for alias in node.names:
            if alias.name == "*":
                continue
            self.imports[alias.asname or alias.name] = f"{module}.{alias.name}"

    def qualname(self, node: ast.AST) -> str | None:
        """The dotted name of ``node`` with its import aliases resolved.

        ``nn.Conv2d`` -> ``torch.nn.Conv2d`` after ``from torch import nn``; names that were not
        imported stay as written (``self.net.forward``). None for anything but names and
        attribute chains.
        """
        if node is self._qualname_node:  # rules ask about the same callee one after another
            return self._qualname
        key = node
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            result = None
        elif not parts:
            result = self.imports.get(node.id, node.id)
        else:
            parts.append(self.imports.get(node.id, node.id))
            result = ".".join(reversed(parts))
        self._qualname_node, self._qualname = key, result
        return result

    def imports_any(self, *modules: str) -> bool:
        """Whether the file imports any of ``modules`` or a submodule of one."""
        for name in self.imported_modules:
            top = name.split(".", 1)[0]
            if top in modules or name in modules:
                return True
        return False

    @property
    def function(self) -> Scope | None:
        """The innermost enclosing function scope, if any."""
        scope: Scope | None = self.scope
        while scope is not None and scope.kind != "function":
            scope = scope.parent
        return scope

    def evaluation_loop(self, frame: LoopFrame, imports_test_framework: bool) -> str | None:
        """Why a just-finished loop looks like evaluation (``over `val_loader` ``), or None.

        An evaluation loop is a ``for`` loop that calls a model, neither steps an optimizer nor
        back-propagates, is named or placed like evaluation, and is not in a unit test.
        """
        if not isinstance(frame.node, ast.For | ast.AsyncFor) or not frame.calls_model:
            return None
        if frame.has_step or frame.any_backward:
            return None
        scope = self.function
        name = scope.name if scope is not None else None
        if name is not None and facts.is_test_function(name, self.path, imports_test_framework):
            return None
        return facts.eval_loop_marker(frame.iter_names(), name)

    @property
    def grad_off(self) -> bool:
        """Whether code at the current position runs with autograd off."""
        return self.grad_off_depth > 0

    # -- bindings ---------------------------------------------------------------------------

    def binding(self, name: str) -> Binding | None:
        """The binding ``name`` refers to here (this scope, else enclosing non-class scopes)."""
        scope: Scope | None = self.scope
        first = True
        while scope is not None:
            if first or scope.kind != "class":
                version = scope.versions.get(name)
                if version is not None:
                    return (scope, name, version)
            first = False
            scope = scope.parent
        return None

    def bind(self, name: str, kind: str | None, deps: tuple[Binding, ...] = ()) -> None:
        """Starts a new binding of ``name`` in the current scope."""
        scope = self.scope
        if self.loop is not None:
            self.loop.bound.add(name)
        version = scope.versions.get(name, 0) + 1
        scope.versions[name] = version
        if kind is not None:
            scope.kinds[(name, version)] = kind
        if deps:
            scope.deps[(name, version)] = deps

    def kind_of(self, binding: Binding | None) -> str | None:
        """The kind recorded for ``binding``."""
        if binding is None:
            return None
        scope, name, version = binding
        return scope.kinds.get((name, version))

    def mark_backwarded(self, name: str) -> None:
        """Records that a backward pass started from the current binding of ``name``."""
        self.backward_names.add(name)
        binding = self.binding(name)
        if binding is not None:
            binding[0].backwarded.add((binding[1], binding[2]))

    def is_loss(self, binding: Binding | None) -> bool:
        """Whether ``binding`` holds a loss tensor that is still attached to the graph.

        Decided by what the whole file showed: call it from ``end_file``, not mid-walk.
        """
        if binding is None:
            return False
        memo = self._loss_memo
        if binding in memo:
            return memo[binding]
        memo[binding] = False  # breaks cycles such as ``total = total + loss``
        scope, name, version = binding
        key = (name, version)
        kind = scope.kinds.get(key)
        result = kind == KIND_LOSS or key in scope.backwarded
        if not result and kind == KIND_DERIVED:
            result = any(self.is_loss(dep) for dep in scope.deps.get(key, ()))
        memo[binding] = result
        return result

    def expr_kind(self, node: ast.expr) -> tuple[str | None, tuple[Binding, ...]]:
        """What evaluating ``node`` yields, as far as the file tells: (kind, dependencies)."""
        if isinstance(node, ast.Name):
            binding = self.binding(node.id)
            if binding is None:
                return None, ()
            kind = self.kind_of(binding)
            if kind in (KIND_MODULE, KIND_LOSS_FN, KIND_OPTIMIZER, KIND_NUMBER, KIND_TENSOR):
                return kind, ()
            return KIND_DERIVED, (binding,)
        if isinstance(node, ast.Attribute):
            return self.attr_kind(node), ()
        if isinstance(node, ast.Constant):
            return (KIND_NUMBER, ()) if facts.is_number_literal(node) else (None, ())
        if isinstance(node, ast.BinOp):
            left_kind, left = self.expr_kind(node.left)
            right_kind, right = self.expr_kind(node.right)
            if KIND_TENSOR in (left_kind, right_kind) and not (left or right):
                return KIND_TENSOR, ()
            if left or right:
                return KIND_DERIVED, left + right
            if left_kind == KIND_NUMBER and right_kind == KIND_NUMBER:
                return KIND_NUMBER, ()
            return None, ()
        if isinstance(node, ast.Call):
            return self._call_kind(node)
        return None, ()

    def attr_kind(self, node: ast.Attribute) -> str | None:
        """The kind of ``self.<attr>`` in a method, from the class's assignments."""
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            info = self.current_class()
            if info is not None:
                return info.attr_kinds.get(node.attr)
        return None

    def current_class(self) -> ClassInfo | None:
        """The class whose method body is being walked (``self``'s class)."""
        scope = self.function
        while scope is not None:
            parent = scope.parent
            if parent is not None and parent.kind == "class":
                return parent.class_info
            scope = parent if parent is not None and parent.kind == "function" else None
        return None

    def _call_kind(self, node: ast.Call) -> tuple[str | None, tuple[Binding, ...]]:
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr in _KEEP_KIND_METHODS:
                return self.expr_kind(func.value)
            if func.attr in _NUMBER_METHODS:
                return KIND_NUMBER, ()
            if func.attr in ("detach", "clone"):
                return KIND_TENSOR, ()
            if func.attr == "forward" and self.expr_kind(func.value)[0] == KIND_MODULE:
                return KIND_TENSOR, ()
        elif (
            isinstance(func, ast.Name)
            and func.id in _NUMBER_BUILTINS
            and func.id not in self.imports
        ):
            return KIND_NUMBER, ()
        qualname = self.qualname(func)
        if qualname is not None:
            info = self.classes.get(qualname)
            if info is not None and info.is_module:
                return (KIND_LOSS_FN if info.is_loss else KIND_MODULE), ()
            if facts.is_loss_module_qualname(qualname):
                # reduction="none" gives one loss per element: a tensor, not a scalar loss
                return (KIND_MODULE if facts.reduces_to_none(node) else KIND_LOSS_FN), ()
            if facts.is_module_factory(qualname):
                return KIND_MODULE, ()
            if facts.is_optimizer_qualname(qualname):
                return KIND_OPTIMIZER, ()
            if qualname.startswith("torch.nn.functional."):
                if qualname.rsplit(".", 1)[1] in facts.LOSS_FUNCTIONS and not facts.reduces_to_none(
                    node
                ):
                    return KIND_LOSS, ()
                return KIND_TENSOR, ()
            head, _, last = qualname.rpartition(".")
            if head == "torch" and last in facts.TENSOR_FACTORIES:
                return KIND_TENSOR, ()
        callee_kind, _ = (
            self.expr_kind(func) if isinstance(func, ast.Name | ast.Attribute) else (None, ())
        )
        if callee_kind == KIND_LOSS_FN:
            return KIND_LOSS, ()
        if callee_kind == KIND_MODULE:
            return KIND_TENSOR, ()
        return None, ()

    def is_module_expr(self, node: ast.expr) -> bool:
        """Whether ``node`` certainly evaluates to an ``nn.Module``."""
        kind, _ = self.expr_kind(node)
        if kind in (KIND_MODULE, KIND_LOSS_FN):
            return True
        if isinstance(node, ast.Name) and node.id == "self":
            info = self.current_class()
            return info is not None and info.is_module
        return False

    def is_model_callee(self, func: ast.expr) -> bool:
        """Whether calling ``func`` runs a network: a known module, or one named like it."""
        if isinstance(func, ast.Name):
            name = func.id
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id != "self":
                return False
            name = func.attr
        else:
            return False
        kind, _ = self.expr_kind(func)
        if kind == KIND_MODULE:
            return True
        return (kind is None or kind == KIND_DERIVED) and facts.is_model_name(name)
