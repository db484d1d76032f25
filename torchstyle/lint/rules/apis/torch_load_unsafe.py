"""TS502: ``torch.load`` without ``weights_only=True``."""

from __future__ import annotations

import ast

from torchstyle.lint import facts, saves
from torchstyle.lint.base import Edit, Fix, Rule, after, on, on_call
from torchstyle.lint.context import FileContext
from torchstyle.lint.registry import register

_LOADS = frozenset({"torch.load", "torch.serialization.load"})


@register
class TorchLoadUnsafe(Rule):
    """``torch.load`` without ``weights_only=True``.

    What:
        A call of ``torch.load`` that does not pass ``weights_only``. An explicit
        ``weights_only=False`` is a deliberate choice and left alone, as is an explicit
        fallback (a ``torch.load`` under ``except TypeError:`` or under an ``if`` that
        tests ``weights_only``, for old torch versions). ``torch.load(f, **kwargs)`` is
        left alone too, unless ``kwargs`` are the enclosing function's own and none of its
        callers in the file passes ``weights_only`` (or ``**``) to it.

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
        (``vars(args)``) instead. The fix is offered only where the project saves nothing
        but plain data (tensors, state dicts, numbers, strings and containers of them):
        not after ``model = torch.load(f)`` (a whole pickled module), and not when any file
        of the project (the folder with its pyproject.toml, setup.py or .git) saves
        ``args``/``config``/namespace objects, a whole model or optimizer, numpy arrays, a
        dict built in a variable that holds one of those, or something the code does not
        show (a function that saves its argument and whose callers are not in the project).
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
        self.saves_objects: bool | None = None
        #: ``def f(path, **kwargs): torch.load(path, **kwargs)``: function name -> load calls.
        self.wrappers: dict[str, list[ast.Call]] = {}
        self.loads: list[ast.Call] = []

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
        if facts.keyword(node, "weights_only") is not None:
            return
        if facts.has_star_kwargs(node):
            wrapper = self._wrapper_name(node)
            if wrapper is not None:
                self.wrappers.setdefault(wrapper, []).append(node)
            return
        self.loads.append(node)  # judged at the end: the file's saves may come later

    def _wrapper_name(self, node: ast.Call) -> str | None:
        """The enclosing function's name when ``node`` passes on only its own ``**kwargs``."""
        scope = self.ctx.function
        if scope is None or not isinstance(scope.node, ast.FunctionDef | ast.AsyncFunctionDef):
            return None
        kwarg = scope.node.args.kwarg
        stars = [kw.value for kw in node.keywords if kw.arg is None]
        if kwarg is None or len(stars) != 1:
            return None
        star = stars[0]
        if not isinstance(star, ast.Name) or star.id != kwarg.arg:
            return None
        return scope.name

    def end_file(self) -> None:
        """Reports the ``**kwargs`` wrappers whose callers never pass ``weights_only``."""
        for node in self.loads:
            self.report(node, fix=self._fix(node))
        if not self.wrappers:
            return
        passes: dict[str, bool] = {}
        for call in ast.walk(self.ctx.tree):
            if isinstance(call, ast.Call):
                name = facts.last_name(call.func)
                if name in self.wrappers:
                    given = facts.keyword(call, "weights_only") or facts.has_star_kwargs(call)
                    passes[name] = passes.get(name, False) or bool(given)
        for name, loads in self.wrappers.items():
            if passes.get(name, True):
                continue  # never called here (callers elsewhere may pass it), or passed
            for node in loads:
                self.report(
                    node,
                    f"`torch.load` without `weights_only=True`: `{name}()` passes on its "
                    "`**kwargs`, and no caller of it passes `weights_only`; pass it to the "
                    "load (or from the callers)",
                )

    def _holds_objects(self) -> bool:
        """Whether this file or its project saves objects that ``weights_only`` refuses."""
        if self.saves_objects is None:
            root = saves.project_root(self.ctx.path)
            if root is None:  # code that is not in a file: it is the whole project
                self.saves_objects = saves.saves_objects([self.ctx.tree])
            else:  # the text being checked may be newer than the file on disk
                walk = self.ctx.walk_facts
                torch_names = {
                    alias
                    for alias, name in self.ctx.imports.items()
                    if name in ("torch", "torch.save")
                }
                walked = (walk.save_calls, walk.functions, torch_names)
                self.saves_objects = saves.save_facts(
                    self.ctx.tree, walked
                ).objects or saves.project_saves_objects(root)
        return self.saves_objects

    def _fix(self, node: ast.Call) -> Fix | None:
        args: list[ast.expr | ast.keyword] = [*node.args, *node.keywords]
        if not args or id(node) in self.whole_objects or self._holds_objects():
            return None
        last = max(args, key=lambda a: (a.end_lineno or 0, a.end_col_offset or 0))
        at = self.ctx.offset(last.end_lineno or 0, last.end_col_offset or 0)
        return Fix((Edit(at, at, ", weights_only=True"),), "unsafe")
