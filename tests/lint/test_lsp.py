"""``torchstyle lsp`` end to end: a real server process spoken to over its stdio pipes.

The client below is a plain JSON-RPC client (Content-Length framing), so the test exercises
exactly what an editor sends. Set ``TORCHSTYLE_LSP_TRANSCRIPT=path`` to keep the messages.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HANG_TIMEOUT, REPO

pytest.importorskip("pygls")

BAD = "import torch\n\n\ndef run(model, x):\n    return model.forward(x)\n"
WAIT = HANG_TIMEOUT  # a guard against a hung server, not a speed check


class Client:
    """A minimal LSP client over a subprocess's pipes, keeping a transcript."""

    def __init__(self, cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "torchstyle", "lsp"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.transcript: list[tuple[str, dict[str, Any]]] = []
        self.stderr = b""
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                header = out.readline()
                if not header:
                    return
                if header in (b"\r\n", b"\n"):
                    break
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert length is not None
            self.inbox.put(json.loads(out.read(length)))

    def send(self, message: dict[str, Any]) -> None:
        self.transcript.append(("->", message))
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: dict[str, Any]) -> Any:
        self._next += 1
        ident = self._next
        self.send({"id": ident, "method": method, "params": params})
        reply = self.wait(lambda m: m.get("id") == ident and "method" not in m)
        assert "error" not in reply, reply
        return reply["result"]

    def wait(self, wanted: Any) -> dict[str, Any]:
        """The next message ``wanted`` accepts; requests from the server are answered."""
        while True:
            message = self.inbox.get(timeout=WAIT)
            self.transcript.append(("<-", message))
            if "method" in message and "id" in message:  # e.g. client/registerCapability
                self.send({"id": message["id"], "result": None})
            if wanted(message):
                return message

    def diagnostics(self, uri: str) -> list[dict[str, Any]]:
        message = self.wait(
            lambda m: (
                m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri
            )
        )
        return list(message["params"]["diagnostics"])

    def close(self) -> int:
        self.request("shutdown", {})
        self.notify("exit", {})
        code = self.proc.wait(timeout=WAIT)
        path = os.environ.get("TORCHSTYLE_LSP_TRANSCRIPT")
        if path:
            with open(path, "w", encoding="utf-8") as f:
                for direction, message in self.transcript:
                    f.write(f"{direction} {json.dumps(message)}\n")
        return code


def _apply(text: str, edits: list[dict[str, Any]]) -> str:
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(position: dict[str, int]) -> int:
        return starts[position["line"]] + position["character"]

    for edit in sorted(edits, key=lambda e: offset(e["range"]["start"]), reverse=True):
        start, end = offset(edit["range"]["start"]), offset(edit["range"]["end"])
        text = text[:start] + edit["newText"] + text[end:]
    return text


def test_language_server_over_stdio(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.torchstyle.lint]\n", encoding="utf-8")
    client = Client(tmp_path)
    initialize(client, tmp_path)
    fix_a_file(client, tmp_path)
    notebook_and_configuration(client, tmp_path)
    assert client.close() == 0
    imported = [line.rsplit("|", 1)[-1].strip() for line in client.stderr.decode().splitlines()]
    assert "pygls" in imported and "torch" not in imported, "the server never imports torch"


def initialize(client: Client, root: Path) -> None:
    init = client.request(
        "initialize",
        {
            "processId": os.getpid(),
            "rootUri": root.as_uri(),
            "capabilities": {
                "workspace": {"didChangeWatchedFiles": {"dynamicRegistration": True}},
                "textDocument": {"publishDiagnostics": {}, "codeAction": {}},
                "notebookDocument": {"synchronization": {}},
            },
        },
    )
    capabilities = init["capabilities"]
    assert capabilities["codeActionProvider"] and capabilities["notebookDocumentSync"]
    assert "torchstyle.explain" in capabilities["executeCommandProvider"]["commands"]
    client.notify("initialized", {})


