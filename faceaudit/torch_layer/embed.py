"""Embed every image of an audit folder with every encoder; a rerun computes nothing new.

For each encoder the store is keyed by ``(encoder_id, preprocessing_id)`` and by image
content hash, so only images missing from that store are embedded, batch by batch, each
batch written atomically as its own part (a killed run resumes). Images are decoded and
preprocessed by a ``torch.utils.data.DataLoader`` (``workers`` processes, so decoding
overlaps the encoder on a GPU). CLIP encoders also embed every prompt, edit phrase and
target caption (a text store keyed by the text's hash). ``embeddings/index.json`` records
which encoder serves which role of the audit. With a Ray pool (``ray``) the image batches
go to actors that each build the encoder once and write the same parts
(``faceaudit.torch_layer.sharded``); the texts (a few hundred prompts) stay here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path

from faceaudit.files.folder import AuditFolder
from faceaudit.files.images import load_rgb
from faceaudit.files.io import progress_bar
from faceaudit.files.spec import RaySpec
from faceaudit.files.store import EmbeddingStore, edit_target, index_entry, read_index, text_key, write_index

DEFAULT_BATCH = {"cpu": 16, "cuda": 64}


def batch_size_for(requested: int, device: str) -> int:
    return requested or DEFAULT_BATCH.get(device.split(":")[0], 16)


class _Images:
    """A map-style dataset of ``(index, prepared image)``: decoding runs in the loader's workers."""

    def __init__(self, paths: list[Path], prepare):
        self.paths, self.prepare = paths, prepare

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.prepare(load_rgb(self.paths[i]))


def _collate(items):
    import torch

    return torch.stack(items) if isinstance(items[0], torch.Tensor) else list(items)


def _batches(paths: list[Path], encoder, batch_size: int, workers: int):
    from torch.utils.data import DataLoader

    loader = DataLoader(_Images(paths, encoder.prepare), batch_size=batch_size, num_workers=workers,
                        collate_fn=_collate, prefetch_factor=2 if workers else None)
    yield from loader


@dataclasses.dataclass
class ImageEmbedder:
    """An encoder built once by ``build`` (in a Ray actor), embedding batches of
    ``(image hash, file)`` into its store."""

    build: Callable
    root: Path

    def __post_init__(self):
        self.encoder = self.build()
        self.store = EmbeddingStore(self.root, self.encoder.encoder_id, self.encoder.preprocessing_id)

    def __call__(self, batch: list[tuple[str, Path]]) -> int:
        prepared = _collate([self.encoder.prepare(load_rgb(path)) for _, path in batch])
        vectors, found = self.encoder.embed_batch(prepared)
        self.store.write([h for h, _ in batch], vectors, found)
        return len(batch)


def embed(folder: AuditFolder, encoders: list, *, batch_size: int = 0, workers: int = 0,
          progress: Callable = progress_bar, ray: RaySpec | None = None, builders: Sequence[Callable] = (),
          use_gpu: bool = False, texts: Sequence[str] = ()) -> dict[str, int]:
    """Embed what is missing; record each encoder's roles; return how many images each computed.
    Text encoders also embed ``texts`` (the zero-shot prompts of the perceive stage) beside
    the manifest's prompts.

    With ``ray`` enabled, ``builders[i]`` (picklable, no arguments) rebuilds ``encoders[i]``
    in each actor (on a GPU when ``use_gpu``)."""
    manifest = folder.manifest
    missing_files = [p for p in manifest["path"] if p and not folder.file(p).is_file()]
    if missing_files:
        raise FileNotFoundError(f"{len(missing_files)} image(s) in the manifest do not exist, "
                                f"first: {folder.file(missing_files[0])}")
    without = manifest[manifest["path"] == ""]
    if len(without):
        raise ValueError(f"{len(without)} manifest row(s) have no image file (first: {without['image_id'].iloc[0]}); "
                         "a simulated audit is embedded already")
    computed = {}
    roles = read_index(folder.path)
    for k, encoder in enumerate(encoders):
        store = EmbeddingStore(folder.path, encoder.encoder_id, encoder.preprocessing_id)
        done = store.done()
        todo = manifest[~manifest["image_id"].isin(done)].drop_duplicates("image_id")
        size = batch_size_for(batch_size, getattr(encoder, "device", "cpu"))
        paths = [folder.file(p) for p in todo["path"]]
        ids = list(todo["image_id"])
        chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
        if chunks and ray is not None and ray.enabled:  # the same batches, each with its files
            from faceaudit.torch_layer.sharded import run_batches

            at = dict(zip(ids, paths))
            run_batches(ray, functools.partial(ImageEmbedder, builders[k], folder.path),
                        [[(h, at[h]) for h in chunk] for chunk in chunks], use_gpu=use_gpu,
                        progress=lambda done: progress(done, f"embed {encoder.encoder_id}", total=len(chunks)))
        elif chunks:  # the bar counts batches; the loader streams them (decoding ahead in its workers)
            bar = progress(range(len(chunks)), f"embed {encoder.encoder_id}")
            for hashes, batch, _ in zip(chunks, _batches(paths, encoder, size, workers), bar):
                vectors, found = encoder.embed_batch(batch)
                store.write(hashes, vectors, found)
        computed[encoder.encoder_id] = len(todo)
        for role in encoder.roles:
            if role != "text":
                roles[role] = index_entry(encoder.encoder_id, encoder.preprocessing_id)
        if hasattr(encoder, "embed_texts"):
            edited = manifest[manifest["edit_phrase"] != ""]
            targets = [edit_target(p, e) for p, e in zip(edited["prompt"], edited["edit_phrase"])]
            wanted = sorted({t for t in (*manifest["prompt"], *manifest["edit_phrase"], *targets, *texts) if t})
            if wanted:  # images without prompts (a user's folder) have no text side
                tstore = EmbeddingStore.for_texts(folder.path, encoder.encoder_id)
                have = tstore.done()
                new = [t for t in wanted if text_key(t) not in have]
                for i in range(0, len(new), size):
                    chunk = new[i:i + size]
                    tstore.write([text_key(t) for t in chunk], encoder.embed_texts(chunk))
                roles["text"] = index_entry(encoder.encoder_id, encoder.preprocessing_id)
    write_index(folder.path, roles)
    return computed
