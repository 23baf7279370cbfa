"""The stage files every stage reads and writes: the manifest and the embedding store.

* **Manifest** (``manifest.parquet``): one row per image. ``image_id`` is the image's
  content hash (SHA-256 of the PNG bytes; of the embedding bytes for simulated worlds), so
  the same picture is the same row whoever made it. Columns are listed in
  :data:`MANIFEST_COLUMNS`; group attributes (``race``, ``gender``, ``age``, ...) are extra
  columns named in the ``group_columns`` key of the Parquet metadata.
* **Embedding store** (``embeddings/<encoder key>/part-*.nc``): netCDF files (xarray,
  h5netcdf), each a batch of embeddings with dims ``(image, feature)``, coordinate
  ``image`` = content hash, and a boolean ``found`` (a face detector may find no face).
  The folder name is a hash of the encoder id *and* the preprocessing id, so a changed
  encoder or resize policy writes a new store and recomputes everything, and a rerun finds
  every hash already present and computes nothing. Parts are written atomically; a killed
  run loses at most the batch in flight, never a half-written part.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

from faceaudit.io import atomic_write_bytes

MANIFEST_COLUMNS = {
    "image_id": "content hash of the image (hex SHA-256)",
    "path": "image file, relative to the manifest's folder ('' when there is no image)",
    "role": "'generated' or 'reference'",
    "generator": "generator name from the spec ('' for reference images)",
    "group": "the group label, attributes joined with ' x '",
    "identity": "identity name ('' when the prompt names nobody)",
    "identity_kind": "'invented', 'celebrity', 'real' or 'none'",
    "seed": "generation seed (-1 for reference images)",
    "prompt": "the text prompt",
    "edit": "edit attribute ('' for a source image)",
    "edit_phrase": "the phrase the edit steered towards ('' for a source image)",
    "source_id": "image_id of the unedited source of an edit ('' otherwise)",
}


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
    """Read a manifest and its faceaudit metadata (``group_columns`` and stage settings)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise ValueError(f"{path} is not a readable Parquet manifest: {err}") from None
    raw = (table.schema.metadata or {}).get(b"faceaudit")
    meta = json.loads(raw) if raw else {"group_columns": []}
    frame = table.to_pandas()
    missing = [c for c in ["image_id", *meta.get("group_columns", [])] if c not in frame.columns]
    if missing:
        raise ValueError(f"manifest {path} lacks column(s) {missing}")
    return frame, meta


def encoder_key(encoder_id: str, preprocessing_id: str) -> str:
    """Folder name of a store: readable prefix + hash of encoder and preprocessing ids."""
    digest = hashlib.sha256(f"{encoder_id}\n{preprocessing_id}".encode()).hexdigest()[:12]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in encoder_id)[:40]
    return f"{safe}-{digest}"


class EmbeddingStore:
    """One encoder's embeddings under ``root/embeddings/<key>/`` (a thin driver over files)."""

    def __init__(self, root: str | Path, encoder_id: str, preprocessing_id: str):
        self.encoder_id = encoder_id
        self.preprocessing_id = preprocessing_id
        self.folder = Path(root) / "embeddings" / encoder_key(encoder_id, preprocessing_id)

    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.nc"))

    def done(self) -> set[str]:
        """Content hashes already embedded."""
        hashes: set[str] = set()
        for part in self._parts():
            with xr.open_dataset(part, engine="h5netcdf") as ds:
                hashes.update(str(h) for h in ds["image"].values)
        return hashes

    def write(self, hashes: list[str], embeddings: np.ndarray, found: np.ndarray | None = None) -> Path:
        """Write one batch as a new part, atomically. Hashes already stored are refused."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(hashes):
            raise ValueError(f"need one embedding row per hash: {len(hashes)} hashes, array shape {embeddings.shape}")
        found = np.ones(len(hashes), dtype=bool) if found is None else np.asarray(found, dtype=bool)
        ds = xr.Dataset(
            {"embedding": (("image", "feature"), embeddings), "found": (("image",), found)},
            coords={"image": np.asarray(hashes, dtype=object)},
            attrs={"encoder": self.encoder_id, "preprocessing": self.preprocessing_id},
        )
        name = f"part-{content_hash(''.join(hashes).encode())[:16]}.nc"
        atomic_write_bytes(self.folder / name, ds.to_netcdf(engine="h5netcdf"))
        return self.folder / name

    def load(self, image_ids: Iterable[str] | None = None) -> xr.Dataset:
        """All stored embeddings (or those of ``image_ids``, in that order) as one Dataset."""
        parts = self._parts()
        if not parts:
            raise FileNotFoundError(f"no embeddings for encoder {self.encoder_id!r} under {self.folder}")
        datasets = []
        for part in parts:
            with xr.open_dataset(part, engine="h5netcdf") as ds:
                datasets.append(ds.load())
        merged = xr.concat(datasets, dim="image")
        _, first = np.unique(merged["image"].values.astype(str), return_index=True)
        merged = merged.isel(image=np.sort(first))
        merged.attrs = {"encoder": self.encoder_id, "preprocessing": self.preprocessing_id}
        if image_ids is None:
            return merged
        wanted = [str(i) for i in image_ids]
        have = set(merged["image"].values.astype(str))
        missing = [i for i in wanted if i not in have]
        if missing:
            raise ValueError(
                f"{len(missing)} image(s) have no {self.encoder_id!r} embedding (first: {missing[0]}); run `faceaudit embed`"
            )
        return merged.sel(image=wanted)


def embeddings_with_manifest(store: EmbeddingStore, manifest: pd.DataFrame, group_columns: list[str]) -> xr.Dataset:
    """The store's embeddings for the manifest's rows, with manifest columns as coordinates."""
    ds = store.load(manifest["image_id"])
    coords = {c: ("image", manifest[c].to_numpy()) for c in manifest.columns if c != "image_id"}
    ds = ds.assign_coords(coords)
    ds.attrs["group_columns"] = json.dumps(group_columns)
    return ds
