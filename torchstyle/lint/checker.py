"""The single pass: walk a file's AST once and hand each node to every rule that wants it.

Handlers are looked up in a table keyed on the node's type, built once per set of active rules.
The walker itself keeps :class:`~torchstyle.lint.context.FileContext` current (imports,
scopes, loops, guards, autograd mode, bindings) so that no rule has to walk the tree again.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from typing import Any

from torchstyle.lint import facts
from torchstyle.lint.base import Rule
from torchstyle.lint.context import (
    KIND_DERIVED,
    KIND_MODULE,
    KIND_NUMBER,
    KIND_TENSOR,
    ClassInfo,
    FileContext,
    LoopFrame,
    Scope,
)
from torchstyle.lint.semantic import pairs

Handler = Callable[[Any], None]

#: Callee names that may build an optimizer (``Adam``, ``LARS``, a project's ``MyOptimizer``).
_OPTIMIZER_WORDS = re.compile(r"Adam|SGD|LARS|Lamb|Optim|RMSprop|Adagrad|Adadelta|LBFGS|Lion")

# Fields that never hold child nodes worth visiting (names, flags, expression contexts).
_SKIP_FIELDS = frozenset(
    {"ctx", "type_comment", "name", "id", "attr", "arg", "module", "level", "conversion"}
    | {"is_async", "simple", "kind", "type_ignores"}
)
_LEAF_TYPES = (ast.Constant, ast.Name, ast.Global, ast.Nonlocal, ast.alias, ast.MatchSingleton)
_FIELDS: dict[type, tuple[str, ...]] = {}

_LOOP_VAR_KINDS = {
    "parameters": KIND_TENSOR,
    "buffers": KIND_TENSOR,
    "modules": KIND_MODULE,
    "children": KIND_MODULE,
}
_NAMED_LOOP_VAR_KINDS = {
    "named_parameters": KIND_TENSOR,
    "named_buffers": KIND_TENSOR,
    "named_modules": KIND_MODULE,
    "named_children": KIND_MODULE,
}


def _fields(cls: type) -> tuple[str, ...]:
    if issubclass(cls, _LEAF_TYPES):
        fields: tuple[str, ...] = ()
    else:
        fields = tuple(f for f in cls._fields if f not in _SKIP_FIELDS)  # type: ignore[attr-defined]
    _FIELDS[cls] = fields
    return fields


class _Plan:
    """Handlers of one set of active rules, keyed on node type."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        pre: dict[type, list[Handler]] = {}
        post: dict[type, list[Handler]] = {}
        calls: dict[str, list[Handler]] = {}
        for rule in rules:
            for attr in dir(type(rule)):
                method = getattr(type(rule), attr, None)
                for t in getattr(method, "_lint_on", ()):
                    pre.setdefault(t, []).append(getattr(rule, attr))
                for t in getattr(method, "_lint_after", ()):
                    post.setdefault(t, []).append(getattr(rule, attr))
                for name in getattr(method, "_lint_calls", ()):
                    calls.setdefault(name, []).append(getattr(rule, attr))
        self.pre = {t: tuple(h) for t, h in pre.items()}
        self.post = {t: tuple(h) for t, h in post.items()}
        #: callee's last name -> handlers (see :func:`torchstyle.lint.base.on_call`)
        self.calls = {name: tuple(h) for name, h in calls.items()}
        self.loop_exit = tuple(
            r.on_loop_exit for r in rules if type(r).on_loop_exit is not Rule.on_loop_exit
        )
        self.scope_exit = tuple(
            r.on_scope_exit for r in rules if type(r).on_scope_exit is not Rule.on_scope_exit
        )
        self.rules = tuple(rules)
        #: node type -> (pre-handlers, special traversal, child fields, post-handlers)
        self.table: dict[type, _Entry] = {}
        #: Leaf node types nobody handles: the walker does not even call visit() on them.
        self.skip: set[type] = {
            t for t in (ast.Name, ast.Constant) if t not in self.pre and t not in self.post
        }

    def entry(self, cls: type) -> _Entry:
        """The dispatch entry of node type ``cls`` (built on first use)."""
        entry = (
            self.pre.get(cls),
            _SPECIAL.get(cls),
            _FIELDS.get(cls) or _fields(cls),
            self.post.get(cls),
        )
        self.table[cls] = entry
        return entry


