"""Images the user already has: a folder plus a manifest naming each image's groups.

Also the one place images are opened (for embedding and pixel distances), so a broken
file is always reported the same way, by path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from faceaudit.files.manifest import content_hash, group_label

ROLES = ("generated", "reference")  # an audit needs both
NEUTRAL = "neutral"  # optional: generated from a prompt that names no group (who gets drawn)
GROUP_ATTRIBUTES = ("race", "gender", "age")


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    except Exception as err:  # pandas/pyarrow parse errors
        raise ValueError(f"{path} is not a readable table ({type(err).__name__}: {err})") from None
    raise ValueError(f"manifest {path} must be .csv, .tsv or .parquet")


def load_rgb(path: str | Path) -> Image.Image:
    """An image as RGB; an unreadable file is a ValueError naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, UnidentifiedImageError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


def pixel_pair(source: str | Path, edit: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Source and edit as float ``[0, 1]`` arrays of the edit's size (MagicBrush's
    ``eval_distance``: the source is resized to the edit's size, PIL's default filter)."""
    a, b = load_rgb(source), load_rgb(edit)
    if a.size != b.size:
        a = a.resize(b.size)
    return np.asarray(a, dtype=np.float64) / 255.0, np.asarray(b, dtype=np.float64) / 255.0


def folder_rows(images: Path, manifest: Path, groups: dict[str, tuple[str, ...]] | None, *, role: str,
                table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Manifest rows for user images; errors name the file, the line and the column.

    The table needs a ``path`` column (relative to ``images``) and one column per group
    attribute; with ``groups`` given, every value must be one of its levels.
    """
    table = read_table(manifest) if table is None else table  # rows keep the file's index for messages
    if "path" not in table.columns:
        raise ValueError(f"{manifest}: needs a 'path' column (image file, relative to {images})")
    attributes = list(groups) if groups else [c for c in table.columns if c in GROUP_ATTRIBUTES]
    missing = [a for a in attributes if a not in table.columns]
    if missing or not attributes:
        raise ValueError(f"{manifest}: needs group column(s) {missing or ['race', 'gender']}")
    rows = []
    for i, rec in table.iterrows():
        line = i + 2  # header is line 1
        file = Path(images) / str(rec["path"])
        if not file.is_file():
            raise FileNotFoundError(f"{manifest}, line {line}: image {file} does not exist")
        if role == NEUTRAL and not str(rec.get("prompt", "")).strip():
            raise ValueError(f"{manifest}, line {line}: a neutral image needs its prompt (column 'prompt')")
        for a in attributes if role != NEUTRAL else ():  # a neutral prompt requests no group
            if groups and str(rec[a]) not in groups[a]:
                raise ValueError(f"{manifest}, line {line}: unknown {a} {rec[a]!r}; the spec's levels are {list(groups[a])}")
            if not str(rec[a]).strip():
                raise ValueError(f"{manifest}, line {line}: column {a!r} is empty")
        data = file.read_bytes()
        try:
            with Image.open(file) as im:
                im.verify()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{manifest}, line {line}: {file} is not a readable image ({err})") from None
        rows.append(dict({a: str(rec[a]) if role != NEUTRAL else "" for a in attributes}, image_id=content_hash(data),
                         path=str(file.resolve()), role=role,
                         generator=str(rec.get("generator", "")) if role != "reference" else "",
                         identity=str(rec.get("identity", "")), identity_kind="real" if role == "reference" else "none",
                         seed=-1, prompt=str(rec.get("prompt", "")), edit=str(rec.get("edit", "")),
                         edit_phrase=str(rec.get("edit_phrase", "")), source_id=""))
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["group"] = group_label(frame, attributes).where(frame["role"] != NEUTRAL, "")
    return frame


def table_counts(manifest: Path) -> dict[str, tuple[int, int]]:
    """``{group: (reference rows, generated rows)}`` of a user's manifest table, after
    checking its roles and group columns (images are not opened: a cheap early check)."""
    table = read_table(manifest)
    _check_roles(table, manifest)
    attributes = [c for c in table.columns if c in GROUP_ATTRIBUTES]
    if not attributes:
        raise ValueError(f"{manifest}: needs group column(s) such as race, gender (one per attribute)")
    table = table[table["role"] != NEUTRAL]
    group = group_label(table, attributes)
    return {g: (int(((group == g) & (table["role"] == "reference")).sum()),
                int(((group == g) & (table["role"] == "generated")).sum())) for g in sorted(group.unique())}


def _check_roles(table: pd.DataFrame, manifest: Path) -> None:
    if "role" not in table.columns:
        raise ValueError(f"{manifest}: needs a 'role' column ('generated' or 'reference' per image): "
                         "an audit compares generated faces with reference faces of the same groups")
    bad = np.flatnonzero(~table["role"].isin((*ROLES, NEUTRAL)).to_numpy())
    if bad.size:
        raise ValueError(f"{manifest}, line {int(bad[0]) + 2}: column role must be 'generated', 'reference' or 'neutral', "
                         f"found {table['role'].iloc[int(bad[0])]!r}")
    for role in ROLES:
        if not (table["role"] == role).any():
            raise ValueError(f"{manifest}: no {role} images (role == '{role}'); an audit needs both")


def ingest(images: Path, manifest: Path) -> tuple[pd.DataFrame, list[str]]:
    """Manifest rows and group columns for a folder of existing images.

    Raises:
        ValueError: naming the file and line: no ``role`` column or a bad role, missing
            group values, unreadable images; or no generated / no reference images.
    """
    table = read_table(manifest)
    _check_roles(table, manifest)
    frames = [folder_rows(images, manifest, None, role=role, table=table[table["role"] == role])
              for role in (*ROLES, NEUTRAL)]
    rows = pd.concat(frames, ignore_index=True)
    rows.loc[(rows.role != "reference") & (rows.generator == ""), "generator"] = "user-images"
    groups = [c for c in GROUP_ATTRIBUTES if c in rows.columns]
    return rows.drop_duplicates("image_id").reset_index(drop=True), groups


def reference_rows(images: Path, manifest: Path, groups) -> pd.DataFrame:
    return folder_rows(images, manifest, groups, role="reference")
