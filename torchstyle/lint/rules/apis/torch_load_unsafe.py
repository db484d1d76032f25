"""TS502: ``torch.load`` without ``weights_only=True``."""

from __future__ import annotations

import ast
import re

from torchstyle.lint import facts
from torchstyle.lint.base import Edit, Fix, Rule, after, on, on_call
from torchstyle.lint.context import FileContext
from torchstyle.lint.registry import register

_LOADS = frozenset({"torch.load", "torch.serialization.load"})
_SAVES_OBJECTS = re.compile(
    r"\bsave\(\s*(?:\{[^}]*\b(?:args|opt|opts|config|cfg|hparams|namespace)\b"
    r"|(?:self\.)?(?:model|net)\b\s*,)"
)


@register
class TorchLoadUnsafe(Rule):
    """``torch.load`` without ``weights_only=True``.

    What:
        A call of ``torch.load`` that does not pass ``weights_only``. An explicit
        ``weights_only=False`` is a deliberate choice and left alone, as is ``**kwargs`` and
        an explicit fallback (a ``torch.load`` under ``except TypeError:`` or under an
        ``if`` that tests ``weights_only``, for old torch versions).

    Why:
        Without ``weights_only=True``, ``torch.load`` unpickles arbitrary Python objects: a
        checkpoint downloaded or shared by someone else can run any code on load. PyTorch
        2.6 made ``True`` the default, so code that relies on the old default breaks or
        behaves differently across versions; saying it keeps both safe and explicit.
        Checkpoints of tensors, dicts, lists and numbers load fine with it.

    Example:
        state = torch.load("checkpoint.pt")

    Use instead:
        state = torch.load("checkpoint.pt", map_location="cpu", weights_only=True)

    Fix:
        Unsafe: adds ``weights_only=True``. A checkpoint that holds other objects (an
        ``argparse.Namespace``, a config object) then fails to load: register those classes
        with ``torch.serialization.add_safe_globals([Namespace])``, or save plain dicts
        (``vars(args)``) instead. The fix is not offered where the code shows such
        objects: ``model = torch.load(f)`` (a whole pickled module), or a file that saves
        ``{"args": args, ...}`` or ``torch.save(model, f)``.
    """

    code = "TS502"
    name = "torch-load-unsafe"
    message = (
        "`torch.load` without `weights_only=True` can run arbitrary code from the file; "
        "pass it (register other saved classes with torch.serialization.add_safe_globals)"
    )
    fixable = "unsafe"
    triggers = ("load",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the fallback depth."""
        super().begin_file(ctx)
        self.fallbacks: list[ast.AST] = []
        self.whole_objects: set[int] = set()
        # torch.save({"args": args, ...}) or torch.save(model, ...): this file's checkpoints
        # hold objects that weights_only=True refuses, so adding it would break loading
        self.holds_objects = bool(_SAVES_OBJECTS.search(ctx.source))

    @on(ast.Assign)
    def assign(self, node: ast.Assign) -> None:
        """Notes ``model = torch.load(f)``: a whole pickled module, not a state dict."""
        target = node.targets[0] if len(node.targets) == 1 else None
        if isinstance(target, ast.Name) and facts.is_model_name(target.id):
            self.whole_objects.add(id(node.value))

    @on(ast.ExceptHandler, ast.If)
    def enter(self, node: ast.ExceptHandler | ast.If) -> None:
        """Notes entering an explicit fallback: ``except TypeError:``, ``if not weights_only:``."""
        if isinstance(node, ast.If):
            if "weights_only" in facts.names_in(node.test):
                self.fallbacks.append(node)
        elif node.type is not None and "TypeError" in facts.names_in(node.type):
            self.fallbacks.append(node)

    @after(ast.ExceptHandler, ast.If)
    def leave(self, node: ast.ExceptHandler | ast.If) -> None:
        """Notes leaving it."""
        if self.fallbacks and self.fallbacks[-1] is node:
            self.fallbacks.pop()

    @on_call("load")
    def call(self, node: ast.Call) -> None:
        """Checks one call."""
        if self.fallbacks or self.ctx.qualname(node.func) not in _LOADS:
            return
        if facts.keyword(node, "weights_only") is not None or facts.has_star_kwargs(node):
            return
        self.report(node, fix=self._fix(node))

    def _fix(self, node: ast.Call) -> Fix | None:
        args: list[ast.expr | ast.keyword] = [*node.args, *node.keywords]
        if not args or self.holds_objects or id(node) in self.whole_objects:
            return None
        last = max(args, key=lambda a: (a.end_lineno or 0, a.end_col_offset or 0))
        at = self.ctx.offset(last.end_lineno or 0, last.end_col_offset or 0)
        return Fix((Edit(at, at, ", weights_only=True"),), "unsafe")
