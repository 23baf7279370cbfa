"""The embed stage: every image through every encoder of the audit (``faceaudit.torch_layer``).

Stores are keyed by encoder, preprocessing and image hash, so a rerun embeds only what is
missing; ``embeddings/index.json`` says which encoder serves which role (distribution,
text, identity, similarity). With ``ray`` the image batches run on Ray actors (the
encoder is also built here, on the CPU, for its ids and the prompts).
"""

from __future__ import annotations

import dataclasses

from faceaudit.files.folder import AuditFolder
from faceaudit.files.manifest import MANIFEST
from faceaudit.files.prompts import ZERO_SHOT_TEMPLATES, zero_shot_prompts
from faceaudit.files.spec import EncoderSpec, RaySpec
from faceaudit.files.store import INDEX, EmbeddingStore, read_index
from faceaudit.stages import StageResult

NAME = "embed"
DESCRIBE = "embed images with the audit's encoders"
DEFAULT_CLIP = "ViT-B-32"  # open_clip architecture of an audit without a spec


def encoders_for(clip: str) -> tuple[EncoderSpec, ...]:
    """The encoders of an audit without a spec: open_clip ``ARCHITECTURE[:PRETRAINED]`` for
    the distribution, text and similarity roles, and dlib for faces and identity."""
    architecture, _, pretrained = clip.partition(":")
    return EncoderSpec("clip", architecture, pretrained), EncoderSpec("dlib")


@dataclasses.dataclass(frozen=True)
class Settings:
    encoders: tuple[EncoderSpec, ...] = encoders_for(DEFAULT_CLIP)
    zero_shot_templates: tuple[str, ...] = ZERO_SHOT_TEMPLATES  # the perceive stage's CLIP prompts, embedded here
    ray: RaySpec | None = dataclasses.field(default=None, metadata={"record": False})


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
    _, prompts = zero_shot_prompts(folder.levels, settings.zero_shot_templates)
    texts = [t for row in prompts for t in row]
    sharded = settings.ray is not None and settings.ray.enabled
    for spec in settings.encoders:  # one at a time: a GPU holds one model, not all of them
        encoder = build_encoder(spec, device="cpu" if sharded else spec.device)
        counts[encoder.encoder_id] = embed(folder, encoder, spec, ray=settings.ray, texts=texts)
        del encoder
    index = read_index(folder.path)
    stores = sorted({f"embeddings/{EmbeddingStore(folder.path, e['encoder'], e['preprocessing']).folder.name}"
                     for e in index.values()})
    if "text" in index:
        stores.append(f"embeddings/{EmbeddingStore.for_texts(folder.path, index['text']['encoder']).folder.name}")
    return StageResult((INDEX, *stores), {"embedded": counts})
