"""The pieces every rule is made of: findings, fixes, the :class:`Rule` base class.

A rule is a class with a code, a short name, a docstring (What / Why / Example / Use instead)
and handler methods marked with :func:`on` (called before a node's children are visited) or
:func:`after` (called after). The checker walks each file once and calls every active rule's
handlers for the node types they asked for; rules never walk the tree themselves.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

if TYPE_CHECKING:
    from torchstyle.lint.context import FileContext, LoopFrame, Scope

Applicability = Literal["safe", "unsafe"]

H = TypeVar("H", bound=Callable[..., None])


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace ``source[start:end]`` (character offsets) with ``text``."""

    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Fix:
    """Edits that resolve one finding; ``safe`` fixes keep the program's behaviour."""

    edits: tuple[Edit, ...]
    applicability: Applicability


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem at one place. Lines and columns are 1-based; columns count characters."""

    path: str
    line: int
    col: int
    end_line: int
    end_col: int
    code: str
    message: str
    fix: Fix | None = None
    #: The notebook cell (1-based, code cells only) of a finding in a ``.ipynb`` file; its
    #: lines then count from the cell's first line.
    cell: int | None = None

    def sort_key(self) -> tuple[str, int, int, int, str]:
        """Orders findings by file, cell, position and code."""
        return (self.path, self.cell or 0, self.line, self.col, self.code)


def on(*node_types: type[ast.AST]) -> Callable[[H], H]:
    """Marks a rule method as a handler called *before* the children of ``node_types``."""

    def mark(func: H) -> H:
        func._lint_on = node_types  # type: ignore[attr-defined]
        return func

    return mark


def after(*node_types: type[ast.AST]) -> Callable[[H], H]:
    """Marks a rule method as a handler called *after* the children of ``node_types``."""

    def mark(func: H) -> H:
        func._lint_after = node_types  # type: ignore[attr-defined]
        return func

    return mark


def on_call(*names: str) -> Callable[[H], H]:
    """Marks a rule method as a handler of calls whose callee's last name is in ``names``.

    The name is resolved through imports: ``V(x)`` after ``from torch.autograd import Variable
    as V`` counts as ``Variable``; ``torch.load(f)`` and ``load(f)`` both count as ``load``.
    Cheaper than ``@on(ast.Call)``, which runs on every call of the file.
    """

    unique = tuple(dict.fromkeys(names))

    def mark(func: H) -> H:
        func._lint_calls = unique  # type: ignore[attr-defined]
        return func

    return mark


class Rule:
    """Base class of every rule. Subclasses live one per file, in the folder of their category
    under ``torchstyle/lint/rules/`` (``rules/loops/`` for TS3xx).

    Class attributes:
        code: The rule's code, e.g. ``"TS102"`` (see ``docs/lint.md`` for the scheme).
        name: A kebab-case name, e.g. ``"forward-call"``.
        message: The default message of a finding.
        default_enabled: False for noisy rules that users opt into with ``--select``.
        fixable: ``"safe"``/``"unsafe"`` when the rule offers fixes, else None.
        triggers: Substrings of which at least one must occur in a file for the rule to run
            on it (a cheap pre-filter); empty means always run.

    One instance serves a whole run. Per-file state lives in instance attributes set in
    :meth:`begin_file`; the checker drops them all after each file.
    """

    code: ClassVar[str] = ""
    name: ClassVar[str] = ""
    message: ClassVar[str] = ""
    default_enabled: ClassVar[bool] = True
    fixable: ClassVar[Applicability | None] = None
    triggers: ClassVar[tuple[str, ...]] = ()

    ctx: FileContext

    def begin_file(self, ctx: FileContext) -> None:
        """Called before the walk of each file; subclasses reset their state here."""
        self.ctx = ctx

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Called when the walk leaves a ``for``/``while`` loop, before its frame is popped."""

    def on_scope_exit(self, scope: Scope) -> None:
        """Called when the walk leaves a module, class or function body."""

    def end_file(self) -> None:
        """Called after the walk of each file."""

    def collect(self, item: Any) -> None:
        """Notes ``item`` in the innermost loop; :meth:`settle` decides its fate at the loop's end.

        Many rules can only judge a call once the loop around it is complete (does the loop
        train? is it the epoch loop?): they collect while walking and settle in
        :meth:`on_loop_exit`.
        """
        loop = self.ctx.loop
        if loop is not None:
            loop.data.setdefault(self.code, []).append(item)

    def settle(
        self,
        frame: LoopFrame,
        here: bool,
        *,
        through_guards: bool = True,
        keep: Callable[[Any], bool] | None = None,
    ) -> list[Any]:
        """The items collected in ``frame`` when they belong ``here``, else ``[]``.

        Items that do not belong here move to the enclosing loop (those ``keep`` accepts, and
        only when the loop itself runs on every pass of its parent unless ``through_guards``),
        so that a call in an inner helper loop is judged by the training loop around it.
        """
        found: list[Any] | None = frame.data.pop(self.code, None)
        if not found:
            return []
        if keep is not None:
            found = [item for item in found if keep(item)]
        if here:
            return found
        parent = frame.parent
        if parent is not None and (through_guards or frame.guard_base == parent.guard_base):
            parent.data.setdefault(self.code, []).extend(found)
        return []

    def report(
        self,
        node: ast.AST,
        message: str | None = None,
        fix: Fix | None = None,
        *,
        end: ast.AST | None = None,
    ) -> None:
        """Records a finding of this rule at ``node`` (through ``end`` when given)."""
        self.ctx.report(self.code, node, message or self.message, fix, end=end)

    @classmethod
    def summary(cls) -> str:
        """The first line of the rule's docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else cls.message
