"""TS503: deprecated and removed PyTorch and torchvision APIs, from a table of notices."""

from __future__ import annotations

import ast
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


@register
class DeprecatedApi(Rule):
    """A deprecated PyTorch or torchvision API, with its replacement.

    What:
        Calls of the APIs in ``torchstyle/lint/deprecations.py``, a table built from the
        deprecation notices in PyTorch's and torchvision's own source, each with the torch
        version it applies from: ``torch.cuda.amp.autocast``/``GradScaler`` (use
        ``torch.amp``), ``torch.testing.assert_allclose``, ``functorch.vmap`` and friends
        (``torch.func``), ``torch.backends.cuda.sdp_kernel``,
        ``torch.set_default_tensor_type``, ``torch.nn.utils.weight_norm``,
        ``F.upsample``, ``torch.chain_matmul``, ``torch.lu``, the private distributed
        collectives; and deprecated arguments: torchvision's ``pretrained=`` (use
        ``weights=``), ``torch.utils.checkpoint`` without ``use_reentrant``, and the
        ``size_average``/``reduce`` arguments of losses. With ``target-torch = "2.1"`` in
        ``[tool.torchstyle.lint]``, notices from later versions are not reported (their
        replacements may not exist in the targeted version). Deliberate fallbacks are left
        alone: code in an ``except`` handler, under an ``if`` on the torch version
        (``if _TORCH_GREATER_EQUAL_2_4``, ``hasattr(torch, ...)``), and names imported in an
        ``except ImportError:`` branch.

    Why:
        Deprecated APIs warn on every run, and are removed in a later release; the
        replacements are usually more general (``torch.amp`` serves every device) or
        fix a known problem (``use_reentrant=False`` supports more of autograd). Moving
        while the old name still works is cheap; moving after it is gone is an outage.

    Example:
        scaler = torch.cuda.amp.GradScaler()
        with torch.cuda.amp.autocast():
            loss = criterion(model(inputs), targets)
        backbone = torchvision.models.resnet50(pretrained=True)

    Use instead:
        scaler = torch.amp.GradScaler("cuda")
        with torch.amp.autocast("cuda"):
            loss = criterion(model(inputs), targets)
        backbone = torchvision.models.resnet50(weights="DEFAULT")

    Fix:
        Safe where the replacement behaves the same (``torch.amp`` with the device first,
        ``torch.func``, ``F.interpolate``, ``pretrained=False`` -> ``weights=None``); unsafe
        where it may not (``assert_close`` is stricter, ``weight_norm``'s state-dict keys
        change, ``pretrained=True`` -> ``weights="DEFAULT"`` may pick newer weights,
        ``use_reentrant=False`` runs the other implementation). Only calls spelled with
        the full module path (``torch.cuda.amp.autocast()``) are rewritten.
    """

    code = "TS503"
    name = "deprecated-api"
    message = "`{name}` is deprecated since torch {since}{note}; use `{replacement}`"
    fixable = "unsafe"
    triggers = (
        ".amp",
        "assert_allclose",
        "functorch",
        "sdp_kernel",
        "set_default_tensor_type",
        "weight_norm",
        "functional_call",
        "chain_matmul",
        "torch.lu",
        "upsample(",
        "_base(",
        "pretrained",
        "checkpoint",
        "size_average",
        "reduce=",
    )

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the fallback tracking."""
        super().begin_file(ctx)
        self.fallbacks: list[ast.AST] = []
        self.fallback_names: set[str] = set()

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
    def fallback_import(self, node: ast.ImportFrom) -> None:
        """Notes names imported as a fallback (``except ImportError: from functorch import vmap``)."""
        if self.fallbacks:
            self.fallback_names.update(a.asname or a.name for a in node.names)

    def _in_fallback(self, node: ast.Call) -> bool:
        func = node.func
        return bool(self.fallbacks) or (
            isinstance(func, ast.Name) and func.id in self.fallback_names
        )

    @on_call(*{d.name.rsplit(".", 1)[1] for d in dep.TABLE})
    def table_call(self, node: ast.Call) -> None:
        """Checks a call against the table."""
        if self._in_fallback(node):
            return
        qualname = self.ctx.qualname(node.func)
        entry = dep.BY_NAME.get(qualname or "")
        if entry is None or not dep.applies(entry.since, self.ctx.target_torch):
            return
        message = self.message.format(
            name=qualname,
            since=entry.since,
            note=f" ({entry.note})" if entry.note else "",
            replacement=entry.replacement,
        )
        self.report(node.func, message, self._fix(node, entry), end=node.func)

    def _fix(self, node: ast.Call, entry: dep.Deprecation) -> Fix | None:
        if entry.fix == "none" or self.ctx.text(node.func) != entry.name:
            return None  # spelled through an import alias: the import needs editing too
        start, end = self.ctx.span(node.func)
        edits = [Edit(start, end, entry.target)]
        if entry.fix == "device-first":
            at = self.ctx.offset(node.end_lineno or 0, node.end_col_offset or 0) - 1
            first = [*node.args, *node.keywords]
            if first:
                first_start = min(self.ctx.span(a)[0] for a in first)
                edits.append(Edit(first_start, first_start, f"{entry.argument}, "))
            elif self.ctx.source[at : at + 1] == ")":
                edits.append(Edit(at, at, entry.argument))
            else:
                return None
        return Fix(tuple(edits), "safe" if entry.safe else "unsafe")

    @on_call("checkpoint", "checkpoint_sequential")
    def checkpoint(self, node: ast.Call) -> None:
        """Checks ``torch.utils.checkpoint`` calls for an explicit ``use_reentrant``."""
        if self._in_fallback(node) or self.ctx.qualname(node.func) not in dep.CHECKPOINT:
            return
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

    @on(ast.Call)
    def keywords(self, node: ast.Call) -> None:
        """Checks deprecated keyword arguments: ``pretrained=``, ``size_average=``/``reduce=``."""
        if self.fallbacks:
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
        if facts.is_true(kw.value):
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
