"""A perceived-attribute classifier from a local checkpoint: a FairFace-style ResNet on aligned
face crops.

As FairFace does (Karkkainen & Joo 2021): dlib's detector finds the faces, its 5-point
shape predictor aligns the largest one into a 224-pixel chip (``dlib.get_face_chip``,
padding 0.25), and a torchvision ResNet whose last layer has one logit per category of
every attribute, the attributes' blocks in order, gives each attribute's softmax. Weights
come from a local ``state_dict`` file (``torch.save(model.state_dict(), path)``);
``"random"`` builds untrained weights on explicit request only (tests), and the report
names it. No statistics here: probabilities and labels go to the perceive stage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceaudit.torch_layer.encoders import detect_faces

RANDOM = "random"
ARCHITECTURES = ("resnet18", "resnet34", "resnet50")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class CheckpointClassifier:
    """``classify(images) -> {attribute: (probabilities (n, K) or NaN rows, found (n,))}``."""

    def __init__(self, weights: str, architecture: str, heads: dict[str, list[str]], *, chip: int = 224,
                 padding: float = 0.25, upsample: int = 1, min_score: float = 0.5):
        import dlib
        import face_recognition_models as frm
        import torch
        import torchvision

        if architecture not in ARCHITECTURES:
            raise ValueError(f"checkpoint architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if not heads or any(len(c) < 2 for c in heads.values()):
            raise ValueError(f"a checkpoint classifier needs attributes with 2 or more categories, got {heads}")
        self.torch, self.heads = torch, {a: list(c) for a, c in heads.items()}
        outputs = sum(len(c) for c in heads.values())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # "random" is the same network in every process
            model = getattr(torchvision.models, architecture)(weights=None, num_classes=outputs)
        if weights != RANDOM:
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"classifier checkpoint {weights} does not exist")
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # torch raises several types for a bad file
                raise ValueError(f"{weights} is not a readable torch state_dict ({type(err).__name__})") from None
            got = tuple(state.get("fc.weight", torch.empty(0, 0)).shape)
            if got[:1] != (outputs,):
                listed = "; ".join(f"{a}: {c}" for a, c in heads.items())
                raise ValueError(f"checkpoint {weights} has {got[0] if got else 'no'} outputs (fc.weight {got}); the "
                                 f"categories need {outputs} ({listed}), one logit each, attributes in this order")
            try:
                model.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(f"checkpoint {weights} is not a {architecture}: {str(err).splitlines()[0]}") from None
        self.model = model.eval()
        self.detector = dlib.get_frontal_face_detector()
        self.shape5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.dlib, self.chip, self.padding = dlib, chip, padding
        self.upsample, self.min_score = upsample, min_score
        self.classifier_id = f"checkpoint:{architecture}:{'random' if weights == RANDOM else Path(weights).name}"

    def aligned_chip(self, rgb: np.ndarray) -> np.ndarray | None:
        """The largest face, aligned by its 5 landmarks into a ``chip x chip`` RGB crop."""
        faces = detect_faces(self.detector, rgb, self.upsample, self.min_score)
        if not faces:
            return None
        return np.asarray(self.dlib.get_face_chip(rgb, self.shape5(rgb, faces[0]), size=self.chip, padding=self.padding))

    def probabilities(self, chips: np.ndarray) -> dict[str, np.ndarray]:
        """Softmax of each attribute's block of logits for ``(n, chip, chip, 3)`` uint8 crops."""
        torch = self.torch
        x = torch.as_tensor(chips, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        with torch.no_grad():
            logits = self.model(x).double()
        out, start = {}, 0
        for attribute, categories in self.heads.items():
            out[attribute] = torch.softmax(logits[:, start:start + len(categories)], dim=1).numpy()
            start += len(categories)
        return out

    def classify(self, images: list) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per attribute, ``(probabilities (n, K), found (n,))``; rows without a face are NaN."""
        chips = [self.aligned_chip(np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))) for im in images]
        found = np.array([c is not None for c in chips])
        out = {a: np.full((len(images), len(c)), np.nan) for a, c in self.heads.items()}
        if found.any():
            for attribute, probs in self.probabilities(np.stack([c for c in chips if c is not None])).items():
                out[attribute][found] = probs
        return {a: (p, found) for a, p in out.items()}
