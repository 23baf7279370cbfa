"""Images the user already has: a folder plus a manifest naming each image's groups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from faceaudit.store import content_hash


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    raise ValueError(f"manifest {path} must be .csv, .tsv or .parquet")


def folder_rows(images: Path, manifest: Path, groups: dict[str, tuple[str, ...]] | None, *, role: str,
                table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Manifest rows for user images; errors name the file, the row and the column.

    The table needs a ``path`` column (relative to ``images``) and one column per group
    attribute; with ``groups`` given, every value must be one of its levels.
    """
    table = read_table(manifest) if table is None else table  # rows keep the file's index for messages
    if "path" not in table.columns:
        raise ValueError(f"{manifest}: needs a 'path' column (image file, relative to {images})")
    attributes = list(groups) if groups else [c for c in table.columns if c in ("race", "gender", "age")]
    missing = [a for a in attributes if a not in table.columns]
    if missing or not attributes:
        raise ValueError(f"{manifest}: needs group column(s) {missing or ['race', 'gender']}")
    rows = []
    for i, rec in table.iterrows():
        line = i + 2  # header is line 1
        file = images / str(rec["path"])
        if not file.is_file():
            raise FileNotFoundError(f"{manifest}, line {line}: image {file} does not exist")
        for a in attributes:
            if groups and str(rec[a]) not in groups[a]:
                raise ValueError(f"{manifest}, line {line}: unknown {a} {rec[a]!r}; the spec's levels are {list(groups[a])}")
        data = file.read_bytes()
        try:
            with Image.open(file) as im:
                im.verify()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{manifest}, line {line}: {file} is not a readable image ({err})") from None
        rows.append(dict({a: str(rec[a]) for a in attributes}, image_id=content_hash(data), path=str(file.resolve()),
                         role=role, generator=str(rec.get("generator", "")) if role == "generated" else "",
                         identity=str(rec.get("identity", "")), identity_kind="real" if role == "reference" else "none",
                         seed=-1, prompt=str(rec.get("prompt", "")), edit=str(rec.get("edit", "")),
                         edit_phrase=str(rec.get("edit_phrase", "")), source_id=""))
    frame = pd.DataFrame(rows)
    frame["group"] = frame[attributes].astype(str).agg(" x ".join, axis=1)
    return frame


def reference_rows(images: Path, manifest: Path, groups, out: Path) -> pd.DataFrame:
    return folder_rows(images, manifest, groups, role="reference")
