"""Embed every image of an audit folder with every encoder; a rerun computes nothing new.

For each encoder the store is keyed by ``(encoder_id, preprocessing_id)`` and by image
content hash, so only images missing from that store are loaded and embedded, batch by
batch, each batch written atomically as its own part (a killed run resumes). CLIP encoders
also embed every prompt and edit phrase (a text store keyed by the text's hash). The
manifest's metadata records which encoder serves distribution metrics (CLIP) and which
identity (dlib), and their preprocessing ids.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from faceaudit.io import progress_bar
from faceaudit.store import EmbeddingStore, content_hash, read_manifest, write_manifest

TEXT_PREPROCESSING = "open_clip-tokenizer"


def text_store(out: Path, encoder_id: str) -> EmbeddingStore:
    return EmbeddingStore(out, encoder_id + ":text", TEXT_PREPROCESSING)


def text_key(text: str) -> str:
    return content_hash(text.encode("utf-8"))


def edit_target(prompt: str, phrase: str) -> str:
    """The caption an edit steers towards (the target of the directional similarity)."""
    return f"{prompt}, {phrase}"


def _load(out: Path, path: str) -> Image.Image:
    file = out / path
    try:
        with Image.open(file) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read image {file}: {err}") from None


def embed(out: str | Path, encoders: list, *, batch_size: int = 16,
          progress: Callable = progress_bar) -> dict[str, int]:
    """Embed what is missing; return how many images each encoder computed."""
    out = Path(out)
    manifest, meta = read_manifest(out / "manifest.parquet")
    missing_files = [p for p in manifest["path"] if p and not (out / p).is_file()]
    if missing_files:
        raise FileNotFoundError(f"{len(missing_files)} image(s) in the manifest do not exist, first: {out / missing_files[0]}")
    computed = {}
    preprocessing = dict(meta.get("preprocessing", {}))
    roles = dict(meta.get("encoders", {}))
    for encoder in encoders:
        store = EmbeddingStore(out, encoder.encoder_id, encoder.preprocessing_id)
        done = store.done()
        todo = manifest[~manifest["image_id"].isin(done)].drop_duplicates("image_id")
        batches = [todo.iloc[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        for batch in progress(batches, f"embed {encoder.encoder_id}"):
            images = [_load(out, p) for p in batch["path"]]
            vectors, found = encoder.embed_images(images)
            store.write(list(batch["image_id"]), vectors, found)
        computed[encoder.encoder_id] = len(todo)
        preprocessing[encoder.encoder_id] = encoder.preprocessing_id
        if hasattr(encoder, "embed_texts"):
            edited = manifest[manifest["edit_phrase"] != ""]
            targets = [edit_target(p, e) for p, e in zip(edited["prompt"], edited["edit_phrase"])]
            texts = sorted({t for t in (*manifest["prompt"], *manifest["edit_phrase"], *targets) if t})
            tstore = text_store(out, encoder.encoder_id)
            have = tstore.done()
            new = [t for t in texts if text_key(t) not in have]
            for i in range(0, len(new), batch_size):
                chunk = new[i:i + batch_size]
                tstore.write([text_key(t) for t in chunk], encoder.embed_texts(chunk))
            roles.setdefault("distribution", encoder.encoder_id)
            if texts:  # images without prompts (a user's folder) have no text side
                roles["text"] = encoder.encoder_id
        else:
            roles.setdefault("identity", encoder.encoder_id)
    meta.update(preprocessing=preprocessing, encoders=roles)
    group_columns = meta.pop("group_columns")
    write_manifest(out / "manifest.parquet", manifest, group_columns, **meta)
    return computed


def image_count(out: Path) -> int:
    return int(np.sum([1 for _ in (Path(out) / "images").rglob("*.png")]))
