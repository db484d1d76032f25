"""TS503: deprecated and removed PyTorch and torchvision APIs, from a table of notices."""

from __future__ import annotations

import ast
import builtins
import re

from torchstyle.lint import deprecations as dep
from torchstyle.lint import facts
from torchstyle.lint.base import Applicability, Edit, Fix, Rule, after, on, on_call
from torchstyle.lint.context import FileContext
from torchstyle.lint.registry import register

_LOSS_KEYWORDS = ("size_average", "reduce")
#: Tests of an ``if`` that picks an API by version: the old branch is there on purpose.
_VERSION_TEST = re.compile(r"version|VERSION|GREATER|LESS|hasattr|TORCH_\w+|torch_\d", re.I)
_PRETRAINED = {"pretrained": "weights", "pretrained_backbone": "weights_backbone"}
#: The last names of the table's APIs: calls and references are looked up by them.
_LAST_NAMES = frozenset(d.name.rsplit(".", 1)[1] for d in dep.TABLE)
_BUILTINS = frozenset(dir(builtins))
#: Arguments that cannot simply be prefixed with ``name=``.
_BARE_ONLY = (ast.NamedExpr, ast.GeneratorExp, ast.Starred)


def _message(name: str, entry: dep.Deprecation, imported: bool = False) -> str:
    what = "was removed" if entry.removed else "is deprecated"
    since = (
        f" (deprecated since torch {entry.since}; it raises now)"
        if entry.removed
        else f" since torch {entry.since}"
    )
    note = f" ({entry.note})" if entry.note else ""
    where = "; change the import" if imported else ""
    return f"`{name}` {what}{since}{note}; use `{entry.replacement}`{where}"


