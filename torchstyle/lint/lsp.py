"""``torchstyle lsp``: the linter as a Language Server Protocol server over stdio.

Diagnostics are published when a ``.py`` file or a notebook is opened, changed or saved;
each carries the rule's code and offers two code actions: its fix (safe fixes are the
preferred action, unsafe ones say so in their title) and "Explain", which runs the
``torchstyle.explain`` command (the text of ``torchstyle lint --explain CODE``).

Each document gets the nearest pyproject.toml's ``[tool.torchstyle.lint]`` settings; a
changed pyproject.toml (noticed by its size and modification time, or announced by the
editor) re-checks every open document. Project facts read from other files (whether the
project saves non-tensor objects, which decides TS502's fix) are read again once any of the
project's Python files changed on disk (its size or modification time), or one was added or
removed. The protocol is spoken by pygls, an optional extra
(``pip install 'torchstyle[lsp]'``); nothing here imports torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from torchstyle.errors import UserError
from torchstyle.lint import notebook
from torchstyle.lint.base import Finding
from torchstyle.lint.config import ConfigFinder

if TYPE_CHECKING:
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer
    from pygls.workspace import TextDocument

    from torchstyle.lint.jobs import Setting

SOURCE = "torchstyle"
EXPLAIN = "torchstyle.explain"
INSTALL = "pip install 'torchstyle[lsp]'"


def add_lsp_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``lsp`` flags."""
    parser.add_argument(
        "--stdio",
        action="store_true",
        help="talk over standard input and output (the default and only transport)",
    )


def run_lsp(args: argparse.Namespace) -> int:
    """Runs the language server until the editor disconnects."""
    try:
        import lsprotocol  # noqa: F401
        import pygls  # noqa: F401
    except ImportError:
        raise UserError(f"torchstyle lsp needs the pygls package; install it: {INSTALL}") from None
    build_server().start_io()
    return 0


class Engine:
    """Lints documents with the configuration that applies to each (no protocol here)."""

    def __init__(self) -> None:
        from torchstyle.lint import saves

        self._settings: dict[str | None, tuple[tuple[int, int] | None, Setting]] = {}
        # The server outlives many edits: TS502's fix follows what the project saves now.
        saves.follow_file_changes()

    def setting(self, path: str) -> Setting:
        """The linter and ignores of ``path``'s pyproject.toml, reloaded when it changed."""
        from torchstyle.lint.jobs import Setting
        from torchstyle.lint.options import Options

        finder = ConfigFinder()
        pyproject = finder.pyproject_for(path)
        stamp = _stamp(pyproject)
        known = self._settings.get(pyproject)
        if known is None or known[0] != stamp:
            known = self._settings[pyproject] = (
                stamp,
                Setting(finder.config(pyproject), Options()),
            )
        return known[1]

    def forget(self) -> None:
        """Drops every loaded configuration (a pyproject.toml changed)."""
        self._settings.clear()

    def lint(self, text: str, path: str) -> list[Finding]:
        """The findings in the Python source ``text`` of the file ``path``."""
        try:
            setting = self.setting(path)
        except UserError as e:
            return [Finding(path, 1, 1, 1, 1, "TS001", f"configuration: {e}")]
        return setting.linter.lint(text, path, setting.ignored_codes(path))

    def lint_cells(self, texts: list[str], path: str) -> list[Finding]:
        """The findings in a notebook's code cells, with ``cell`` = index in ``texts`` + 1."""
        book = notebook.from_cells(texts)
        return [book.to_cells(f) for f in self.lint(book.source, path)]


