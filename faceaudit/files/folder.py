"""``AuditFolder``: an audit's folder, opened once per stage.

It reads the manifest and the embedding index once and hands out what stages need: group
columns, the store of each embedding *role* (the one rule for which encoder serves what
is ``embeddings/index.json``, written by ``embed`` or ``simulate``), embeddings for rows,
and stage files by name with errors that name the file and the stage that writes it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from faceaudit.files import io, outputs
from faceaudit.files.manifest import MANIFEST, read_manifest
from faceaudit.files.store import EmbeddingStore, read_index


class AuditFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"AuditFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    @functools.cached_property
    def _manifest(self) -> tuple[pd.DataFrame, dict]:
        return read_manifest(self.path / MANIFEST)

    @property
    def manifest(self) -> pd.DataFrame:
        return self._manifest[0]

    @property
    def meta(self) -> dict:
        return self._manifest[1]

    @property
    def group_columns(self) -> list[str]:
        return list(self.meta.get("group_columns", []))

    @property
    def levels(self) -> dict[str, list[str]]:
        """Each group attribute's categories: the values the generated images requested, in
        order of first appearance (all rows' values where nothing was generated yet)."""
        rows = self.manifest[self.manifest["role"] == "generated"]
        rows = rows if len(rows) else self.manifest
        return {c: list(dict.fromkeys(v for v in rows[c].astype(str) if v != "")) for c in self.group_columns}

    @functools.cached_property
    def index(self) -> dict:
        return read_index(self.path)

    def has_role(self, role: str) -> bool:
        return role in self.index

    def store(self, role: str) -> EmbeddingStore:
        """The embedding store serving ``role`` (``distribution``, ``identity``, ``similarity``)."""
        if role not in self.index:
            raise FileNotFoundError(f"{self.path}: no {role} encoder in embeddings/index.json; run `faceaudit embed`")
        entry = self.index[role]
        return EmbeddingStore(self.path, entry["encoder"], entry["preprocessing"])

    def text_store(self) -> EmbeddingStore:
        if "text" not in self.index:
            raise FileNotFoundError(f"{self.path}: no text encoder in embeddings/index.json; run `faceaudit embed`")
        return EmbeddingStore.for_texts(self.path, self.index["text"]["encoder"])

    def embeddings(self, role: str, image_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, found)`` of the ``role`` encoder for ``image_ids`` (default: every manifest row)."""
        ids = self.manifest["image_id"] if image_ids is None else image_ids
        ds = self.store(role).load(ids)
        return np.asarray(ds["embedding"].values, dtype=np.float64), np.asarray(ds["found"].values, dtype=bool)

    def read(self, name: str):
        """A stage file by its name in ``outputs.FILES``, read by its kind (Parquet, JSON,
        ``.npz``), with errors that name the file and the stage that writes it."""
        stage = outputs.FILES[name].stage
        if name.endswith(".parquet"):
            return io.read_parquet(self.path / name, stage=stage)
        if name.endswith(".json"):
            return io.read_json(self.path / name, stage=stage)
        if name.endswith(".npz"):
            return io.read_npz(self.path / name, stage=stage)
        raise ValueError(f"{name}: AuditFolder.read reads Parquet, JSON and .npz stage files")

    def read_parquet(self, name: str, stage: str) -> pd.DataFrame:
        return io.read_parquet(self.path / name, stage=stage)

    def read_json(self, name: str, stage: str):
        return io.read_json(self.path / name, stage=stage)

    def write_parquet(self, name: str, frame: pd.DataFrame) -> Path:
        io.write_parquet(self.path / name, frame)
        return self.path / name

    def write_json(self, name: str, obj) -> Path:
        io.write_json(self.path / name, obj)
        return self.path / name