@register
class DeprecatedApi(Rule):
    """A deprecated or removed PyTorch or torchvision API, with its replacement.

    What:
        Uses of the APIs in ``torchstyle/lint/deprecations.py``, a table built from the
        deprecation notices in PyTorch's and torchvision's own source (their warnings and
        docstrings), each with the torch version it applies from: ``torch.cuda.amp``
        (use ``torch.amp``), ``functorch`` (``torch.func``), ``torch.norm``,
        ``torch.range``, ``torch.ger``, ``torch.svd``, ``torch.lu_solve``,
        ``torch.triangular_solve``, the removed ``torch.solve``/``symeig``/``qr``/
        ``cholesky``/..., ``nn.UpsamplingNearest2d``, ``F.upsample``,
        ``_register_pytree_node``, ``sdp_kernel``, ``weight_norm``, torchvision's image
        I/O and ``v2.ToTensor``, and more. A call, a reference (``nn.UpsamplingNearest2d``
        passed along) and the import line of a deprecated name (``from functorch import
        vmap``) are each reported. Deprecated arguments too: torchvision's
        ``pretrained=`` and positional ``resnet50(True)`` (use ``weights=``),
        ``torch.utils.checkpoint`` without ``use_reentrant`` (also where the call is
        written above the import, in a function), and the ``size_average``/``reduce``
        arguments of losses. With ``target-torch = "2.1"`` in ``[tool.torchstyle.lint]``,
        notices from later versions are not reported (their replacements may not exist in
        the targeted version). Deliberate fallbacks are left alone: code in an ``except``
        handler, under an ``if`` on the torch version (``if _TORCH_GREATER_EQUAL_2_4``,
        ``hasattr(torch, ...)``), and names imported in an ``except ImportError:`` branch.

    Why:
        Deprecated APIs warn on every run, and are removed in a later release; the
        replacements are usually more general (``torch.amp`` serves every device) or
        fix a known problem (``use_reentrant=False`` supports more of autograd). Moving
        while the old name still works is cheap; moving after it is gone is an outage.

    Example:
        scaler = torch.cuda.amp.GradScaler()
        with torch.cuda.amp.autocast(use_amp):
            loss = criterion(model(inputs), targets)
        backbone = torchvision.models.resnet50(pretrained=True)

    Use instead:
        scaler = torch.amp.GradScaler("cuda")
        with torch.amp.autocast("cuda", enabled=use_amp):
            loss = criterion(model(inputs), targets)
        backbone = torchvision.models.resnet50(weights="DEFAULT")

    Fix:
        A fix moves the call through the old API's signature: positional arguments become
        keywords under the old API's names before the callee changes, so
        ``torch.cuda.amp.autocast(flag)`` becomes ``torch.amp.autocast("cuda",
        enabled=flag)`` (never ``dtype=flag``). Safe where the replacement behaves the same
        (``torch.amp`` with the device first, ``torch.func``, ``torch.outer``,
        ``F.interpolate``, ``pretrained=False`` -> ``weights=None``); unsafe where it may
        not (``assert_close`` is stricter, ``weight_norm``'s state-dict keys change,
        ``pretrained=True`` -> ``weights="DEFAULT"`` may pick newer weights,
        ``use_reentrant=False`` runs the other implementation). Only calls spelled with
        the full module path (``torch.cuda.amp.autocast()``), or through an alias of the
        new API's module (``F.upsample`` -> ``F.interpolate``), are rewritten; a name
        imported from the old module is reported without a fix (the import changes too).
    """

    code = "TS503"
    name = "deprecated-api"
    message = "a deprecated API"
    fixable = "unsafe"
    triggers = ("torch",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the fallback tracking."""
        super().begin_file(ctx)
        self.fallbacks: list[ast.AST] = []
        self.fallback_names: set[str] = set()
        #: Callees already judged as calls (not reported again as references).
        self.callees: set[int] = set()
        #: Calls of names the file imports only further down: judged at the end.
        self.deferred: list[tuple[ast.Call, bool]] = []

    @on(ast.ExceptHandler, ast.If, ast.IfExp)
    def enter(self, node: ast.ExceptHandler | ast.If | ast.IfExp) -> None:
        """Notes entering a fallback: an ``except`` handler or an ``if`` on the torch version."""
        if isinstance(node, ast.ExceptHandler) or _VERSION_TEST.search(self.ctx.text(node.test)):
            self.fallbacks.append(node)

    @after(ast.ExceptHandler, ast.If, ast.IfExp)
    def leave(self, node: ast.AST) -> None:
        """Notes leaving it."""
        if self.fallbacks and self.fallbacks[-1] is node:
            self.fallbacks.pop()

    @on(ast.ImportFrom)
    def import_from(self, node: ast.ImportFrom) -> None:
        """Reports deprecated names where they are imported (not in a fallback)."""
        if self.fallbacks:
            self.fallback_names.update(a.asname or a.name for a in node.names)
            return
        if node.level or not node.module:
            return
        for alias in node.names:
            name = f"{node.module}.{alias.name}"
            entry = dep.BY_NAME.get(name)
            if entry is not None and dep.applies(entry.since, self.ctx.target_torch):
                self.report(alias, _message(name, entry, imported=True))

    def _in_fallback(self, node: ast.Call) -> bool:
        func = node.func
        return bool(self.fallbacks) or (
            isinstance(func, ast.Name) and func.id in self.fallback_names
        )

    def _unresolved(self, node: ast.Call, qualname: str | None) -> bool:
        """A bare name called in a function before the file imports it: judged at the end."""
        func = node.func
        if not isinstance(func, ast.Name) or func.id in self.ctx.imports or func.id in _BUILTINS:
            return False
        if self.ctx.function is None or qualname != func.id:
            return False
        if self.ctx.binding(func.id) is not None:
            return False  # a parameter or variable of the function: not the import
        self.deferred.append((node, self._in_fallback(node)))
        return True

    def end_file(self) -> None:
        """Judges the calls of names imported below them (a function runs after its module)."""
        for node, fallback in self.deferred:
            if fallback or not isinstance(node.func, ast.Name):
                continue
            qualname = self.ctx.imports.get(node.func.id)
            if qualname in dep.CHECKPOINT:
                self._check_checkpoint(node)
            elif qualname is not None:
                self._check_table(node, qualname)

    @on_call(*_LAST_NAMES)
    def table_call(self, node: ast.Call) -> None:
        """Checks a call against the table."""
        self.callees.add(id(node.func))
        if self._in_fallback(node):
            return
        qualname = self.ctx.qualname(node.func)
        if not self._unresolved(node, qualname):
            self._check_table(node, qualname or "")

    def _check_table(self, node: ast.Call, qualname: str) -> None:
        entry = dep.BY_NAME.get(qualname)
        if entry is None or not dep.applies(entry.since, self.ctx.target_torch):
            return
        self.report(node.func, _message(qualname, entry), self._fix(node, entry), end=node.func)

    @on(ast.Attribute)
    def reference(self, node: ast.Attribute) -> None:
        """Reports a deprecated API referred to without a call (``nn.UpsamplingNearest2d``)."""
        if node.attr not in _LAST_NAMES or id(node) in self.callees or self.fallbacks:
            return
        qualname = self.ctx.qualname(node) or ""
        entry = dep.BY_NAME.get(qualname)
        if entry is not None and dep.applies(entry.since, self.ctx.target_torch):
            self.report(node, _message(qualname, entry))

    def _fix(self, node: ast.Call, entry: dep.Deprecation) -> Fix | None:
        callee = self._new_callee(node.func, entry)
        if callee is None:
            return None
        start, end = self.ctx.span(node.func)
        edits = [Edit(start, end, callee)]
        if not entry.same_signature:
            moved = self._keywords_for_positionals(node, entry)
            if moved is None:
                return None
            edits += moved
        if entry.fix == "device-first":
            first = self._first_argument_start(node)
            if first is None:
                return None
            text = f"{entry.argument}, " if node.args or node.keywords else entry.argument
            # one edit per offset: the device goes before a first argument's new keyword
            same = [e for e in edits if e.start == first]
            edits = [e for e in edits if e.start != first]
            edits.append(Edit(first, first, text + "".join(e.text for e in same)))
        return Fix(tuple(edits), "safe" if entry.safe else "unsafe")

    def _new_callee(self, func: ast.expr, entry: dep.Deprecation) -> str | None:
        """The text of the new callee: the full path, or the same module alias
        (``F.upsample`` -> ``F.interpolate``). None for a name imported from the old
        module (the import has to change too)."""
        if entry.fix == "none":
            return None
        if self.ctx.text(func) == entry.name:
            return entry.target
        module, _, last = entry.target.rpartition(".")
        if isinstance(func, ast.Attribute) and self.ctx.qualname(func.value) == module:
            return f"{self.ctx.text(func.value)}.{last}"
        return None

    def _keywords_for_positionals(
        self, node: ast.Call, entry: dep.Deprecation
    ) -> list[Edit] | None:
        """Edits passing the positional arguments after ``entry.keep`` by their old names.

        None when that cannot be done faithfully: more positional arguments than the old
        signature names, a ``*args``, or a name that is also passed by keyword.
        """
        args = node.args
        if len(args) > max(len(entry.params), entry.keep):
            return None
        if any(isinstance(a, ast.Starred) for a in args):
            return None
        given = {kw.arg for kw in node.keywords}
        edits: list[Edit] = []
        for index in range(entry.keep, len(args)):
            name = entry.params[index]
            arg = args[index]
            if name in given or isinstance(arg, _BARE_ONLY):
                return None
            at = self._argument_start(node, index)
            if at is None:
                return None
            edits.append(Edit(at, at, f"{name}="))
        return edits

    def _argument_start(self, node: ast.Call, index: int) -> int | None:
        """Where positional argument ``index`` begins, opening parentheses included."""
        previous: ast.AST = node.func if index == 0 else node.args[index - 1]
        gap_start = self.ctx.span(previous)[1]
        gap_end = self.ctx.span(node.args[index])[0]
        return _after_separator(self.ctx.source, gap_start, gap_end, "(" if index == 0 else ",")

    def _first_argument_start(self, node: ast.Call) -> int | None:
        """Where the first argument begins (or the closing parenthesis of an empty call)."""
        items: list[ast.AST] = [*node.args, *node.keywords]
        func_end = self.ctx.span(node.func)[1]
        if not items:
            call_end = self.ctx.span(node)[1] - 1
            if self.ctx.source[call_end : call_end + 1] != ")":
                return None
            return call_end
        first = min(items, key=lambda a: self.ctx.span(a)[0])
        return _after_separator(self.ctx.source, func_end, self.ctx.span(first)[0], "(")

    @on_call("checkpoint", "checkpoint_sequential")
    def checkpoint(self, node: ast.Call) -> None:
        """Checks ``torch.utils.checkpoint`` calls for an explicit ``use_reentrant``."""
        if self._in_fallback(node):
            return
        qualname = self.ctx.qualname(node.func)
        if not self._unresolved(node, qualname) and qualname in dep.CHECKPOINT:
            self._check_checkpoint(node)

    def _check_checkpoint(self, node: ast.Call) -> None:
        if facts.keyword(node, "use_reentrant") or facts.has_star_kwargs(node):
            return
        if not dep.applies(dep.CHECKPOINT_SINCE, self.ctx.target_torch):
            return
        self.report(
            node.func,
            f"`{self.ctx.text(node.func)}` without `use_reentrant` is deprecated since torch "
            f"{dep.CHECKPOINT_SINCE} (PyTorch's notice: it will become an error); pass `use_reentrant=False`",
            self._append(node, "use_reentrant=False", "unsafe"),
            end=node.func,
        )

    @on_call(*dep.TORCHVISION_BUILDERS)
    def positional_weights(self, node: ast.Call) -> None:
        """Checks ``resnet50(True)``: the old ``pretrained`` passed by position."""
        if not node.args or self.fallbacks or isinstance(node.args[0], ast.Starred):
            return
        qualname = self.ctx.qualname(node.func) or ""
        if not qualname.startswith("torchvision.models."):
            return
        if not dep.applies(dep.PRETRAINED_SINCE, self.ctx.target_torch):
            return
        arg = node.args[0]
        fix = None
        if len(node.args) == 1 and facts.keyword(node, "weights") is None:
            if facts.is_true(arg):
                fix = self.ctx.replace(arg, 'weights="DEFAULT"', "unsafe")
            elif facts.is_false(arg):
                fix = self.ctx.replace(arg, "weights=None", "safe")
        self.report(
            arg,
            "positional arguments of torchvision's model builders are deprecated since "
            f"torchvision 0.13 (torch {dep.PRETRAINED_SINCE}); the first is the old `pretrained`: "
            'use `weights="DEFAULT"` for the best weights, `weights=None` for none',
            fix,
        )

    @on(ast.Call)
    def keywords(self, node: ast.Call) -> None:
        """Checks deprecated keyword arguments: ``pretrained=``, ``size_average=``/``reduce=``."""
        if self.fallbacks or not node.keywords:
            return
        for kw in node.keywords:
            if kw.arg in _PRETRAINED:
                self._pretrained(node, kw)
            elif kw.arg in _LOSS_KEYWORDS:
                self._loss_keyword(node, kw)

    def _pretrained(self, node: ast.Call, kw: ast.keyword) -> None:
        qualname = self.ctx.qualname(node.func) or ""
        if not facts.is_module_factory(qualname) or not qualname.startswith("torchvision.models"):
            return
        if not dep.applies(dep.PRETRAINED_SINCE, self.ctx.target_torch):
            return
        new = _PRETRAINED[kw.arg or ""]
        fix = None
        if facts.keyword(node, new) is not None:
            pass  # both given: the user has to choose
        elif facts.is_true(kw.value):
            fix = self.ctx.replace(kw, f'{new}="DEFAULT"', "unsafe")
        elif facts.is_false(kw.value):
            fix = self.ctx.replace(kw, f"{new}=None", "safe")
        self.report(
            kw,
            f"`{kw.arg}=` is deprecated since torchvision 0.13 (torch {dep.PRETRAINED_SINCE}); "
            f'use `{new}=` (`{new}="DEFAULT"` for the best weights, `{new}=None` for none)',
            fix,
        )

    def _loss_keyword(self, node: ast.Call, kw: ast.keyword) -> None:
        qualname = self.ctx.qualname(node.func) or ""
        head, _, last = qualname.rpartition(".")
        is_loss = facts.is_loss_module_qualname(qualname) or (
            head == "torch.nn.functional" and last in facts.LOSS_FUNCTIONS
        )
        if not is_loss or not dep.applies(dep.LOSS_REDUCTION_SINCE, self.ctx.target_torch):
            return
        self.report(
            kw,
            f"`{kw.arg}=` is deprecated since torch {dep.LOSS_REDUCTION_SINCE}; use "
            "`reduction=` (`'mean'`, `'sum'` or `'none'`)",
        )

    def _append(self, node: ast.Call, text: str, applicability: Applicability) -> Fix | None:
        args: list[ast.expr | ast.keyword] = [*node.args, *node.keywords]
        if not args:
            return None
        last = max(args, key=lambda a: (a.end_lineno or 0, a.end_col_offset or 0))
        at = self.ctx.offset(last.end_lineno or 0, last.end_col_offset or 0)
        return Fix((Edit(at, at, f", {text}"),), applicability)


def _after_separator(source: str, start: int, end: int, separator: str) -> int | None:
    """The offset just past ``separator`` in ``source[start:end]`` and the blanks after it.

    Comments are skipped (a comma inside one is not a separator); what remains before
    ``end`` are the opening parentheses of a parenthesized argument, which belong to it.
    """
    found: int | None = None
    i = start
    while i < end:
        char = source[i]
        if char == "#":
            newline = source.find("\n", i, end)
            i = end if newline < 0 else newline
            continue
        if found is None and char == separator:
            found = i + 1
            i += 1
            continue
        if found is not None and not char.isspace() and char != "\\":
            return i
        i += 1
    return end if found is not None else None