def _stamp(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _version() -> str:
    package = sys.modules.get("torchstyle")  # always imported: it holds this package
    return str(getattr(package, "__version__", "0"))


def _diagnostic(doc: TextDocument, finding: Finding) -> types.Diagnostic:
    from lsprotocol import types
    from pygls.workspace.position_codec import ServerTextPosition, ServerTextRange

    where = ServerTextRange(
        ServerTextPosition(finding.line - 1, finding.col - 1),
        ServerTextPosition(finding.end_line - 1, finding.end_col - 1),
    )
    fix = finding.fix.applicability if finding.fix is not None else None
    return types.Diagnostic(
        range=doc.range_to_client_units(where),
        message=finding.message,
        severity=types.DiagnosticSeverity.Warning,
        code=finding.code,
        source=SOURCE,
        data={"fix": fix, "explain": f"torchstyle lint --explain {finding.code}"},
    )


def _actions(
    doc: TextDocument, findings: list[Finding], wanted: types.Range
) -> list[types.CodeAction]:
    """The fix and explain actions of the findings whose range touches ``wanted``."""
    from lsprotocol import types

    actions: list[types.CodeAction] = []
    explained: set[str] = set()
    for finding in findings:
        diagnostic = _diagnostic(doc, finding)
        if not _touches(diagnostic.range, wanted):
            continue
        if finding.fix is not None:
            unsafe = finding.fix.applicability != "safe"
            edits = [
                types.TextEdit(
                    range=types.Range(
                        doc.client_position_at_offset(edit.start),
                        doc.client_position_at_offset(edit.end),
                    ),
                    new_text=edit.text,
                )
                for edit in finding.fix.edits
            ]
            title = f"Fix {finding.code}: {finding.message.split(';')[0]}"
            actions.append(
                types.CodeAction(
                    title=title + (" (unsafe fix: check the result)" if unsafe else ""),
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    edit=types.WorkspaceEdit(changes={doc.uri: edits}),
                    is_preferred=not unsafe,
                )
            )
        if finding.code not in explained:
            explained.add(finding.code)
            title = f"Explain {finding.code} (torchstyle lint --explain {finding.code})"
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    command=types.Command(title=title, command=EXPLAIN, arguments=[finding.code]),
                )
            )
    return actions


def _touches(a: types.Range, b: types.Range) -> bool:
    start = (a.start.line, a.start.character)
    end = (a.end.line, a.end.character)
    return start <= (b.end.line, b.end.character) and (b.start.line, b.start.character) <= end


def build_server() -> LanguageServer:
    """The language server, its handlers registered (see the module's docstring)."""
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    server = LanguageServer(
        SOURCE,
        _version(),
        text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        notebook_document_sync=types.NotebookDocumentSyncOptions(
            notebook_selector=[
                types.NotebookDocumentFilterWithCells(
                    cells=[types.NotebookCellLanguage(language="python")], notebook="*"
                )
            ],
            save=True,
        ),
    )
    _register(server, _Documents(server, Engine()))
    return server


class _Documents:
    """The open documents: what to lint for a uri, and publishing the diagnostics."""

    def __init__(self, server: LanguageServer, engine: Engine) -> None:
        self.server = server
        self.engine = engine

    def _notebook_cells(self, notebook_uri: str) -> list[TextDocument]:
        from lsprotocol import types

        book = self.server.workspace.get_notebook_document(notebook_uri=notebook_uri)
        if book is None:
            return []
        cells = [c for c in book.cells if c.kind == types.NotebookCellKind.Code]
        docs = [self.server.workspace.get_text_document(c.document) for c in cells]
        return [d for d in docs if (d.language_id or "python") == "python"]

    def findings(self, uri: str) -> tuple[TextDocument, list[Finding]]:
        """The document at ``uri`` (a file or a notebook cell) and its findings."""
        workspace = self.server.workspace
        doc = workspace.get_text_document(uri)
        book = workspace.get_notebook_document(cell_uri=uri)
        if book is None:
            return doc, self.engine.lint(doc.source, doc.path)
        cells = self._notebook_cells(book.uri)
        uris = [c.uri for c in cells]
        if uri not in uris:
            return doc, []
        found = self.engine.lint_cells([c.source for c in cells], _path(book.uri))
        number = uris.index(uri) + 1
        return doc, [f for f in found if f.cell == number]

    def publish(self, uri: str) -> None:
        """Lints the file or notebook at ``uri`` and publishes its diagnostics."""
        from lsprotocol import types

        workspace = self.server.workspace
        if workspace.get_notebook_document(notebook_uri=uri) is not None:
            cells = self._notebook_cells(uri)
            found = self.engine.lint_cells([c.source for c in cells], _path(uri))
            for number, cell in enumerate(cells, start=1):
                mine = [_diagnostic(cell, f) for f in found if f.cell == number]
                self.server.text_document_publish_diagnostics(
                    types.PublishDiagnosticsParams(uri=cell.uri, diagnostics=mine)
                )
            return
        if workspace.get_notebook_document(cell_uri=uri) is not None:
            return  # a cell: its notebook is linted as a whole
        doc, found = self.findings(uri)
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=uri, diagnostics=[_diagnostic(doc, f) for f in found], version=doc.version
            )
        )

    def publish_all(self) -> None:
        """Re-checks every open document (a pyproject.toml changed)."""
        self.engine.forget()
        workspace = self.server.workspace
        for uri in list(workspace.notebook_documents):
            self.publish(uri)
        for uri, doc in list(workspace.text_documents.items()):
            if _is_python(doc):
                self.publish(uri)