def fix_a_file(client: Client, root: Path) -> None:
    """Open a file with a known finding, get its diagnostic, apply its fix: it goes."""
    bad = root / "bad.py"
    bad.write_text(BAD, encoding="utf-8")
    uri = bad.as_uri()
    item = {"uri": uri, "languageId": "python", "version": 1, "text": BAD}
    client.notify("textDocument/didOpen", {"textDocument": item})
    (diagnostic,) = client.diagnostics(uri)
    assert diagnostic["code"] == "TS102" and diagnostic["source"] == "torchstyle"
    assert diagnostic["range"]["start"] == {"line": 4, "character": 11}
    assert diagnostic["data"]["explain"] == "torchstyle lint --explain TS102"

    # its code actions: the (safe, preferred) fix and the explanation
    actions = client.request(
        "textDocument/codeAction",
        {
            "textDocument": {"uri": uri},
            "range": diagnostic["range"],
            "context": {"diagnostics": [diagnostic]},
        },
    )
    fix = next(a for a in actions if a["title"].startswith("Fix TS102"))
    assert fix["isPreferred"] and "unsafe" not in fix["title"]
    explain = next(a for a in actions if a["title"].startswith("Explain TS102"))
    text = client.request("workspace/executeCommand", explain["command"])
    assert text.startswith("TS102 (forward-call)")

    # apply the fix as an editor does: the diagnostic goes
    fixed = _apply(BAD, fix["edit"]["changes"][uri])
    assert "return model(x)" in fixed
    client.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": fixed}]},
    )
    assert client.diagnostics(uri) == []


def notebook_and_configuration(client: Client, root: Path) -> None:
    """A notebook's cells joined (`m` from cell 1), diagnostics per cell; config reloaded."""
    notebook_uri = (root / "nb.ipynb").as_uri()
    cells = [f"vscode-notebook-cell:{notebook_uri}#C{i}" for i in (1, 2)]
    sources = [
        "%matplotlib inline\nimport torch\nm = torch.nn.Linear(2, 2)\n",
        "y = m.forward(1)\nz = torch.load('a.pt')\n",
    ]
    client.notify(
        "notebookDocument/didOpen",
        {
            "notebookDocument": {
                "uri": notebook_uri,
                "notebookType": "jupyter-notebook",
                "version": 1,
                "cells": [{"kind": 2, "document": c} for c in cells],
            },
            "cellTextDocuments": [
                {"uri": c, "languageId": "python", "version": 1, "text": s}
                for c, s in zip(cells, sources, strict=True)
            ],
        },
    )
    assert client.diagnostics(cells[0]) == []
    forward, load = client.diagnostics(cells[1])
    assert forward["code"] == "TS102" and forward["range"]["start"]["line"] == 0
    assert load["code"] == "TS502" and load["range"]["start"]["line"] == 1
    actions = client.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": cells[1]}, "range": load["range"], "context": {"diagnostics": []}},
    )
    unsafe = next(a for a in actions if a["title"].startswith("Fix TS502"))
    assert "unsafe" in unsafe["title"] and not unsafe["isPreferred"]
    (edit,) = unsafe["edit"]["changes"][cells[1]]
    assert edit["range"]["start"]["line"] == 1  # in the cell's own lines

    # the configuration is reloaded when pyproject.toml changes
    (root / "pyproject.toml").write_text(
        '[tool.torchstyle.lint]\nignore = ["TS102"]\n', encoding="utf-8"
    )
    changed = {"changes": [{"uri": (root / "pyproject.toml").as_uri(), "type": 2}]}
    client.notify("workspace/didChangeWatchedFiles", changed)
    assert [d["code"] for d in client.diagnostics(cells[1])] == ["TS502"]


def test_missing_pygls_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "pygls").mkdir()
    (tmp_path / "pygls" / "__init__.py").write_text("raise ImportError('no pygls here')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    result = subprocess.run(
        [sys.executable, "-m", "torchstyle", "lsp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "torchstyle lsp: error: torchstyle lsp needs the pygls package; install it: "
        "pip install 'torchstyle[lsp]'\n"
    )


@pytest.fixture
def follows_back() -> Iterator[None]:
    """The engine makes the project facts follow file changes; other tests get one-shot reads."""
    from torchstyle.lint import saves

    yield
    saves.follow_file_changes(False)


def test_the_ts502_fix_follows_what_the_project_saves_now(tmp_path: Path, follows_back) -> None:
    from torchstyle.lint.lsp import Engine

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    load = tmp_path / "load.py"
    load.write_text("import torch\n\n\ndef resume(path):\n    return torch.load(path)\n")
    saving = tmp_path / "saving.py"
    plain = (
        "import torch\n\n\ndef save(model, args, path):\n    torch.save(model.state_dict(), path)\n"
    )
    objects = plain.replace("model.state_dict()", "{'model': model.state_dict(), 'args': args}")
    saving.write_text(plain)
    engine = Engine()

    def fix_offered() -> bool:
        found = [f for f in engine.lint(load.read_text(), str(load)) if f.code == "TS502"]
        assert len(found) == 1, found
        return found[0].fix is not None

    assert fix_offered()
    # The project starts saving its parsed arguments: weights_only=True would refuse them.
    saving.write_text(objects)
    assert not fix_offered()
    saving.write_text(plain)
    assert fix_offered()
    saving.unlink()  # a new file that saves objects, and the old one gone
    (tmp_path / "ckpt.py").write_text(objects)
    assert not fix_offered()
