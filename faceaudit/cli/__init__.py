"""The ``faceaudit`` command line: the Typer app and its commands, grouped by module.

Nothing in the library imports this package; every command calls a stage through
``faceaudit.pipeline`` or a table function, so the CLI adds only argument parsing and
printing.
"""

from faceaudit.cli import audit, metrics, spec, stages, survey  # noqa: F401  (commands register on import)
from faceaudit.cli.app import app


def main() -> None:  # console-script entry point
    from faceaudit import runtime

    runtime.configure()
    app()


__all__ = ["app", "main"]