_Entry = tuple[
    "tuple[Handler, ...] | None",
    "Callable[[Checker, Any], None] | None",
    tuple[str, ...],
    "tuple[Handler, ...] | None",
]


class Checker:
    """Runs a fixed set of rule instances over files, one walk per file."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._plans: dict[tuple[int, ...], _Plan] = {}
        self._plan: _Plan = _Plan(())
        self._table: dict[type, _Entry] = {}
        self._skip: set[type] = set()
        self.ctx: FileContext | None = None

    def plan_for(self, active: Sequence[int]) -> _Plan:
        """The handler tables of the rules at indexes ``active`` (cached)."""
        key = tuple(active)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan([self.rules[i] for i in key])
        return plan

    def check(self, ctx: FileContext, active: Sequence[int]) -> None:
        """Walks ``ctx.tree`` once with the rules at indexes ``active``; findings go to ``ctx``."""
        plan = self.plan_for(active)
        self._plan, self._table, self._skip, self.ctx = plan, plan.table, plan.skip, ctx
        for rule in plan.rules:
            rule.begin_file(ctx)
        try:
            self.visit(ctx.tree)
            for rule in plan.rules:
                rule.end_file()
        finally:
            # Drop every reference to the file's AST now, while the caller still has the
            # garbage collector paused: a tree kept alive into the next file would be scanned
            # by every collection until then.
            for rule in plan.rules:
                rule.__dict__.clear()
            self.ctx = None

    # -- generic traversal -------------------------------------------------------------------

    def visit(self, node: ast.AST) -> None:
        """Visits ``node``: pre-handlers, children (or a special traversal), post-handlers."""
        entry = self._table.get(node.__class__) or self._plan.entry(node.__class__)
        pre, special, fields, post = entry
        if pre is not None:
            for handler in pre:
                handler(node)
        if special is not None:
            special(self, node)
        elif fields:
            visit, skip = self.visit, self._skip
            for name in fields:
                value = getattr(node, name, None)
                if value.__class__ is list:
                    for item in value:
                        if item.__class__ not in skip and isinstance(item, ast.AST):
                            visit(item)
                elif value.__class__ not in skip and isinstance(value, ast.AST):
                    visit(value)
        if post is not None:
            for handler in post:
                handler(node)

    def visit_children(self, node: ast.AST) -> None:
        """Visits the children of ``node`` in field order."""
        visit, skip = self.visit, self._skip
        for name in _FIELDS.get(node.__class__) or _fields(node.__class__):
            value = getattr(node, name, None)
            if value.__class__ is list:
                for item in value:
                    if item.__class__ not in skip and isinstance(item, ast.AST):
                        visit(item)
            elif value.__class__ not in skip and isinstance(value, ast.AST):
                visit(value)

    def visit_list(self, nodes: Sequence[ast.AST | None]) -> None:
        """Visits each node of ``nodes`` (skipping None)."""
        visit = self.visit
        for node in nodes:
            if node is not None:
                visit(node)

    def guarded(self, nodes: Sequence[ast.AST]) -> None:
        """Visits ``nodes`` as code that does not run on every pass (an ``if`` branch, ...)."""
        ctx = self.ctx
        assert ctx is not None
        ctx.guard_depth += 1
        self.visit_list(nodes)
        ctx.guard_depth -= 1

    def exit_scope(self, scope: Scope) -> None:
        """Tells the rules that ``scope`` ends."""
        for handler in self._plan.scope_exit:
            handler(scope)


# -- special traversals ----------------------------------------------------------------------


def _module(w: Checker, node: ast.Module) -> None:
    ctx = w.ctx
    assert ctx is not None
    w.visit_list(node.body)
    w.exit_scope(ctx.scope)


def _is_grad_off(ctx: FileContext, expr: ast.expr) -> bool:
    target = expr.func if isinstance(expr, ast.Call) else expr
    qualname = ctx.qualname(target)
    if qualname in facts.GRAD_OFF:
        return True
    # a project's own wrapper (yolov5's @smart_inference_mode()) says what it does in its name
    name = facts.last_name(target) or ""
    return name.endswith(("no_grad", "inference_mode"))


def _annotation_kind(ctx: FileContext, annotation: ast.expr | None) -> str | None:
    if annotation is None:
        return None
    qualname = ctx.qualname(annotation)
    if qualname is None:
        return None
    if facts.is_nn_module_qualname(qualname):
        return KIND_MODULE
    if qualname in ("torch.Tensor", "torch.nn.Parameter"):
        return KIND_TENSOR
    return None


def _function(w: Checker, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    ctx = w.ctx
    assert ctx is not None
    args = node.args
    w.visit_list(node.decorator_list)
    w.visit_list(args.defaults)
    w.visit_list(args.kw_defaults)
    grad_off = any(_is_grad_off(ctx, d) for d in node.decorator_list)
    scope = Scope("function", node, ctx.scope, node.name, grad_off=grad_off)
    saved = (ctx.scope, ctx.loop, ctx.grad_off_depth)
    ctx.scope, ctx.loop, ctx.grad_off_depth = scope, None, int(grad_off)
    all_args = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if args.vararg is not None:
        all_args.append(args.vararg)
    if args.kwarg is not None:
        all_args.append(args.kwarg)
    for arg in all_args:
        ctx.bind(arg.arg, _annotation_kind(ctx, arg.annotation))
    w.visit_list(node.body)
    w.exit_scope(scope)
    walk = ctx.walk_facts
    walk.functions.append(node)
    walk.function_steps[node.name] = walk.function_steps.get(node.name, False) or scope.has_step
    walk.function_calls.setdefault(node.name, set()).update(scope.called)
    ctx.scope, ctx.loop, ctx.grad_off_depth = saved


def _class(w: Checker, node: ast.ClassDef) -> None:
    ctx = w.ctx
    assert ctx is not None
    w.visit_list(node.decorator_list)
    w.visit_list(node.bases)
    w.visit_list(node.keywords)
    is_module = is_dataset = is_loss = False
    plain = True
    for base in node.bases:
        qualname = ctx.qualname(base)
        if qualname is None:
            plain = False
            continue
        local = ctx.classes.get(qualname)
        if local is not None:
            is_module |= local.is_module
            is_dataset |= local.is_dataset
            is_loss |= local.is_loss
            plain &= local.plain
        elif facts.is_nn_module_qualname(qualname):
            is_module = True
            is_loss |= qualname.endswith("Loss") or qualname.endswith("._Loss")
        elif qualname in facts.DATASET_BASES or qualname.startswith("torchvision.datasets."):
            is_dataset = True
            plain = False
        elif qualname not in ("object", "abc.ABC"):
            # a base from the project's other files: follow it there
            kind = ctx.semantic.class_is_module(base)
            is_module |= kind is True
            plain &= kind is False
    is_loss = is_module and (is_loss or node.name.endswith("Loss"))
    info = ClassInfo(node.name, node, is_module, is_dataset, is_loss)
    info.plain = plain and not is_module
    ctx.classes[node.name] = info
    scope = Scope("class", node, ctx.scope, node.name, class_info=info)
    saved = (ctx.scope, ctx.loop)
    ctx.scope, ctx.loop = scope, None
    w.visit_list(node.body)
    w.exit_scope(scope)
    ctx.scope, ctx.loop = saved


def _target_names(target: ast.expr, out: list[str]) -> list[str]:
    if isinstance(target, ast.Name):
        out.append(target.id)
    elif isinstance(target, ast.Tuple | ast.List):
        for elt in target.elts:
            _target_names(elt, out)
    elif isinstance(target, ast.Starred):
        _target_names(target.value, out)
    return out


def _bind_loop_target(ctx: FileContext, node: ast.For | ast.AsyncFor) -> None:
    target, it = node.target, node.iter
    method = it.func.attr if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) else ""
    if isinstance(target, ast.Name):
        ctx.bind(target.id, _LOOP_VAR_KINDS.get(method))
        return
    names = _target_names(target, [])
    kind = _NAMED_LOOP_VAR_KINDS.get(method)
    for i, name in enumerate(names):
        ctx.bind(name, kind if (i == 1 and len(names) == 2) else None)


def _enter_loop(ctx: FileContext, node: ast.For | ast.AsyncFor | ast.While) -> LoopFrame:
    targets: frozenset[str] = frozenset()
    if isinstance(node, ast.For | ast.AsyncFor):
        targets = frozenset(_target_names(node.target, []))
    frame = LoopFrame(node, ctx.loop, targets, ctx.guard_depth, ctx.grad_off)
    ctx.loop = frame
    return frame


def _exit_loop(w: Checker, frame: LoopFrame) -> None:
    ctx = w.ctx
    assert ctx is not None
    for handler in w._plan.loop_exit:
        handler(frame)
    parent = frame.parent
    if parent is not None:
        parent.nested_step |= frame.has_step
        parent.any_backward |= frame.any_backward
        parent.child_step |= frame.direct_step
        parent.calls_model |= frame.calls_model
        parent.grad_off_inside |= frame.grad_off_inside
        parent.bound |= frame.bound
    ctx.loop = parent


def _for(w: Checker, node: ast.For | ast.AsyncFor) -> None:
    ctx = w.ctx
    assert ctx is not None
    w.visit(node.iter)
    frame = _enter_loop(ctx, node)
    _bind_loop_target(ctx, node)
    w.visit(node.target)
    w.visit_list(node.body)
    _exit_loop(w, frame)
    w.guarded(node.orelse)


def _while(w: Checker, node: ast.While) -> None:
    ctx = w.ctx
    assert ctx is not None
    frame = _enter_loop(ctx, node)
    w.visit(node.test)
    w.visit_list(node.body)
    _exit_loop(w, frame)
    w.guarded(node.orelse)


def _if(w: Checker, node: ast.If | ast.IfExp) -> None:
    w.visit(node.test)
    ctx = w.ctx
    assert ctx is not None
    ctx.guard_depth += 1
    if isinstance(node, ast.If):
        w.visit_list(node.body)
        w.visit_list(node.orelse)
    else:
        w.visit(node.body)
        w.visit(node.orelse)
    ctx.guard_depth -= 1


def _try(w: Checker, node: ast.Try) -> None:
    w.visit_list(node.body)
    w.guarded(node.handlers)
    w.visit_list(node.orelse)
    w.visit_list(node.finalbody)


def _match(w: Checker, node: ast.Match) -> None:
    w.visit(node.subject)
    w.guarded(node.cases)


def _with(w: Checker, node: ast.With | ast.AsyncWith) -> None:
    ctx = w.ctx
    assert ctx is not None
    off = False
    for item in node.items:
        w.visit(item.context_expr)
        if item.optional_vars is not None:
            w.visit(item.optional_vars)
            for name in _target_names(item.optional_vars, []):
                ctx.bind(name, None)
        off = off or _is_grad_off(ctx, item.context_expr)
    if not off:
        w.visit_list(node.body)
        return
    if ctx.loop is not None:
        ctx.loop.grad_off_inside = True
    ctx.grad_off_depth += 1
    w.visit_list(node.body)
    ctx.grad_off_depth -= 1


def _bind_assignment(ctx: FileContext, target: ast.expr, value: ast.expr | None) -> None:
    if isinstance(target, ast.Name):
        kind, deps = ctx.expr_kind(value) if value is not None else (None, ())
        ctx.bind(target.id, kind, deps)
    elif isinstance(target, ast.Tuple | ast.List | ast.Starred):
        for name in _target_names(target, []):
            ctx.bind(name, None)
    elif (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
        and value is not None
    ):
        info = ctx.current_class()
        if info is not None:
            kind, _ = ctx.expr_kind(value)
            if kind in (KIND_MODULE, "lossfn", "optimizer"):
                info.attr_kinds[target.attr] = kind
            else:
                info.attr_kinds.pop(target.attr, None)


def _assign(w: Checker, node: ast.Assign) -> None:
    ctx = w.ctx
    assert ctx is not None
    w.visit(node.value)
    w.visit_list(node.targets)
    assigns = ctx.walk_facts.assigns
    for target in node.targets:
        _bind_assignment(ctx, target, node.value)
        pairs(target, node.value, assigns)


def _ann_assign(w: Checker, node: ast.AnnAssign) -> None:
    ctx = w.ctx
    assert ctx is not None
    if node.value is not None:
        w.visit(node.value)
    w.visit(node.target)
    if node.value is not None:
        _bind_assignment(ctx, node.target, node.value)
        pairs(node.target, node.value, ctx.walk_facts.assigns)


def _aug_assign(w: Checker, node: ast.AugAssign) -> None:
    ctx = w.ctx
    assert ctx is not None
    w.visit(node.value)
    w.visit(node.target)
    target = node.target
    if not isinstance(target, ast.Name):
        return
    old = ctx.binding(target.id)
    kind, deps = ctx.expr_kind(node.value)
    if kind == KIND_NUMBER and ctx.kind_of(old) == KIND_NUMBER:
        ctx.bind(target.id, KIND_NUMBER)
    elif kind == KIND_TENSOR:
        ctx.bind(target.id, KIND_TENSOR)
    else:
        ctx.bind(target.id, KIND_DERIVED, ((old,) if old else ()) + deps)


def _import(w: Checker, node: ast.Import | ast.ImportFrom) -> None:
    ctx = w.ctx
    assert ctx is not None
    ctx.add_import(node)


def _call(w: Checker, node: ast.Call) -> None:
    ctx = w.ctx
    assert ctx is not None
    func = node.func
    if isinstance(func, ast.Attribute):
        _training_call(ctx, node, func)
    loop = ctx.loop
    if loop is not None and not loop.calls_model and ctx.is_model_callee(func):
        loop.calls_model = True
    key = _callee_key(ctx, func)
    _record_call(ctx, node, key)
    calls = w._plan.calls
    if calls:
        handlers = calls.get(key)
        if handlers is not None:
            for handler in handlers:
                handler(node)
    w.visit_children(node)


def _training_call(ctx: FileContext, node: ast.Call, func: ast.Attribute) -> None:
    """Notes a backward, ``zero_grad``, optimizer step or ``set_grad_enabled`` in its scope
    and loop."""
    attr = func.attr
    loop = ctx.loop
    step = False
    if attr in ("backward", "manual_backward"):
        if node.args and (attr == "manual_backward" or facts.backward_takes_argument(func)):
            roots = facts.loss_roots(node.args[0])
        else:
            roots = facts.loss_roots(func.value)
        for name in roots:
            ctx.mark_backwarded(name)
        ctx.scope.has_step = True
        if loop is not None:
            loop.direct_backward = loop.any_backward = True
            step = loop.direct_zero_grad
    elif attr == "zero_grad":
        if loop is not None:
            loop.direct_zero_grad = True
            step = loop.direct_backward
    elif attr == "step":
        step = facts.is_optimizer_step(func)
    elif attr == "set_grad_enabled" and node.args:
        _set_grad_enabled(ctx, node.args[0], func)
    if step:
        ctx.scope.has_step = True
        if loop is not None:
            loop.direct_step = True


def _set_grad_enabled(ctx: FileContext, flag: ast.expr, func: ast.Attribute) -> None:
    """``torch.set_grad_enabled(False)`` turns gradients off until the end of this body;
    ``(True)`` in a ``@no_grad`` function turns them on again from here."""
    if facts.is_false(flag) and ctx.qualname(func) in facts.GRAD_OFF and not ctx.scope.grad_off:
        ctx.scope.grad_off = True
        ctx.grad_off_depth += 1
    elif (
        facts.is_true(flag)
        and ctx.scope.grad_off
        and ctx.grad_off_depth == 1
        and ctx.qualname(func) in facts.GRAD_OFF
    ):
        ctx.scope.grad_off = False
        ctx.grad_off_depth = 0


def _callee_key(ctx: FileContext, func: ast.expr) -> str:
    """The last part of the called name (an imported alias resolved); "" for other callees."""
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        alias = ctx.imports.get(func.id)
        return func.id if alias is None else alias.rpartition(".")[2]
    return ""


def _record_call(ctx: FileContext, node: ast.Call, key: str) -> None:
    """Records the call in the walk's facts (grad modes, saves, optimizers) and its scope."""
    walk = ctx.walk_facts
    modes = walk.call_modes
    modes[key] = modes.get(key, 0) | (2 if ctx.grad_off_depth > 0 else 1)
    if key == "save":
        walk.save_calls.append(node)
    elif key == "requires_grad_" or (key[:1].isupper() and _OPTIMIZER_WORDS.search(key)):
        walk.optimizer_calls.append(node)
    ctx.scope.called.add(key)


_SPECIAL: dict[type, Callable[[Checker, Any], None]] = {
    ast.Module: _module,
    ast.FunctionDef: _function,
    ast.AsyncFunctionDef: _function,
    ast.ClassDef: _class,
    ast.For: _for,
    ast.AsyncFor: _for,
    ast.While: _while,
    ast.If: _if,
    ast.IfExp: _if,
    ast.Try: _try,
    ast.Match: _match,
    ast.With: _with,
    ast.AsyncWith: _with,
    ast.Assign: _assign,
    ast.AnnAssign: _ann_assign,
    ast.AugAssign: _aug_assign,
    ast.Import: _import,
    ast.ImportFrom: _import,
    ast.Call: _call,
}
if hasattr(ast, "TryStar"):  # Python 3.11+
    _SPECIAL[ast.TryStar] = _try
