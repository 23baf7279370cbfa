r"""Cosine metrics of the study: CLIP score, directional similarity, image-image similarity.

All take paired rows (row ``i`` of each argument describes the same image or edit) and
return one value per row; group means and intervals come from ``faceaudit.core.by_group``.

* CLIP score ``cos(E_I(image), E_T(prompt))`` (Hessel et al. 2021). The study reports the
  raw cosine; torchmetrics reports ``100 * max(cos, 0)`` (pass ``scale=100,
  clip_negative=True``).
* directional similarity ``cos(e_I(edit) - e_I(source), e_T(target) - e_T(source))`` with
  every embedding first scaled to unit length, ``e = E / |E|`` (Gal et al. 2022; the
  InstructPix2Pix ``ClipSimilarity`` and the study's ``metrics/clip_similarity.py``
  normalise each CLIP feature before differencing; on raw open_clip features the
  unnormalised difference disagrees by up to 0.26).
* image-image similarity ``cos(E(a), E(b))`` (identity preservation with a CLIP, DINOv2 or
  face-ID encoder).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _validate
from ._typing import Array, Features


@jax.jit
def _rowwise_cosine(a, b):
    a = a.astype(jnp.float64)
    b = b.astype(jnp.float64)
    return jnp.sum(a * b, axis=1) / (jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1))


def _paired(named: dict) -> list[Array]:
    arrays = {k: _validate.features(v, k, min_rows=1) for k, v in named.items()}
    first = next(iter(arrays))
    for k, v in arrays.items():
        _validate.same_dim(arrays[first], v, (first, k))
    _validate.same_rows(arrays)
    return list(arrays.values())


@jax.jit
def _unit(a):
    a = a.astype(jnp.float64)
    return a / jnp.linalg.norm(a, axis=1, keepdims=True)


def cosine_similarity(a: Features, b: Features) -> Array:
    """Row-wise cosine between paired embeddings ``a[i]`` and ``b[i]`` (float64 ``(n,)``)."""
    a, b = _paired({"a": a, "b": b})
    _validate.nonzero_rows(a, "a")
    _validate.nonzero_rows(b, "b")
    return _rowwise_cosine(a, b)


def clip_score(image: Features, text: Features, *, scale: float = 1.0, clip_negative: bool = False) -> Array:
    """Per-image CLIP score of image embeddings against their prompts' text embeddings."""
    image, text = _paired({"image": image, "text": text})
    _validate.nonzero_rows(image, "image")
    _validate.nonzero_rows(text, "text")
    score = _rowwise_cosine(image, text)
    if clip_negative:
        score = jnp.maximum(score, 0.0)
    return scale * score


def directional_similarity(
    image_source: Features, image_edit: Features, text_source: Features, text_target: Features
) -> Array:
    """Per-pair agreement between the image change and the caption change."""
    i_src, i_edit, t_src, t_tgt = _paired(
        {"image_source": image_source, "image_edit": image_edit, "text_source": text_source, "text_target": text_target}
    )
    for name, arr in (("image_source", i_src), ("image_edit", i_edit), ("text_source", t_src), ("text_target", t_tgt)):
        _validate.nonzero_rows(arr, name)
    i_src, i_edit, t_src, t_tgt = (_unit(a) for a in (i_src, i_edit, t_src, t_tgt))
    d_image = i_edit - i_src
    d_text = t_tgt - t_src
    _validate.nonzero_rows(d_image, "image_edit - image_source")
    _validate.nonzero_rows(d_text, "text_target - text_source")
    return _rowwise_cosine(d_image, d_text)


def image_similarity(a: Features, b: Features) -> Array:
    """Per-pair similarity of two images' embeddings (source vs edit: identity kept?)."""
    return cosine_similarity(a, b)


def pixel_distances(source, edit) -> tuple[Array, Array]:
    """MagicBrush's L1 and L2 between a source image and its edit: the mean absolute and
    the mean squared difference over all pixels and channels of ``[0, 1]`` arrays of one
    shape (``torch.nn.L1Loss`` / ``MSELoss`` with their default mean reduction).

    Returns:
        ``(l1, l2)`` float64 scalars.
    """
    a, b = (jnp.asarray(v, jnp.float64) for v in (source, edit))
    if a.shape != b.shape:
        raise ValueError(f"source and edit must have one shape (resize first), got {a.shape} and {b.shape}")
    diff = a - b
    return jnp.mean(jnp.abs(diff)), jnp.mean(diff * diff)
