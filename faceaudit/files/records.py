"""Stage records: what a stage read, with which settings, and what it wrote.

Every stage writes, last and atomically, ``stage-records/<stage>.json`` holding the
content hashes of the files it read and wrote, its settings and the package version. A
stage is up to date only when its record exists, the version and settings are the same,
every input still hashes the same and every output is still there with the hash it was
written with. So changing an input (re-measuring), a setting or the package reruns the
stage and, through the changed outputs, everything downstream; a stage killed between
two of its files has no record and is redone; a truncated output is caught by its hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from faceaudit.files.io import read_json, write_json

RECORDS = "stage-records"
_CHUNK = 1 << 20


def digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes; of a folder, over its files' relative paths and digests
    (temporary files of interrupted atomic writes, ``.*.tmp``, do not count)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            h.update(f"{child.relative_to(path).as_posix()}\0{digest(child)}\n".encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def digests(folder: Path, paths) -> dict[str, str]:
    """``{path: digest}`` for paths relative to ``folder`` (or absolute); missing -> ``"missing"``."""
    out = {}
    for p in paths:
        full = Path(p) if Path(p).is_absolute() else folder / p
        out[str(p)] = digest(full) if full.exists() else "missing"
    return out


@dataclasses.dataclass(frozen=True)
class StageRecord:
    stage: str
    version: str
    settings: dict
    inputs: dict
    outputs: dict


def record_path(folder: Path, stage: str) -> Path:
    return Path(folder) / RECORDS / f"{stage}.json"


def write_record(folder: Path, record: StageRecord) -> None:
    write_json(record_path(folder, record.stage), dataclasses.asdict(record))


def read_record(folder: Path, stage: str) -> StageRecord | None:
    """The stage's record, or None when there is none (or it is unreadable: then the
    stage is simply redone)."""
    path = record_path(folder, stage)
    if not path.is_file():
        return None
    try:
        raw = read_json(path)
        return StageRecord(**{f.name: raw[f.name] for f in dataclasses.fields(StageRecord)})
    except (ValueError, KeyError, TypeError):
        return None


def remove_record(folder: Path, stage: str) -> None:
    record_path(folder, stage).unlink(missing_ok=True)


def jsonable(settings) -> dict:
    """A settings dataclass as plain JSON values (paths as strings, tuples as lists), less
    the fields that say how a stage runs rather than what it computes
    (``metadata={"record": False}``, e.g. the Ray cluster it runs on)."""
    kept = {f.name for f in dataclasses.fields(settings) if f.metadata.get("record", True)}
    values = {k: v for k, v in dataclasses.asdict(settings).items() if k in kept}
    return json.loads(json.dumps(values, default=str))


def why_stale(folder: Path, stage: str, version: str, settings: dict, inputs: list) -> str | None:
    """Why ``stage`` must run (None: its record matches and its outputs are intact)."""
    record = read_record(folder, stage)
    if record is None:
        return "no stage record (never run, or interrupted)"
    if record.version != version:
        return f"faceaudit {record.version} wrote it, this is {version}"
    if record.settings != settings:
        changed = sorted(k for k in set(settings) | set(record.settings) if settings.get(k) != record.settings.get(k))
        shown = ", ".join(f"{k}: {record.settings.get(k)!r} -> {settings.get(k)!r}" for k in changed[:4])
        return f"settings changed ({shown})"
    now = digests(folder, inputs)
    if set(now) != set(record.inputs):
        return "its inputs are different files"
    changed = [path for path, value in now.items() if record.inputs[path] != value]
    if changed:
        names = ", ".join(Path(p).name if Path(p).is_absolute() else p for p in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        return f"input{'s' if len(changed) > 1 else ''} {names}{more} changed"
    for path, value in record.outputs.items():
        full = Path(path) if Path(path).is_absolute() else folder / path
        if not full.exists():
            return f"output {path} is missing"
        if digest(full) != value:
            return f"output {path} changed since it was written"
    return None


def disagreements(folder: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Stages whose recorded inputs or outputs no longer match the folder: a stage reran (or
    a file changed) after the stages that read its output. A report must not be made from
    such a folder."""
    folder = Path(folder)
    found = []
    for path in sorted((folder / RECORDS).glob("*.json")):
        stage = path.stem
        if stage in skip:
            continue
        record = read_record(folder, stage)
        if record is None:
            found.append(f"{stage}: unreadable stage record")
            continue
        for name, value in {**record.inputs, **record.outputs}.items():
            full = Path(name) if Path(name).is_absolute() else folder / name
            now = digest(full) if full.exists() else "missing"
            if now != value:
                found.append(f"{stage}: {name} {'is missing' if now == 'missing' else 'changed'} since {stage} ran")
                break
    return found
