"""A whole synthetic world drawn from the analytical model, and the audit it would give.

The simulate stage (``stages/simulate.py``) writes it as the real pipeline's files; the
demo, the plan stage's ``--world`` and the experiments draw it here in memory.

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
from faceaudit.files.manifest import content_hash, group_label
from faceaudit.files.prompts import NEUTRAL_SUBJECTS, invented_names, neutral_prompt, render

SIMULATED_ENCODER = "simulated"
SIMULATED_PREPROCESSING = "none"
SIMULATED_CLASSIFIER = "simulated"
LABEL_COLUMNS = ["attribute", "category", "probability", "classifier"]


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
    # Who gets drawn. Neutral prompts (the built-in subjects, in order) with depicted mixes
    # over race x gender drawn around the training mix; requested groups depicted as asked
    # with a probability that grows with the group's training share (faithful_min for the
    # rarest, faithful_max for the commonest), else as another group in proportion to the
    # training shares; a perceived-attribute classifier whose accuracy differs by race and
    # whose race errors lean towards the commonest race (the bias such audits look for).
    neutral_prompts: int = 6
    neutral_images: int = 100
    neutral_concentration: float = 4.0  # Dirichlet concentration of a prompt's mix around the training mix
    faithful_min: float = 0.6
    faithful_max: float = 0.97
    race_accuracy: tuple[float, ...] = ()  # per race; () = 0.95 for the commonest race, 0.65-0.75 for the others
    gender_accuracy: tuple[float, ...] = ()  # per gender; () = 0.93, 0.90, ...
    no_face_rate: float = 0.02  # images the classifier finds no face in (never counted in a share)

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
        if len(self.race_accuracy) not in (0, len(self.races)) or len(self.gender_accuracy) not in (0, len(self.genders)):
            raise ValueError("race_accuracy and gender_accuracy need one entry per race and per gender (or none)")
        for name in ("faithful_min", "faithful_max", "no_face_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not all(0 < a <= 1 for a in (*self.race_accuracy, *self.gender_accuracy)):
            raise ValueError("classifier accuracies must lie in (0, 1]")
        if self.neutral_prompts < 0 or self.neutral_prompts > len(NEUTRAL_SUBJECTS):
            raise ValueError(f"neutral_prompts must lie in 0..{len(NEUTRAL_SUBJECTS)}, got {self.neutral_prompts}")
        if self.neutral_prompts and self.neutral_images < 1:
            raise ValueError(f"neutral_images must be at least 1, got {self.neutral_images}")
        if not self.neutral_concentration > 0:
            raise ValueError(f"neutral_concentration must be positive, got {self.neutral_concentration}")
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
class SimulatedAudit:
    """Everything one draw produces: the manifest rows, their embeddings, the identity
    spreads a labelled reference sample gives, and the answer key."""

    manifest: pd.DataFrame
    embeddings: np.ndarray
    spreads: dict
    truth: dict
    world: World
    labels: pd.DataFrame  # the simulated classifier's perceived labels (CLASSIFIER_LABELS)


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
    rows, vectors, labelled, labelled_ids, labelled_groups = [], [], [], [], []
    for k, attrs in enumerate(config.groups):
        # One stream in a fixed order: the group's images, then its labelled reference photos.
        group_rows, group_vectors = _draw_group_images(config, k, world, gen, 1.0 - float(mixing.shrink[k]),
                                                       all_names[k * per_group:(k + 1) * per_group], rng)
        rows += group_rows
        vectors += group_vectors
        photos, ids = _draw_labelled_identities(config, k, world, rng)
        labelled.append(photos)
        labelled_ids += ids
        labelled_groups += [world.labels[k]] * len(ids)

    drawn = draw_representation(config, world, gen, [dict(r, group=f"{r['race']} x {r['gender']}") for r in rows],
                                np.random.default_rng([seed, 1]))  # its own stream: the world above is unchanged
    rows += drawn.rows
    vectors += list(drawn.embeddings)
    embeddings = np.asarray(vectors, dtype=np.float32)
    frame = pd.DataFrame(rows)
    frame.insert(0, "image_id", _rows_hash(embeddings))
    frame["path"] = ""
    frame["group"] = np.where(frame["role"] == "neutral", "", group_label(frame, ["race", "gender"]))
    frame["edit"] = ""
    frame["edit_phrase"] = ""
    frame["source_id"] = ""
    spreads = _identity_spreads(config, world, np.concatenate(labelled), labelled_ids, labelled_groups)
    labels = drawn.labels.assign(image_id=frame["image_id"].to_numpy()[drawn.labels.pop("row").to_numpy()])
    truth = _truth(config, seed, world, counts, gen, mixing) if with_truth else {}
    if with_truth:
        truth.update(drawn.truth)
    return SimulatedAudit(frame, embeddings, spreads, truth, world, labels[["image_id", *LABEL_COLUMNS]])


def _draw_group_images(config: SimulationConfig, k: int, world, gen, collapse: float, names: list[str],
                       rng: np.random.Generator) -> tuple[list[dict], list[np.ndarray]]:
    """Group k's reference photos, generated group images and named-identity images.

    Invented identities collapse toward the group mean by ``collapse`` (1 - the mixing
    shrinkage); celebrities keep their full offset.
    """
    attrs = config.groups[k]
    d, gamma, sw = config.dim, float(config.diversity), np.sqrt(config.within_var)
    mu = np.asarray(world.world.means[k])
    sb = float(np.sqrt(world.identity.between[k]))
    rows, vectors = [], []
    for x in mu + rng.normal(size=(config.reference_per_group, d)) * np.sqrt(sb**2 + sw**2):
        rows.append(dict(attrs, role="reference", generator="", identity="", identity_kind="real", seed=-1,
                         prompt=render("a photo of {group}", attrs)))
        vectors.append(x)
    chol = np.linalg.cholesky(np.asarray(gen.covs[k]))
    grp = np.asarray(gen.means[k]) + rng.normal(size=(config.group_images, d)) @ chol.T
    for s, x in enumerate(grp):
        rows.append(dict(attrs, role="generated", generator=config.generator, identity="", identity_kind="none",
                         seed=s, prompt=render("a photo of {group}", attrs)))
        vectors.append(x)
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
    return rows, vectors


def _draw_labelled_identities(config: SimulationConfig, k: int, world,
                              rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Group k's labelled reference sample: several photos of each of a few real identities."""
    mu = np.asarray(world.world.means[k])
    sb = float(np.sqrt(world.identity.between[k]))
    sw = np.sqrt(config.within_var)
    per = config.photos_per_labelled_identity
    centres = mu + rng.normal(size=(config.labelled_identities, config.dim)) * sb
    photos = [c + rng.normal(size=(per, config.dim)) * sw for c in centres]
    ids = [f"{k}-{i}" for i in range(config.labelled_identities) for _ in range(per)]
    return np.concatenate(photos), ids


