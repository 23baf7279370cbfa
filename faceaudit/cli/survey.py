"""``faceaudit survey import``: a study's survey file into tidy Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceaudit.cli.app import app, console, failing

survey_app = typer.Typer(help="Human-judgement survey tables: import them into tidy Parquet.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(survey_app, name="survey")


@survey_app.command("import")
def survey_import(
    file: Annotated[Path, typer.Argument(help="The survey CSV.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Tidy Parquet to write (one row per response).")],
    fmt: Annotated[str, typer.Option("--format", help="Survey format; limitations-2024 is the AAAI 2024 study's.")] = "limitations-2024",
) -> None:
    """De-duplicate a survey file into one row per response, with the pictured person's
    race and gender read off the image path, the edit attribute, answers and metrics."""
    from faceaudit.files import survey
    from faceaudit.files.io import write_parquet

    with failing():
        tidy = survey.read_survey(file, fmt)
        write_parquet(out, tidy)
    console.print(f"{len(tidy)} responses ({tidy['item'].nunique()} images) -> {out}")
