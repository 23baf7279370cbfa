"""Run the ``faceaudit`` command line inside the test process.

The same code path as the console script (``faceaudit.cli.app``), without a new interpreter
per command: a process imports jax and torch once and keeps its compiled kernels, so a
second audit in the same process costs its arithmetic, not its compilation. Tests that need
a real process boundary (a SIGKILL) start one themselves.
"""

from __future__ import annotations

import dataclasses

from typer.testing import CliRunner

from faceaudit.cli import app


@dataclasses.dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(*args, env: dict | None = None) -> Ran:
    """``faceaudit ARGS...``; a crash that the CLI did not turn into a message is re-raised."""
    result = CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)
