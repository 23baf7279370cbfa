"""The embed stage: every image through every encoder of the audit (``faceaudit.torch_layer``).

Stores are keyed by encoder, preprocessing and image hash, so a rerun embeds only what is
missing; ``embeddings/index.json`` says which encoder serves which role (distribution,
text, identity, similarity).
"""

from __future__ import annotations

import dataclasses

from faceaudit.files.folder import AuditFolder
from faceaudit.files.manifest import MANIFEST
from faceaudit.files.spec import EncoderSpec
from faceaudit.files.store import INDEX, EmbeddingStore, read_index
from faceaudit.stages import StageResult

NAME = "embed"
DESCRIBE = "embed images with the audit's encoders"
DEFAULT_ENCODERS = (EncoderSpec("clip", "ViT-B-32"), EncoderSpec("dlib"))


@dataclasses.dataclass(frozen=True)
class Settings:
    encoders: tuple[EncoderSpec, ...] = DEFAULT_ENCODERS


def inputs(folder: AuditFolder, settings: Settings) -> list:
    return [MANIFEST]


def preflight(settings: Settings) -> list[str]:
    """The weights of every encoder, found (or fetched) before any other work; where each
    comes from. Raises ValueError naming the encoder otherwise."""
    from faceaudit.torch_layer.encoders import check_weights

    sources = []
    for i, spec in enumerate(settings.encoders):
        try:
            sources.append(f"{spec.kind}: {check_weights(spec)}")
        except ValueError as err:
            raise ValueError(f"encoder {i} ({spec.kind}): {err}") from None
    return sources


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    from faceaudit.torch_layer.embed import embed
    from faceaudit.torch_layer.encoders import build_encoder

    counts = {}
    for spec in settings.encoders:  # one at a time: a GPU holds one model, not all of them
        encoder = build_encoder(spec, device=spec.device)
        counts.update(embed(folder, [encoder], batch_size=spec.batch_size, workers=spec.workers))
        del encoder
    index = read_index(folder.path)
    stores = sorted({f"embeddings/{EmbeddingStore(folder.path, e['encoder'], e['preprocessing']).folder.name}"
                     for e in index.values()})
    if "text" in index:
        stores.append(f"embeddings/{EmbeddingStore.for_texts(folder.path, index['text']['encoder']).folder.name}")
    return StageResult((INDEX, *stores), {"embedded": counts})
