"""``faceaudit spec init | check``: write a commented example, check one as the audit would."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceaudit.cli.app import app, console, failing

spec_app = typer.Typer(help="Audit specs (TOML): write a commented example, check one.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(spec_app, name="spec")


@spec_app.command("init")
def spec_init(path: Annotated[Path, typer.Argument(help="Where to write the example spec.")] = Path("audit.toml")) -> None:
    """Write a commented example spec (4 races x 2 genders, 5 edits, SD 2.1, CLIP + dlib)."""
    from faceaudit.files.io import atomic_write_text
    from faceaudit.files.spec import EXAMPLE

    with failing():
        if path.exists():
            raise ValueError(f"{path} exists; not overwriting it")
        atomic_write_text(path, EXAMPLE)
    console.print(f"wrote {path}; edit it, then `faceaudit spec check {path}` and `faceaudit audit {path} --out DIR`")


@spec_app.command("check")
def spec_check(path: Annotated[Path, typer.Argument(help="The spec to validate.")]) -> None:
    """Validate a spec as `faceaudit audit SPEC` would before its first step: every key,
    the model paths, the encoders' architectures and weights, the reference images and
    their group sizes; then say how many images it asks for."""
    from faceaudit import pipeline
    from faceaudit.files.spec import load_spec
    from faceaudit.torch_layer.generate import expand_jobs

    with failing():
        spec = load_spec(path)
        pipeline.preflight(pipeline.AuditSettings(spec=path), check_out=False)
    for g in spec.generators:
        console.print(f"{g.name}: {len(expand_jobs(spec, g))} images over {len(spec.group_grid())} groups")