def _identity_spreads(config: SimulationConfig, world, photos: np.ndarray, ids: list[str], groups: list[str]) -> dict:
    """The identity spreads the measure stage would read from a labelled reference sample."""
    within, between = core.identity_spreads(photos, np.asarray(ids), np.asarray(groups), world.labels)
    return {"within": float(within), "between": dict(zip(world.labels, map(float, between))), "dim": config.dim,
            "source": f"simulated labelled reference sample: {config.labelled_identities} identities x "
                      f"{config.photos_per_labelled_identity} photos per group"}


@dataclasses.dataclass(frozen=True)
class DrawnRepresentation:
    rows: list[dict]  # manifest rows of the neutral-prompt images
    embeddings: np.ndarray  # their embeddings
    labels: pd.DataFrame  # perceived labels: ``row`` (manifest row number) + LABEL_COLUMNS
    truth: dict  # truth.json's "faithfulness", "representation" and "classifier"


def classifier_confusion(config: SimulationConfig) -> dict[str, np.ndarray]:
    """The simulated classifier's confusion ``C[true, perceived]`` per attribute: race errors
    lean towards the commonest race of the training mix (half of each row's error goes to
    it), gender errors spread evenly; the joint ``race x gender`` confusion is their
    Kronecker product (the two labels err independently)."""
    def rows(accuracy, lean_to=None):
        k = len(accuracy)
        out = np.zeros((k, k))
        if k == 1:  # one category: nothing to confuse it with
            return np.ones((1, 1))
        for j, a in enumerate(accuracy):
            others = [i for i in range(k) if i != j]
            if lean_to is not None and lean_to != j and k > 2:
                out[j, lean_to] = (1 - a) / 2
                rest = [i for i in others if i != lean_to]
                out[j, rest] = (1 - a) / 2 / len(rest)
            else:
                out[j, others] = (1 - a) / len(others)
            out[j, j] = a
        return out

    common = int(np.argmax(config.race_shares))
    race_accuracy = config.race_accuracy or tuple(0.95 if i == common else (0.75, 0.65, 0.7)[i % 3]
                                                  for i in range(len(config.races)))
    gender_accuracy = config.gender_accuracy or tuple(0.93 - 0.03 * (i % 2) for i in range(len(config.genders)))
    race = rows(race_accuracy, common)
    gender = rows(gender_accuracy)
    return {"race": race, "gender": gender, "race x gender": np.kron(race, gender)}


