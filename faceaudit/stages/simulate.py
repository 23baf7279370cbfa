"""The simulate stage: a simulated world (``tables.simulation``) written as the real
pipeline's files.

``faceaudit simulate --out DIR --seed S [--config FILE]`` writes what ``generate`` +
``embed`` would write (``manifest.parquet``, the embedding store under encoder id
``simulated`` and ``embeddings/index.json``) and what a real audit with identity-labelled
reference photos would measure: ``identity_spreads.json``, estimated from a labelled sample
of real identities. The answer key, ``truth.json`` (per-group shares, expected and realised
FD, verification accuracy) and ``world.npz`` (the arrays), is for tests and experiments: no
inference reads it.
"""

from __future__ import annotations

import dataclasses

from faceaudit.files.folder import AuditFolder
from faceaudit.files.io import atomic_write_bytes, write_json, write_parquet
from faceaudit.files.manifest import MANIFEST, write_manifest
from faceaudit.files.outputs import CLASSIFIER_LABELS, SPREADS, TRUTH, WORLD
from faceaudit.files.store import EMBEDDINGS, INDEX, EmbeddingStore, index_entry, write_index
from faceaudit.stages import StageResult
from faceaudit.tables.simulation import (
    SIMULATED_ENCODER,
    SIMULATED_PREPROCESSING,
    SimulationConfig,
    draw_audit,
)

NAME = "simulate"
DESCRIBE = "draw a simulated world and its audit embeddings"


@dataclasses.dataclass(frozen=True)
class Settings:
    seed: int = 0
    config: SimulationConfig = SimulationConfig()


def inputs(folder: AuditFolder, settings: Settings) -> list:
    return []  # a simulation reads nothing: its settings are the whole input


def run(folder: AuditFolder, settings: Settings) -> StageResult:
    """Draw the world and write the stage files and the answer key."""
    audit = draw_audit(settings.config, settings.seed)
    out = folder.path
    store = EmbeddingStore(out, SIMULATED_ENCODER, SIMULATED_PREPROCESSING)
    for stale in store.parts():  # a rerun with other settings must not mix worlds
        stale.unlink()
    store.write(list(audit.manifest["image_id"]), audit.embeddings)
    entry = index_entry(SIMULATED_ENCODER, SIMULATED_PREPROCESSING)
    write_index(out, {"distribution": entry, "identity": entry})
    write_manifest(out / MANIFEST, audit.manifest, ["race", "gender"], source="simulate", seed=settings.seed)
    write_json(out / SPREADS, audit.spreads)
    write_parquet(out / CLASSIFIER_LABELS, audit.labels)
    atomic_write_bytes(out / WORLD, audit.world.to_npz())
    write_json(out / TRUTH, audit.truth)
    return StageResult((MANIFEST, INDEX, f"{EMBEDDINGS}/{store.folder.name}", SPREADS, CLASSIFIER_LABELS, WORLD,
                        TRUTH),
                       {"truth": audit.truth})
