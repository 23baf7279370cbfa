"""The simulate stage: a whole synthetic world drawn from the analytical model, written as
the real pipeline's files.

``faceaudit simulate --out DIR --seed S [--config FILE]`` draws groups, identities, a
training set with shares ``pi``, the generator fitted to it (transfer, shrinkage, identity
collapse, diversity loss), and generated and real reference embeddings with group labels,
then writes what ``generate`` + ``embed`` would write (``manifest.parquet``, the embedding
store under encoder id ``simulated`` and ``embeddings/index.json``) and what a real audit
with identity-labelled reference photos would measure: ``identity_spreads.json``, estimated
from a labelled sample of real identities. The answer key, ``truth.json`` (per-group shares,
expected and realised FD, verification accuracy) and ``world.npz`` (the arrays), is for
tests and experiments: no inference reads it.

Structure of the world (``design/analytical-model.md``; isotropic identity model so the
verification closed form applies): ``mu_g = race effect + gender effect``, real images
``x = c + e`` with identity centres ``c ~ N(mu_g, b_g^2 I)`` and ``e ~ N(0, w^2 I)``, so
``S_g = (b_g^2 + w^2) I``. Generated images come in two kinds:

* *group* images (the prompt names no one; one face per seed): ``N(m_g, C_g)``, the
  generator's fitted Gaussian, which the distribution metrics compare to the reference;
* *identity* images (a named person, several seeds): centre ``m_g + gamma (1 - w_g) z``
  for an invented name (identity collapse), ``m_g + gamma (c - mu_g)`` for a celebrity
  (the real person's centre ``c``), plus ``gamma e`` per seed; verification uses these.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from faceaudit import core
from faceaudit.files.folder import AuditFolder
from faceaudit.files.io import atomic_write_bytes, write_json
from faceaudit.files.manifest import MANIFEST, content_hash, group_label, write_manifest
from faceaudit.files.prompts import invented_names, render
from faceaudit.files.store import EMBEDDINGS, INDEX, EmbeddingStore, index_entry, write_index
from faceaudit.stages import StageResult

NAME = "simulate"
DESCRIBE = "draw a simulated world and its audit embeddings"
SIMULATED_ENCODER = "simulated"
SIMULATED_PREPROCESSING = "none"
SPREADS = "identity_spreads.json"


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Every knob of a simulated world (the TOML file's ``[simulate]`` table, flat keys)."""

    races: tuple[str, ...] = ("Asian", "Black", "Indian", "White")
    genders: tuple[str, ...] = ("man", "woman")
    dim: int = 32
    group_separation: float = 1.5
    within_var: float = 0.5
    between_var: float = 0.5
    shift_scale: float = 0.15
    # Training mix: shares by race (split evenly over genders); LAION-like skew by default.
    race_shares: tuple[float, ...] = (0.12, 0.08, 0.05, 0.75)
    training_size: int = 8000
    transfer: float = 0.1
    length_scale: float = 1.5
    shrinkage: float = 400.0
    diversity: float = 0.9
    # The audit drawn from the world.
    reference_per_group: int = 200
    group_images: int = 200
    invented_identities: int = 10
    celebrity_identities: int = 4
    seeds_per_identity: int = 4
    generator: str = "simulated-generator"
    # What a real audit with identity-labelled reference photos has: a sample of real
    # identities with several photos each, from which the identity spreads are estimated.
    labelled_identities: int = 40
    photos_per_labelled_identity: int = 4

    def __post_init__(self):
        if len(self.race_shares) != len(self.races):
            raise ValueError(f"race_shares has {len(self.race_shares)} entries for {len(self.races)} races")
        if any(s <= 0 for s in self.race_shares) or abs(sum(self.race_shares) - 1) > 1e-9:
            raise ValueError(f"race_shares must be positive and sum to 1, got {self.race_shares}")
        for name in ("dim", "training_size", "reference_per_group", "group_images", "seeds_per_identity",
                     "labelled_identities", "photos_per_labelled_identity"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2, got {getattr(self, name)}")
        if not 0 <= self.transfer <= 1:
            raise ValueError(f"transfer must lie in [0, 1], got {self.transfer}")
        if not 0 < self.diversity <= 1:
            raise ValueError(f"diversity must lie in (0, 1], got {self.diversity}")
        for name in ("within_var", "between_var", "length_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_toml(cls, path: str | Path) -> SimulationConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ValueError(f"cannot read simulation config {path}: {err}") from None
        table = raw.get("simulate", raw)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown} in [simulate]; known keys: {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
        return cls(**values)

    @property
    def groups(self) -> list[dict[str, str]]:
        return [{"race": r, "gender": g} for r in self.races for g in self.genders]


@dataclasses.dataclass(frozen=True)
class World:
    """The drawn world: arrays of the analytical model plus labels."""

    labels: list[str]
    world: core.TargetWorld
    mix: core.TrainingMix
    identity: core.IdentitySpread

    def to_npz(self) -> bytes:
        import io

        buffer = io.BytesIO()
        np.savez(
            buffer,
            labels=np.asarray(self.labels),
            means=np.asarray(self.world.means),
            covs=np.asarray(self.world.covs),
            shifts=np.asarray(self.world.shifts),
            shares=np.asarray(self.mix.shares),
            size=np.asarray(self.mix.size),
            transfer=np.asarray(self.mix.transfer),
            length_scale=np.asarray(self.mix.length_scale),
            shrinkage=np.asarray(self.mix.shrinkage),
            diversity=np.asarray(self.mix.diversity),
            within_var=np.asarray(self.identity.within),
            between_var=np.asarray(self.identity.between),
        )
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, path: str | Path) -> World:
        path = Path(path)
        try:
            z = np.load(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read world file {path}: {err}") from None
        with z:
            f = {k: jnp.asarray(z[k]) for k in z.files if k != "labels"}
            labels = [str(s) for s in z["labels"]]
        return cls(
            labels,
            core.TargetWorld(f["means"], f["covs"], f["shifts"]),
            core.TrainingMix(f["shares"], f["size"], f["transfer"], f["length_scale"], f["shrinkage"], f["diversity"]),
            core.IdentitySpread(f["within_var"], f["between_var"]),
        )


def draw_world(config: SimulationConfig, rng: np.random.Generator) -> World:
    """Group means, covariances, shifts and the training mix of one world."""
    d = config.dim
    # Effects with E|a - b|^2 = separation^2 between two races (or two genders).
    race_fx = rng.normal(size=(len(config.races), d)) * config.group_separation / np.sqrt(2 * d)
    gender_fx = rng.normal(size=(len(config.genders), d)) * config.group_separation / np.sqrt(2 * d) * 0.7
    means = np.stack([race_fx[i] + gender_fx[j] for i in range(len(config.races)) for j in range(len(config.genders))])
    g = means.shape[0]
    between = np.full(g, config.between_var)
    covs = np.stack([(b + config.within_var) * np.eye(d) for b in between])
    shifts = rng.normal(size=(g, d)) * config.shift_scale / np.sqrt(d)
    shares = np.repeat(np.asarray(config.race_shares), len(config.genders)) / len(config.genders)
    labels = [f"{a['race']} x {a['gender']}" for a in config.groups]
    mix = core.TrainingMix(
        jnp.asarray(shares), float(config.training_size), config.transfer, config.length_scale, config.shrinkage, config.diversity
    )
    return World(labels, core.TargetWorld(jnp.asarray(means), jnp.asarray(covs), jnp.asarray(shifts)), mix,
                 core.IdentitySpread(config.within_var, jnp.asarray(between)))


def _rows_hash(x: np.ndarray) -> list[str]:
    return [content_hash(np.ascontiguousarray(row, dtype=np.float32).tobytes()) for row in x]


@dataclasses.dataclass(frozen=True)
class Settings:
    seed: int = 0
    config: SimulationConfig = SimulationConfig()


@dataclasses.dataclass(frozen=True)
class SimulatedAudit:
    """Everything one draw produces: the manifest rows, their embeddings, the identity
    spreads a labelled reference sample gives, and the answer key."""

    manifest: pd.DataFrame
    embeddings: np.ndarray
    spreads: dict
    truth: dict
    world: World


def draw_audit(config: SimulationConfig, seed: int, *, with_truth: bool = True) -> SimulatedAudit:
    """Draw a world and its audit in memory (``run`` writes it; ``faceaudit demo`` uses it
    ``with_truth=False``: the embeddings without the answer key's closed forms, whose
    compilation is most of a draw's time)."""
    rng = np.random.default_rng(seed)
    world = draw_world(config, rng)
    counts = np.maximum(np.rint(np.asarray(world.mix.size * world.mix.shares)), 2.0)
    stats = core.sample_training_stats(jax.random.key(seed), world.world, jnp.asarray(counts))
    gen = core.fit_generator(stats, world.world, world.mix)
    mixing = core.mixing(world.world, world.mix)

    per_group = config.invented_identities + config.celebrity_identities
    all_names = invented_names(per_group * len(config.groups), seed=seed)  # distinct across groups
    rows, vectors = [], []
    gamma = float(config.diversity)
    sw = np.sqrt(config.within_var)
    d = config.dim
    labelled, labelled_ids, labelled_groups = [], [], []
    for k, attrs in enumerate(config.groups):
        mu = np.asarray(world.world.means[k])
        sb = float(np.sqrt(world.identity.between[k]))
        ref = mu + rng.normal(size=(config.reference_per_group, d)) * np.sqrt(sb**2 + sw**2)
        for x in ref:
            rows.append(dict(attrs, role="reference", generator="", identity="", identity_kind="real", seed=-1,
                             prompt=render("a photo of {group}", attrs)))
            vectors.append(x)
        chol = np.linalg.cholesky(np.asarray(gen.covs[k]))
        grp = np.asarray(gen.means[k]) + rng.normal(size=(config.group_images, d)) @ chol.T
        for s, x in enumerate(grp):
            rows.append(dict(attrs, role="generated", generator=config.generator, identity="", identity_kind="none",
                             seed=s, prompt=render("a photo of {group}", attrs)))
            vectors.append(x)
        names = all_names[k * per_group:(k + 1) * per_group]
        collapse = 1.0 - float(mixing.shrink[k])
        for i, name in enumerate(names):
            is_celebrity = i >= config.invented_identities
            offset = rng.normal(size=d) * sb
            centre = np.asarray(gen.means[k]) + gamma * (offset if is_celebrity else collapse * offset)
            kind = "celebrity" if is_celebrity else "invented"
            name = f"Celebrity {name}" if is_celebrity else name
            for s in range(config.seeds_per_identity):
                rows.append(dict(attrs, role="generated", generator=config.generator, identity=name, identity_kind=kind,
                                 seed=s, prompt=render("a photo of {name}, {group}", attrs, name)))
                vectors.append(centre + gamma * sw * rng.normal(size=d))
        centres = mu + rng.normal(size=(config.labelled_identities, d)) * sb
        for i, c in enumerate(centres):
            labelled.append(c + rng.normal(size=(config.photos_per_labelled_identity, d)) * sw)
            labelled_ids += [f"{k}-{i}"] * config.photos_per_labelled_identity
            labelled_groups += [world.labels[k]] * config.photos_per_labelled_identity

    embeddings = np.asarray(vectors, dtype=np.float32)
    frame = pd.DataFrame(rows)
    frame.insert(0, "image_id", _rows_hash(embeddings))
    frame["path"] = ""
    frame["group"] = group_label(frame, ["race", "gender"])
    frame["edit"] = ""
    frame["edit_phrase"] = ""
    frame["source_id"] = ""
    within, between = core.identity_spreads(np.concatenate(labelled), np.asarray(labelled_ids),
                                            np.asarray(labelled_groups), world.labels)
    spreads = {"within": float(within), "between": dict(zip(world.labels, map(float, between))), "dim": d,
               "source": f"simulated labelled reference sample: {config.labelled_identities} identities x "
                         f"{config.photos_per_labelled_identity} photos per group"}
    truth = _truth(config, seed, world, counts, gen, mixing) if with_truth else {}
    return SimulatedAudit(frame, embeddings, spreads, truth, world)


def _truth(config: SimulationConfig, seed: int, world: World, counts, gen, mixing) -> dict:
    """The answer key: the closed forms and realised values every check compares with."""
    expected = core.expected_fd(world.world, world.mix)
    realised = jax.vmap(core.gaussian_frechet)(gen.means, gen.covs, world.world.means, world.world.covs)
    invented = core.generated_spread(world.identity.within, world.identity.between, mixing.shrink, world.mix.diversity)
    celebrity = core.generated_spread(
        world.identity.within, world.identity.between, mixing.shrink, world.mix.diversity, celebrity=True
    )
    verify = core.expected_verification(gen.means, invented)
    verify_celebrity = core.expected_verification(gen.means, celebrity)
    return {
        "seed": seed,
        "config": dataclasses.asdict(config),
        "training": {"size": config.training_size, "transfer": config.transfer, "length_scale": config.length_scale,
                     "shrinkage": config.shrinkage, "diversity": config.diversity},
        "identity": {"within": float(world.identity.within),
                     "between": dict(zip(world.labels, map(float, np.asarray(world.identity.between))))},
        "groups": {
            label: {
                "share": float(world.mix.shares[k]),
                "n_train": float(counts[k]),
                "n_effective": float(mixing.effective[k]),
                "shrink": float(mixing.shrink[k]),
                "fd_expected": float(expected.total[k]),
                "fd_structural": float(expected.structural[k]),
                "fd_noise": float(expected.noise[k]),
                "fd_true": float(realised[k]),
                "verification_same_group": float(verify.same_group[k]),
                "verification_any_group": float(verify.any_group[k]),
                "verification_same_group_celebrity": float(verify_celebrity.same_group[k]),
            }
            for k, label in enumerate(world.labels)
        },
        "generator": {"means": np.asarray(gen.means).tolist(), "covs": np.asarray(gen.covs).tolist()},
    }


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
    atomic_write_bytes(out / "world.npz", audit.world.to_npz())
    write_json(out / "truth.json", audit.truth)
    return StageResult((MANIFEST, INDEX, f"{EMBEDDINGS}/{store.folder.name}", SPREADS, "world.npz", "truth.json"),
                       {"truth": audit.truth})
