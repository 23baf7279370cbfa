"""The Typer app, its consoles and the one way every command fails.

User text (paths, spec keys like ``[[generators]][0]``, labels) is printed verbatim: the
consoles interpret no markup, help text is not parsed for markup either, and our own
emphasis is added as styled ``rich.text.Text``. Every command runs its work inside
``failing()``: a known error becomes one line on stderr and exit code 2; anything else too,
with its type, unless ``FACEAUDIT_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import contextlib
import os

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

STORY = """faceaudit audits how text-to-image models draw human faces across social groups.

\b
  faceaudit audit                 the whole audit of a simulated world, offline: start here
  faceaudit audit SPEC --out DIR  generate with your models -> embed -> measure -> disparity -> report
  faceaudit audit --images DIR --manifest CSV --out OUT   audit images you already have

Stage by stage (each writes the same files as the audit): simulate | generate -> embed ->
perceive (who gets drawn, corrected for the classifier's errors) -> measure -> disparity ->
explain -> plan -> report. On your own embeddings: faceaudit
metrics REFERENCE.npy GENERATED.npy. Every per-group number comes with an interval of what it
estimates, and groups of different sizes are compared fairly (see the README)."""

app = typer.Typer(
    name="faceaudit",
    help=STORY,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console(markup=False, highlight=False, emoji=False, soft_wrap=True)  # no wrapping inside paths
err_console = Console(stderr=True, markup=False, highlight=False, emoji=False, soft_wrap=True)


def fail(message: str) -> None:
    err_console.print(Text("error: ", style="bold red") + Text(str(message)))
    raise typer.Exit(code=2)


def warn(message: str) -> None:
    err_console.print(Text("warning: ", style="yellow") + Text(str(message)))


@contextlib.contextmanager
def failing():
    """Turn any error of a command into a one-line message and exit code 2."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        err_console.print(Text("interrupted: finished work is kept; rerun the same command to resume"))
        raise typer.Exit(code=130) from None
    except (ValueError, FileNotFoundError, TypeError, OSError) as err:
        if os.environ.get("FACEAUDIT_DEBUG"):
            raise
        fail(str(err) if str(err) else type(err).__name__)
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        if os.environ.get("FACEAUDIT_DEBUG"):
            raise
        fail(f"{type(err).__name__}: {err} (FACEAUDIT_DEBUG=1 shows the traceback)")


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    return t


def bold(text: str) -> Text:
    return Text(text, style="bold")


def renamed(old_value, old_flag: str, value, flag: str):
    """An option given under its deprecated name: said, and read as the new one."""
    if old_value is None:
        return value
    if value is not None:
        raise ValueError(f"pass {flag} only ({old_flag} is its deprecated name)")
    warn(f"{old_flag} is deprecated: use {flag}")
    return old_value


def metric_names(text: str | None) -> tuple[str, ...] | None:
    """``--metrics``: the names asked for, None for the default set; ``list`` prints the
    catalogue's distribution and diversity metrics (name, default or not, estimand) and exits.
    (Read here, not in the option's default, so ``--help`` imports no numerics.)"""
    if text is None:
        return None
    if text.strip() == "list":
        from faceaudit.tables import catalogue

        rows = [[name, "yes" if catalogue.info(name).default else "", catalogue.info(name).shown_label,
                 catalogue.info(name).estimand] for name in catalogue.EMBEDDING_METRICS]
        console.print(table("distribution and diversity metrics", ["name", "default", "what", "interval of"], rows))
        raise typer.Exit(0)
    return tuple(m.strip() for m in text.split(",") if m.strip())