def _path(uri: str) -> str:
    from pygls.uris import to_fs_path

    return to_fs_path(uri) or uri


def _is_python(doc: TextDocument) -> bool:
    return doc.language_id == "python" or doc.uri.endswith((".py", ".pyi"))


def _register(server: LanguageServer, docs: _Documents) -> None:
    _register_text(server, docs)
    _register_notebooks(server, docs)
    _register_actions(server, docs)


def _register_text(server: LanguageServer, docs: _Documents) -> None:
    from lsprotocol import types

    def lint_text(uri: str) -> None:
        doc = server.workspace.get_text_document(uri)
        if uri.endswith("pyproject.toml"):
            docs.publish_all()
        elif _is_python(doc):
            docs.publish(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        lint_text(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        lint_text(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: LanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        lint_text(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched(ls: LanguageServer, params: types.DidChangeWatchedFilesParams) -> None:
        if any(change.uri.endswith("pyproject.toml") for change in params.changes):
            docs.publish_all()

    @server.feature(types.INITIALIZED)
    def initialized(ls: LanguageServer, params: types.InitializedParams) -> None:
        watch = ls.client_capabilities.workspace
        dynamic = watch and watch.did_change_watched_files
        if dynamic and dynamic.dynamic_registration:
            options = types.DidChangeWatchedFilesRegistrationOptions(
                watchers=[types.FileSystemWatcher(glob_pattern="**/pyproject.toml")]
            )
            registration = types.Registration(
                id="torchstyle-pyproject",
                method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                register_options=options,
            )
            ls.client_register_capability(types.RegistrationParams(registrations=[registration]))


def _register_notebooks(server: LanguageServer, docs: _Documents) -> None:
    from lsprotocol import types

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_OPEN)
    def nb_open(ls: LanguageServer, params: types.DidOpenNotebookDocumentParams) -> None:
        docs.publish(params.notebook_document.uri)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CHANGE)
    def nb_change(ls: LanguageServer, params: types.DidChangeNotebookDocumentParams) -> None:
        docs.publish(params.notebook_document.uri)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_SAVE)
    def nb_save(ls: LanguageServer, params: types.DidSaveNotebookDocumentParams) -> None:
        docs.publish(params.notebook_document.uri)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CLOSE)
    def nb_close(ls: LanguageServer, params: types.DidCloseNotebookDocumentParams) -> None:
        for cell in params.cell_text_documents:
            ls.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=cell.uri, diagnostics=[])
            )


def _register_actions(server: LanguageServer, docs: _Documents) -> None:
    from lsprotocol import types

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(ls: LanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        doc, found = docs.findings(params.text_document.uri)
        return _actions(doc, found, params.range)

    @server.command(EXPLAIN)
    def explain_command(ls: Any, *arguments: Any) -> str:  # pygls reads these annotations
        from torchstyle.lint.command import explain

        code = str(arguments[0]) if arguments else ""
        try:
            text = explain(code)
        except UserError as e:
            text = str(e)
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=text))
        return text
