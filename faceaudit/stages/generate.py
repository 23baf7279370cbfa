"""The generate stage: every image of an audit spec, with diffusers (``faceaudit.torch_layer``).

Resumable and reproducible: a job's image is named by its content hash and recorded in a
Parquet part as soon as it exists, so a rerun skips finished jobs and a killed run loses
at most the batches in flight. Ends by consolidating the parts into ``manifest.parquet``.
With ``ray`` (or the spec's ``[ray]``) the batches run on a pool of Ray actors.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from faceaudit.files.folder import AuditFolder
from faceaudit.files.manifest import MANIFEST
from faceaudit.files.spec import RaySpec, load_spec
from faceaudit.stages import StageResult

NAME = "generate"
DESCRIBE = "generate images and edits with diffusers"


@dataclasses.dataclass(frozen=True)
class Settings:
    spec: Path
    ray: RaySpec | None = dataclasses.field(default=None, metadata={"record": False})  # None: the spec's [ray]


def inputs(folder: AuditFolder, settings: Settings) -> list:
    spec = load_spec(settings.spec)
    extra = [Path(spec.reference_manifest).resolve()] if spec.reference_manifest else []
    return [Path(settings.spec).resolve(), *extra]


def preflight(settings: Settings) -> None:
    """Refuse, before any image is made, what would fail later: a local model folder that
    is not a saved pipeline, an unknown scheduler."""
    spec = load_spec(settings.spec)
    for i, g in enumerate(spec.generators):
        local = Path(g.model)
        if g.model.startswith((".", "/")) or local.exists():
            if not (local / "model_index.json").is_file():
                raise FileNotFoundError(f"{settings.spec}: [[generators]][{i}] ({g.name}) model path {g.model} "
                                        "has no model_index.json (save it with save_pretrained)")
        if g.scheduler:
            import diffusers

            if not hasattr(diffusers, g.scheduler):
                raise ValueError(f"{settings.spec}: [[generators]][{i}].scheduler {g.scheduler!r} is not a diffusers "
                                 "scheduler class")


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    from faceaudit.torch_layer.generate import generate

    manifest = generate(load_spec(settings.spec), folder.path, ray=settings.ray)
    return StageResult((MANIFEST,), {"images": len(manifest)})