def depicted_mixes(config: SimulationConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """True depicted mixes over the joint ``race x gender`` categories (grid order): one row
    per requested group and one per neutral prompt."""
    shares = np.repeat(np.asarray(config.race_shares), len(config.genders)) / len(config.genders)
    k = shares.size
    spread = shares.max() - shares.min()
    faithful = (np.full(k, config.faithful_max) if spread == 0 else
                config.faithful_min + (config.faithful_max - config.faithful_min) * (shares - shares.min()) / spread)
    requested = np.zeros((k, k))
    for g in range(k):
        others = np.where(np.arange(k) == g, 0.0, shares)
        requested[g] = (1 - faithful[g]) * others / others.sum()
        requested[g, g] = faithful[g]
    neutral = rng.dirichlet(config.neutral_concentration * k * shares, size=config.neutral_prompts)
    return requested, neutral.reshape(config.neutral_prompts, k)


def draw_representation(config: SimulationConfig, world: World, gen, rows: list[dict],
                        rng: np.random.Generator) -> DrawnRepresentation:
    """Neutral-prompt images and the simulated classifier's labels of the reference faces,
    the requested groups' own images and the neutral images, with the truth behind them."""
    labels = list(world.labels)
    k, n_genders = len(labels), len(config.genders)
    confusion = classifier_confusion(config)
    requested, neutral = depicted_mixes(config, rng)
    true = []  # (manifest row, true joint category)
    for i, row in enumerate(rows):
        g = labels.index(row["group"])
        if row["role"] == "reference":
            true.append((i, g))
        elif row["identity_kind"] == "none":
            true.append((i, int(rng.choice(k, p=requested[g]))))
    new_rows, vectors, prompts = [], [], []
    chols = [np.linalg.cholesky(np.asarray(gen.covs[j])) for j in range(k)]
    for p in range(config.neutral_prompts):
        prompt = neutral_prompt(NEUTRAL_SUBJECTS[p])
        prompts.append(prompt)
        for s in range(config.neutral_images):
            j = int(rng.choice(k, p=neutral[p]))
            true.append((len(rows) + len(new_rows), j))
            new_rows.append(dict(race="", gender="", role="neutral", generator=config.generator, identity="",
                                 identity_kind="none", seed=s, prompt=prompt))
            vectors.append(np.asarray(gen.means[j]) + chols[j] @ rng.normal(size=config.dim))
    out = []
    for row, j in true:
        perceived = int(rng.choice(k, p=confusion["race x gender"][j]))
        face = rng.random() >= config.no_face_rate
        for attribute, level in (("race", perceived // n_genders), ("gender", perceived % n_genders)):
            names = config.races if attribute == "race" else config.genders
            out.append(dict(row=row, attribute=attribute, category=names[level] if face else "",
                            probability=np.nan, classifier=SIMULATED_CLASSIFIER))

    def by_attribute(mix):
        joint = mix.reshape(len(config.races), n_genders)
        return {"race": dict(zip(config.races, map(float, joint.sum(axis=1)))),
                "gender": dict(zip(config.genders, map(float, joint.sum(axis=0)))),
                "race x gender": dict(zip(labels, map(float, mix)))}

    truth = {
        "faithfulness": {label: by_attribute(requested[g]) for g, label in enumerate(labels)},
        "representation": {prompt: by_attribute(neutral[p]) for p, prompt in enumerate(prompts)},
        "classifier": {a: {"categories": list(names), "confusion": confusion[a].tolist()}
                       for a, names in (("race", config.races), ("gender", config.genders), ("race x gender", labels))},
    }
    return DrawnRepresentation(new_rows, np.asarray(vectors).reshape(-1, config.dim), pd.DataFrame(out), truth)


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
