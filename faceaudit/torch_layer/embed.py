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
from faceaudit.files.spec import EncoderSpec, RaySpec
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


def embed(folder: AuditFolder, encoder, spec: EncoderSpec, *, ray: RaySpec | None = None,
          texts: Sequence[str] = (), progress: Callable = progress_bar) -> int:
    """Embed what ``encoder`` (built from ``spec``) is missing; record its roles; return how
    many images it computed. A text encoder also embeds ``texts`` (the zero-shot prompts of
    the perceive stage) beside the manifest's prompts.

    With ``ray`` enabled, each actor rebuilds the encoder from ``spec`` (on a GPU when the
    spec's device is one); batch size and decoding workers come from the spec."""
    manifest = folder.manifest
    _check_image_files(folder, manifest)
    roles = read_index(folder.path)
    store = EmbeddingStore(folder.path, encoder.encoder_id, encoder.preprocessing_id)
    todo = manifest[~manifest["image_id"].isin(store.done())].drop_duplicates("image_id")
    size = batch_size_for(spec.batch_size, spec.device)
    paths = [folder.file(p) for p in todo["path"]]
    ids = list(todo["image_id"])
    chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
    if chunks and ray is not None and ray.enabled:  # the same batches, each with its files
        from faceaudit.torch_layer.encoders import build_encoder
        from faceaudit.torch_layer.sharded import run_batches

        at = dict(zip(ids, paths))
        run_batches(ray, functools.partial(ImageEmbedder, functools.partial(build_encoder, spec, spec.device),
                                           folder.path),
                    [[(h, at[h]) for h in chunk] for chunk in chunks], use_gpu=spec.device.startswith("cuda"),
                    progress=lambda done: progress(done, f"embed {encoder.encoder_id}", total=len(chunks)))
    elif chunks:  # the bar counts batches; the loader streams them (decoding ahead in its workers)
        bar = progress(range(len(chunks)), f"embed {encoder.encoder_id}")
        for hashes, batch, _ in zip(chunks, _batches(paths, encoder, size, spec.workers), bar):
            vectors, found = encoder.embed_batch(batch)
            store.write(hashes, vectors, found)
    for role in encoder.roles:
        if role != "text":
            roles[role] = index_entry(encoder.encoder_id, encoder.preprocessing_id)
    if hasattr(encoder, "embed_texts") and _embed_texts(folder, encoder, texts, size):
        roles["text"] = index_entry(encoder.encoder_id, encoder.preprocessing_id)
    write_index(folder.path, roles)
    return len(todo)


def _check_image_files(folder: AuditFolder, manifest) -> None:
    """Every manifest row names an image file that exists."""
    missing_files = [p for p in manifest["path"] if p and not folder.file(p).is_file()]
    if missing_files:
        raise FileNotFoundError(f"{len(missing_files)} image(s) in the manifest do not exist, "
                                f"first: {folder.file(missing_files[0])}")
    without = manifest[manifest["path"] == ""]
    if len(without):
        raise ValueError(f"{len(without)} manifest row(s) have no image file (first: {without['image_id'].iloc[0]}); "
                         "a simulated audit is embedded already")


def _embed_texts(folder: AuditFolder, encoder, texts: Sequence[str], size: int) -> bool:
    """Embed the prompts, edit phrases, edit targets and ``texts`` missing from the text
    store; False when there is no text to embed (a user's folder of images without prompts)."""
    manifest = folder.manifest
    edited = manifest[manifest["edit_phrase"] != ""]
    targets = [edit_target(p, e) for p, e in zip(edited["prompt"], edited["edit_phrase"])]
    wanted = sorted({t for t in (*manifest["prompt"], *manifest["edit_phrase"], *targets, *texts) if t})
    if not wanted:
        return False
    store = EmbeddingStore.for_texts(folder.path, encoder.encoder_id)
    have = store.done()
    new = [t for t in wanted if text_key(t) not in have]
    for i in range(0, len(new), size):
        chunk = new[i:i + size]
        store.write([text_key(t) for t in chunk], encoder.embed_texts(chunk))
    return True
