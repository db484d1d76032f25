"""What a subcommand has to say. Library code never prints: it returns this, the CLI prints it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CommandOutput:
    """A subcommand's exit code and the text for standard output and standard error."""

    code: int = 0
    stdout: str = ""
    stderr: str = ""
