"""The ingest stage: a folder of images the user already has, with a manifest (CSV/Parquet:
``path``, ``role`` = generated/reference, and group columns), into ``manifest.parquet``.

Every row is checked before anything is written: errors name the file, the line and the
column (a missing image, an unreadable one, a bad role, an empty group value).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from faceaudit.files.folder import AuditFolder
from faceaudit.files.images import ingest, listed_files
from faceaudit.files.manifest import MANIFEST, write_manifest
from faceaudit.stages import StageResult

NAME = "ingest"
DESCRIBE = "read the image folder and its manifest"


@dataclasses.dataclass(frozen=True)
class Settings:
    images: Path
    manifest: Path
    allow_outside: bool = False  # read manifest paths outside the images folder (--allow-outside-images)


def inputs(folder: AuditFolder, settings: Settings) -> list:
    """The manifest table and every image it lists: the record covers their content, so an
    image edited in place reruns the stage and everything after it."""
    return [Path(settings.manifest).resolve(),
            *listed_files(Path(settings.images), Path(settings.manifest), allow_outside=settings.allow_outside)]


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    notes: list[str] = []
    rows, groups = ingest(Path(settings.images), Path(settings.manifest), allow_outside=settings.allow_outside,
                          warn=notes.append)
    write_manifest(folder.file(MANIFEST), rows, groups, source=f"images:{settings.images}")
    return StageResult((MANIFEST,), {"images": len(rows), "groups": sorted(rows["group"].unique()), "warnings": notes})
