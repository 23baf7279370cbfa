"""The manifest: one row per image (``manifest.parquet``), the index every stage reads.

``image_id`` is the image's content hash (SHA-256 of the PNG bytes; of the embedding bytes
for simulated worlds), so the same picture is the same row whoever made it. Columns are
listed in :data:`MANIFEST_COLUMNS`; group attributes (``race``, ``gender``, ``age``, ...)
are extra columns named in the ``group_columns`` key of the Parquet metadata.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from faceaudit.files.io import StageFileError, atomic_write_bytes

MANIFEST = "manifest.parquet"
MANIFEST_COLUMNS = {
    "image_id": "content hash of the image (hex SHA-256)",
    "path": "image file, relative to the manifest's folder ('' when there is no image)",
    "role": "'generated', 'reference', or 'neutral' (generated from a prompt that names no group)",
    "generator": "generator name from the spec ('' for reference images)",
    "group": "the group label, attributes joined with ' x ' ('' for a neutral prompt's image)",
    "identity": "identity name ('' when the prompt names nobody)",
    "identity_kind": "'invented', 'celebrity', 'real' or 'none'",
    "seed": "generation seed (-1 for reference images)",
    "prompt": "the text prompt",
    "edit": "edit attribute ('' for a source image)",
    "edit_phrase": "the phrase the edit steered towards ('' for a source image)",
    "source_id": "image_id of the unedited source of an edit ('' otherwise)",
}
GROUP_SEPARATOR = " x "  # the same join as faceaudit.core's intersections


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(path: str | Path, frame: pd.DataFrame, group_columns: Iterable[str], **metadata) -> None:
    """Write the manifest atomically, recording which columns are group attributes."""
    group_columns = list(group_columns)
    missing = [c for c in [*MANIFEST_COLUMNS, *group_columns] if c not in frame.columns]
    if missing:
        raise ValueError(f"manifest is missing column(s) {missing}")
    if frame["image_id"].duplicated().any():
        dup = frame.loc[frame["image_id"].duplicated(), "image_id"].iloc[0]
        raise ValueError(f"manifest has duplicate image_id {dup}")
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"faceaudit"] = json.dumps({"group_columns": group_columns, **metadata}).encode()
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_manifest(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a manifest and its faceaudit metadata (``group_columns`` and where it came from).

    Raises:
        FileNotFoundError: no manifest.
        StageFileError: unreadable, or lacking the columns its metadata names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise StageFileError(f"{path} is not a readable Parquet manifest ({type(err).__name__}); "
                             "rewrite it with the stage that made it (`faceaudit audit --force`)") from None
    raw = (table.schema.metadata or {}).get(b"faceaudit")
    meta = json.loads(raw) if raw else {"group_columns": []}
    frame = table.to_pandas()
    missing = [c for c in ["image_id", *meta.get("group_columns", [])] if c not in frame.columns]
    if missing:
        raise StageFileError(f"manifest {path} lacks column(s) {missing}")
    return frame, meta


def group_label(frame: pd.DataFrame, columns: list[str], where: str = "") -> pd.Series:
    """The ``group`` label of each row: its attribute values joined with ``' x '``.

    Raises:
        ValueError: two different combinations of values that would print as one label
            (race "A x" with gender "y" and race "A" with gender "x y"), named: groups must
            never merge in silence.
    """
    values = frame[columns].astype(str)
    labels = values.agg(GROUP_SEPARATOR.join, axis=1) if len(columns) else pd.Series("", index=frame.index)
    if len(columns) > 1 and len(frame):
        distinct = values.drop_duplicates()
        joined = distinct.agg(GROUP_SEPARATOR.join, axis=1)
        clash = joined[joined.duplicated(keep=False)]
        if len(clash):
            pairs = [tuple(r) for r in distinct.loc[clash.index].itertuples(index=False)]
            raise ValueError(f"{where + ': ' if where else ''}the groups {pairs} would all print as "
                             f"{clash.iloc[0]!r}; rename a label so that no group merges with another")
    return labels
