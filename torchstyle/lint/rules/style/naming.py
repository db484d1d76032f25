"""TS601: the guide's naming table."""

from __future__ import annotations

import ast
import re

from torchstyle.lint.base import Rule, on
from torchstyle.lint.context import FileContext
from torchstyle.lint.registry import register

_LOWER = re.compile(r"^_*[a-z][a-z0-9_]*$|^_+$")
_CAPS = re.compile(r"^_*[A-Z][A-Z0-9_]*$")
_CAPWORDS = re.compile(r"^_*[A-Z][a-zA-Z0-9]*$")
_DUNDER = re.compile(r"^__\w+__$")
_VISITOR = re.compile(r"^(?:visit|leave|depart|generic_visit)_[A-Z]\w*$")
_FRAMEWORK_METHODS = frozenset(
    {"setUp", "tearDown", "setUpClass", "tearDownClass", "setUpModule", "tearDownModule"}
    | {"asyncSetUp", "asyncTearDown", "setUpTestData", "addCleanup", "runTest"}
)
_OVERRIDE = frozenset(
    {"typing.override", "typing_extensions.override", "override", "overrides.overrides"}
)


@register
class Naming(Rule):
    """Names that break the guide's naming table (off by default).

    What:
        Classes not in ``CapWords``; functions, methods and arguments not in
        ``lower_with_under``; variables neither ``lower_with_under`` nor
        ``CAPS_WITH_UNDER`` (module- and class-level names may also be ``CapWords`` aliases).
        A leading underscore is fine everywhere. Methods that must match a framework's
        spelling (``setUp``, ``visit_Call``, ``@override``) are left alone.

    Why:
        The guide follows the Google Python style guide and tabulates it: packages and
        modules ``lower_with_under``, classes ``CapWords``, constants ``CAPS_WITH_UNDER``,
        functions and variables ``lower_with_under``. One convention tells a reader what a
        name is (a class, a constant, a value) before reading its definition. Off by default
        because research code often keeps math names such as ``X_train`` or ``netG``.

    Example:
        class residual_block(nn.Module):
            def buildBlock(self, inChannels):
                lossG = ...

    Use instead:
        class ResidualBlock(nn.Module):
            def build_block(self, in_channels):
                loss_g = ...
    """

    code = "TS601"
    name = "naming"
    message = "naming"
    default_enabled = False

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the names already reported."""
        super().begin_file(ctx)
        self.seen: set[tuple[int, str]] = set()

    def _once(self, name: str) -> bool:
        key = (id(self.ctx.scope), name)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    @on(ast.ClassDef)
    def class_def(self, node: ast.ClassDef) -> None:
        """Checks a class name."""
        if not _CAPWORDS.match(node.name):
            self.report(node, f"class name `{node.name}` is not CapWords")

    @on(ast.FunctionDef, ast.AsyncFunctionDef)
    def function_def(self, node: ast.FunctionDef) -> None:
        """Checks a function name and its arguments."""
        name = node.name
        if not (_LOWER.match(name) or _DUNDER.match(name) or self._exempt(node)):
            self.report(node, f"function name `{name}` is not lower_with_under")
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and not (_LOWER.match(arg.arg) or _CAPS.match(arg.arg)):
                self.report(arg, f"argument name `{arg.arg}` is not lower_with_under")

    def _exempt(self, node: ast.FunctionDef) -> bool:
        if node.name in _FRAMEWORK_METHODS or _VISITOR.match(node.name):
            return True
        return any(self.ctx.qualname(d) in _OVERRIDE for d in node.decorator_list)

    def _check_target(self, target: ast.expr) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._check_target(elt)
            return
        if isinstance(target, ast.Starred):
            self._check_target(target.value)
            return
        if not isinstance(target, ast.Name):
            return
        name = target.id
        if _LOWER.match(name) or _CAPS.match(name):
            return
        if self.ctx.scope.kind != "function" and _CAPWORDS.match(name):
            return
        if self._once(name):
            self.report(
                target, f"variable name `{name}` is neither lower_with_under nor CAPS_WITH_UNDER"
            )

    @on(ast.Assign)
    def assign(self, node: ast.Assign) -> None:
        """Checks assigned names."""
        for target in node.targets:
            self._check_target(target)

    @on(ast.AnnAssign)
    def ann_assign(self, node: ast.AnnAssign) -> None:
        """Checks an annotated name."""
        self._check_target(node.target)

    @on(ast.For, ast.AsyncFor)
    def for_target(self, node: ast.For) -> None:
        """Checks loop variables."""
        self._check_target(node.target)
