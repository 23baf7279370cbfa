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
        if path.suffix == ".parquet":  # every cell as text, missing as "" (as a CSV reads): checks name the line
            return pd.read_parquet(path).astype(object).where(lambda t: t.notna(), "").astype(str)
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


def contained(images: Path, relative: str, where: str, *, allow_outside: bool = False) -> Path:
    """The file a manifest row names, resolved (symlinks followed); it must lie inside the
    images folder unless ``allow_outside``: a manifest must not make faceaudit read, and put
    into a report meant to be shared, a file from anywhere else.

    Raises:
        ValueError: naming the row, the path and where it leads.
    """
    root = Path(images).resolve()
    file = (root / relative).resolve()  # an absolute `relative` replaces the root, as intended: it is then checked
    if not allow_outside and not file.is_relative_to(root):
        raise ValueError(f"{where}: path {relative!r} leads to {file}, outside the images folder {root}; faceaudit reads "
                         "only files inside it (pass --allow-outside-images to read it anyway)")
    return file


def clean_label(value, column: str, where: str, warn=None) -> str:
    """A group label as text: surrounding whitespace stripped (with a warning: "A " and "A"
    would otherwise be two groups); a label containing the group separator refused (race
    "A x" with gender "y" and race "A" with gender "x y" would print as one group)."""
    from faceaudit.files.manifest import GROUP_SEPARATOR

    text = str(value)
    if text != text.strip():
        if warn is not None:
            warn(f"{where}: {column} {text!r} has surrounding whitespace; read as {text.strip()!r}")
        text = text.strip()
    words = text.split()
    if len(words) > 1 and GROUP_SEPARATOR.strip() in words:  # "x" alone cannot shift a join; "A x" can
        raise ValueError(f"{where}: {column} {text!r} contains the word {GROUP_SEPARATOR.strip()!r}, which joins "
                         "attributes in a group's name; two different groups could print the same. Rename it")
    return text


def folder_rows(images: Path, manifest: Path, groups: dict[str, tuple[str, ...]] | None, *, role: str,
                table: pd.DataFrame | None = None, allow_outside: bool = False, warn=None) -> pd.DataFrame:
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
        file = contained(images, str(rec["path"]), f"{manifest}, line {line}", allow_outside=allow_outside)
        if not file.is_file():
            raise FileNotFoundError(f"{manifest}, line {line}: image {file} does not exist")
        if role == NEUTRAL and not str(rec.get("prompt", "")).strip():
            raise ValueError(f"{manifest}, line {line}: a neutral image needs its prompt (column 'prompt')")
        labels = {a: clean_label(rec[a], a, f"{manifest}, line {line}", warn) for a in attributes}
        for a in attributes if role != NEUTRAL else ():  # a neutral prompt requests no group
            if groups and labels[a] not in groups[a]:
                raise ValueError(f"{manifest}, line {line}: unknown {a} {rec[a]!r}; the spec's levels are {list(groups[a])}")
            if not labels[a]:
                raise ValueError(f"{manifest}, line {line}: column {a!r} is empty")
        data = file.read_bytes()
        try:
            with Image.open(file) as im:
                im.verify()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{manifest}, line {line}: {file} is not a readable image ({err})") from None
        rows.append(dict({a: labels[a] if role != NEUTRAL else "" for a in attributes}, line=line, image_id=content_hash(data),
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


def refuse_duplicates(rows: pd.DataFrame, manifest: Path) -> pd.DataFrame:
    """The policy for one image listed twice: refused, naming the lines (its role in each).
    Kept once, a duplicate would weigh one face twice in its group; across roles, it would
    compare a face with itself."""
    repeated = rows[rows["image_id"].duplicated(keep=False)]
    if len(repeated):
        listed = []
        for image_id, same in list(repeated.groupby("image_id", sort=False))[:3]:
            listed.append(" and ".join(f"line {r.line} ({r.role}, {r.path})" for r in same.sort_values("line").itertuples())
                          + f" are the same image (sha256 {image_id[:12]})")
        more = repeated["image_id"].nunique() - len(listed)
        raise ValueError(f"{manifest}: " + "; ".join(listed) + (f"; and {more} more" if more > 0 else "")
                         + ". List each image once, under one role")
    return rows.drop(columns="line")


def ingest(images: Path, manifest: Path, *, allow_outside: bool = False, warn=None) -> tuple[pd.DataFrame, list[str]]:
    """Manifest rows and group columns for a folder of existing images.

    Raises:
        ValueError: naming the file and line: no ``role`` column or a bad role, missing
            group values, a path outside ``images``, unreadable images, one image on two
            lines; or no generated / no reference images.
    """
    table = read_table(manifest)
    _check_roles(table, manifest)
    frames = [folder_rows(images, manifest, None, role=role, table=table[table["role"] == role],
                          allow_outside=allow_outside, warn=warn) for role in (*ROLES, NEUTRAL)]
    rows = pd.concat(frames, ignore_index=True)
    rows.loc[(rows.role != "reference") & (rows.generator == ""), "generator"] = "user-images"
    groups = [c for c in GROUP_ATTRIBUTES if c in rows.columns]
    return refuse_duplicates(rows, manifest).reset_index(drop=True), groups


def listed_files(images: Path, manifest: Path, *, allow_outside: bool = False) -> list[Path]:
    """Every image file a manifest table names (resolved, checked to lie inside ``images``):
    the ingest stage's inputs, so its record covers their content."""
    table = read_table(manifest)
    if "path" not in table.columns:
        raise ValueError(f"{manifest}: needs a 'path' column (image file, relative to {images})")
    return [contained(images, str(p), f"{manifest}, line {i + 2}", allow_outside=allow_outside)
            for i, p in enumerate(table["path"])]


def reference_rows(images: Path, manifest: Path, groups) -> pd.DataFrame:
    rows = folder_rows(images, manifest, groups, role="reference")
    return refuse_duplicates(rows, manifest) if len(rows) else rows
