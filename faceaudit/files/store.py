"""Embedding stores: one netCDF folder per encoder and preprocessing, keyed by image hash.

* **Embedding store** (``embeddings/<encoder key>/part-*.nc``): netCDF files (xarray,
  h5netcdf), each a batch of embeddings with dims ``(image, feature)``, coordinate
  ``image`` = content hash, and a boolean ``found`` (a face detector may find no face).
  The folder name is a hash of the encoder id *and* the preprocessing id, so a changed
  encoder or resize policy writes a new store and recomputes everything, and a rerun finds
  every hash already present and computes nothing. Parts are written atomically; a killed
  run loses at most the batch in flight, never a half-written part.
* **Text store**: the same, keyed by the hash of each prompt / edit phrase / target caption.
* **Index** (``embeddings/index.json``): which encoder serves which *role* of the audit:
  ``distribution`` (CLIP image features), ``text`` (the same CLIP's text tower),
  ``identity`` (a face descriptor), ``similarity`` (DINOv2), with preprocessing ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import xarray as xr

from faceaudit.files.io import StageFileError, atomic_write_bytes, read_json, write_json
from faceaudit.files.manifest import content_hash

EMBEDDINGS = "embeddings"
INDEX = f"{EMBEDDINGS}/index.json"
ROLES = ("distribution", "text", "identity", "similarity")
TEXT_PREPROCESSING = "open_clip-tokenizer"


def encoder_key(encoder_id: str, preprocessing_id: str) -> str:
    """Folder name of a store: readable prefix + hash of encoder and preprocessing ids."""
    digest = content_hash(f"{encoder_id}\n{preprocessing_id}".encode())[:12]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in encoder_id)[:40]
    return f"{safe}-{digest}"


def text_key(text: str) -> str:
    return content_hash(text.encode("utf-8"))


def edit_target(prompt: str, phrase: str) -> str:
    """The caption an edit steers towards (the target of the directional similarity)."""
    return f"{prompt}, {phrase}"


class EmbeddingStore:
    """One encoder's embeddings under ``root/embeddings/<key>/`` (a thin driver over files)."""

    def __init__(self, root: str | Path, encoder_id: str, preprocessing_id: str):
        self.encoder_id = encoder_id
        self.preprocessing_id = preprocessing_id
        self.folder = Path(root) / EMBEDDINGS / encoder_key(encoder_id, preprocessing_id)

    @classmethod
    def for_texts(cls, root: str | Path, encoder_id: str) -> EmbeddingStore:
        return cls(root, encoder_id + ":text", TEXT_PREPROCESSING)

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.nc"))

    def _open(self, part: Path) -> xr.Dataset:
        try:
            with xr.open_dataset(part, engine="h5netcdf") as ds:
                return ds.load()
        except Exception as err:  # h5py: OSError with a long chain; xarray: ValueError
            raise StageFileError(
                f"embedding part {part} is unreadable ({type(err).__name__}); delete it and rerun "
                "`faceaudit embed` (only its images are embedded again)"
            ) from None

    def done(self) -> set[str]:
        """Content hashes already embedded."""
        return {str(h) for part in self.parts() for h in self._open(part)["image"].values}

    def write(self, hashes: list[str], embeddings: np.ndarray, found: np.ndarray | None = None) -> Path:
        """Write one batch as a new part, atomically."""
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
        parts = self.parts()
        if not parts:
            raise FileNotFoundError(f"no embeddings for encoder {self.encoder_id!r} under {self.folder}; "
                                    "run `faceaudit embed`")
        merged = xr.concat([self._open(p) for p in parts], dim="image")
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


def read_index(root: str | Path) -> dict:
    """``{role: {"encoder": id, "preprocessing": id}}`` of an audit folder ({} before embedding)."""
    path = Path(root) / INDEX
    return read_json(path, stage="embed") if path.is_file() else {}


def write_index(root: str | Path, roles: dict) -> None:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown embedding role(s) {unknown}; roles are {ROLES}")
    write_json(Path(root) / INDEX, {r: roles[r] for r in ROLES if r in roles})


def index_entry(encoder_id: str, preprocessing_id: str) -> dict:
    return {"encoder": encoder_id, "preprocessing": preprocessing_id}



