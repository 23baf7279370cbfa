"""Skin tone from pixels, no weights: the individual typology angle (ITA) of a face's skin
pixels, its Fitzpatrick-like category, and its Monk Skin Tone scale bin.

The skin region itself (inside dlib's 68-point outline, minus eyes, brows and mouth) is
cut out by the torch layer; this module sees only its RGB values.

* sRGB (D65) -> CIE XYZ -> CIELAB, the standard formulas (IEC 61966-2-1; CIE 15).
* ``ITA = atan2(L* - 50, b*)`` in degrees (Chardon, Cretois & Hourseau 1991); ``atan2``
  rather than ``arctan((L* - 50) / b*)`` so that ``b*`` near 0 stays finite. A face's ITA
  is taken from the median ``L*`` and median ``b*`` of its skin pixels: specular
  highlights, shadows and stray hair pixels move medians little.
* Categories: > 55 very light, 41-55 light, 28-41 intermediate, 10-28 tan, -30-10 brown,
  < -30 dark.
* Monk bin: the nearest of the 10 Monk Skin Tone reference colours (Monk 2019) in CIELAB
  (Euclidean, i.e. CIE76 Delta E), from the median skin colour.

.. warning:: ITA is a property of pixels, so lighting, white balance and the generator's
   colour grading move it. It is a perceived-attribute source like the others: it reports
   raw shares unless reference faces carry skin-tone labels to calibrate it.
"""

from __future__ import annotations

import numpy as np

ITA_CATEGORIES = ("very light", "light", "intermediate", "tan", "brown", "dark")
_ITA_EDGES = (55.0, 41.0, 28.0, 10.0, -30.0)  # lower bounds of the categories above, in order
MONK_HEX = ("f6ede4", "f3e7db", "f7ead0", "eadaba", "d7bd96", "a07e56", "825c43", "604134", "3a312a", "292420")
MONK_CATEGORIES = tuple(f"Monk {i}" for i in range(1, 11))
_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


def srgb_to_lab(rgb) -> np.ndarray:
    """CIELAB (D65, 2 degree observer) of sRGB colours.

    Args:
        rgb: ``(..., 3)`` sRGB, uint8 (0-255) or float in [0, 1].

    Returns:
        ``(..., 3)`` float64 ``L*, a*, b*``.

    >>> srgb_to_lab(np.array([255, 255, 255], dtype=np.uint8)).round(2).tolist()
    [100.0, 0.0, 0.0]
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"colours must have a last axis of 3 (R, G, B), got shape {rgb.shape}")
    c = rgb.astype(np.float64) / 255.0 if rgb.dtype == np.uint8 else np.asarray(rgb, dtype=np.float64)
    if c.size and (c.min() < 0 or c.max() > 1):
        raise ValueError("float sRGB values must lie in [0, 1] (pass uint8 for 0-255)")
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_srgb(lab) -> np.ndarray:
    """The inverse of :func:`srgb_to_lab` (float sRGB, clipped to [0, 1]); for making test
    patches of known CIELAB colour."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    eps, kappa = 216 / 24389, 24389 / 27
    xyz = np.where(f ** 3 > eps, f ** 3, (116 * f - 16) / kappa) * _D65
    linear = xyz @ np.linalg.inv(_RGB_TO_XYZ).T
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def ita(lab) -> np.ndarray:
    """Individual typology angle in degrees, ``atan2(L* - 50, b*)``, of ``(..., 3)`` CIELAB.

    >>> float(ita(np.array([75.0, 5.0, 25.0])).round(3))
    45.0
    """
    lab = np.asarray(lab, dtype=np.float64)
    return np.degrees(np.arctan2(lab[..., 0] - 50.0, lab[..., 2]))


def ita_category(angle) -> np.ndarray:
    """The Fitzpatrick-like ITA category of each angle (index into :data:`ITA_CATEGORIES`).

    >>> ita_category(np.array([60.0, 50.0, 30.0, 20.0, 0.0, -40.0])).tolist()
    [0, 1, 2, 3, 4, 5]
    """
    angle = np.asarray(angle, dtype=np.float64)
    return np.sum(angle[..., None] <= np.asarray(_ITA_EDGES), axis=-1)


def monk_lab() -> np.ndarray:
    """The 10 Monk Skin Tone reference colours in CIELAB, lightest first."""
    rgb = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in MONK_HEX], dtype=np.uint8)
    return srgb_to_lab(rgb)


def monk_bin(lab) -> np.ndarray:
    """Index (0 = Monk 1) of the nearest Monk reference colour to each ``(..., 3)`` CIELAB colour."""
    lab = np.asarray(lab, dtype=np.float64)
    return np.argmin(np.linalg.norm(lab[..., None, :] - monk_lab(), axis=-1), axis=-1)


def skin_tone(pixels) -> dict:
    """ITA, its category and the Monk bin of one face's skin pixels.

    Args:
        pixels: ``(n, 3)`` sRGB skin pixels (uint8 or float in [0, 1]), ``n >= 1``.

    Returns:
        ``{"ita": degrees, "L": median L*, "b": median b*, "ita_category": name,
        "monk": name}``.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[0] < 1:
        raise ValueError(f"skin pixels must have shape (n, 3) with n >= 1, got {pixels.shape}")
    lab = np.median(srgb_to_lab(pixels), axis=0)
    angle = float(ita(lab))
    return {"ita": angle, "L": float(lab[0]), "b": float(lab[2]),
            "ita_category": ITA_CATEGORIES[int(ita_category(angle))], "monk": MONK_CATEGORIES[int(monk_bin(lab))]}
