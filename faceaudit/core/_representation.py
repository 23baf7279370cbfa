"""Who gets drawn: perceived-attribute probabilities, the classifier's confusion, and the
depicted mix corrected for it (``design/representation.md``).

A perceived-attribute classifier reports labels ``y``. If it calls a face of true category
``j`` category ``i`` with probability ``C[j, i]``, the perceived mix of a prompt is
``q = C^T pi``, not the depicted mix ``pi``; raw shares estimate ``q``. Where the
classifier's accuracy differs by category (the bias under audit), ``q`` leans towards the
categories it over-predicts, by a different amount for every prompt. This module holds
the array side: zero-shot probabilities from CLIP embeddings, confusion counts on
labelled faces, the adjusted classify-and-count point estimate (the independent
reference of the Bayesian model in ``faceaudit.models.representation``), the divergences
of a mix from a reference mix, and the highest-density interval of posterior draws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from . import _validate

CLIP_LOGIT_SCALE = 100.0  # CLIP's learned temperature, fixed at its clamp in every released model


def zero_shot_probabilities(images, texts, *, logit_scale: float = CLIP_LOGIT_SCALE) -> jax.Array:
    """CLIP zero-shot class probabilities, averaging the text side over prompt templates.

    .. math:: p(k | x) = \\mathrm{softmax}_k\\big(s \\cos(x, \\bar t_k)\\big), \\quad
       \\bar t_k = \\frac{\\sum_m t_{mk} / \\lVert t_{mk} \\rVert}{\\lVert \\sum_m t_{mk} / \\lVert t_{mk} \\rVert \\rVert}

    (Radford et al. 2021, the prompt ensemble of their zero-shot ImageNet evaluation: the
    mean of the normalised text embeddings of every template, renormalised.)

    Args:
        images: ``(n, d)`` image embeddings (any scale; normalised here).
        texts: ``(m, k, d)`` text embeddings of template ``m`` filled with category ``k``.
        logit_scale: the softmax temperature ``s``.

    Returns:
        ``(n, k)`` float64 probabilities; rows sum to 1.

    >>> import numpy as np
    >>> t = np.eye(3)[None]                       # one template, three orthogonal classes
    >>> p = zero_shot_probabilities(np.array([[2.0, 0.1, 0.0]]), t, logit_scale=10.0)
    >>> int(p.argmax()), round(float(p.sum()), 6)
    (0, 1.0)
    """
    x = _validate.features(images, "images", min_rows=1)
    _validate.nonzero_rows(x, "images")
    t = jnp.asarray(texts, dtype=jnp.float64)
    if t.ndim != 3 or t.shape[2] != x.shape[1]:
        raise ValueError(f"texts must have shape (templates, categories, {x.shape[1]}), got {tuple(t.shape)}")
    if t.shape[1] < 2:
        raise ValueError(f"zero-shot classification needs at least 2 categories, got {t.shape[1]}")
    t = t / jnp.linalg.norm(t, axis=-1, keepdims=True)
    centre = t.mean(axis=0)
    centre = centre / jnp.linalg.norm(centre, axis=-1, keepdims=True)
    x = jnp.asarray(x, dtype=jnp.float64)
    x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    return jax.nn.softmax(logit_scale * x @ centre.T, axis=-1)


def confusion_counts(true, perceived, num_categories: int) -> np.ndarray:
    """``N[j, i]``: how many faces of true category ``j`` the classifier called ``i``.

    >>> confusion_counts([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], 2).tolist()
    [[1, 1], [1, 2]]
    """
    true, perceived = np.asarray(true), np.asarray(perceived)
    if true.shape != perceived.shape or true.ndim != 1:
        raise ValueError(f"true and perceived labels must be 1-d and of one length, got {true.shape} and {perceived.shape}")
    for name, labels in (("true", true), ("perceived", perceived)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_categories):
            raise ValueError(f"{name} labels must lie in 0..{num_categories - 1}")
    out = np.zeros((num_categories, num_categories), dtype=np.int64)
    np.add.at(out, (true, perceived), 1)
    return out


def category_counts(labels, num_categories: int) -> np.ndarray:
    """How many of ``labels`` fall in each of ``num_categories`` categories."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_categories)


def confusion_matrix(counts) -> np.ndarray:
    """Row-normalised confusion ``C[j, i] = N[j, i] / sum_i N[j, i]``.

    Raises:
        ValueError: a true category with no labelled faces (its row is unknown).
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    if (totals == 0).any():
        raise ValueError(f"true categories {np.flatnonzero(totals[:, 0] == 0).tolist()} have no labelled faces")
    return counts / totals


def adjusted_classify_and_count(calibration, perceived) -> np.ndarray:
    """The adjusted classify-and-count estimate of the depicted mix (Forman 2008; black-box
    shift estimation, Lipton et al. 2018): solve ``C^T pi = q`` in least squares, clip at 0
    and renormalise.

    Args:
        calibration: ``(k, k)`` confusion counts on labelled faces.
        perceived: ``(..., k)`` perceived-label counts (or shares) of each prompt.

    Returns:
        ``(..., k)`` float64 mixes on the simplex.

    >>> c = np.array([[90, 10], [40, 60]])          # category 1 often called 0
    >>> adjusted_classify_and_count(c, np.array([65, 35])).round(3).tolist()
    [0.5, 0.5]
    """
    conf = confusion_matrix(calibration)
    q = np.asarray(perceived, dtype=np.float64)
    q = q / q.sum(axis=-1, keepdims=True)
    flat = q.reshape(-1, q.shape[-1])
    pi, *_ = np.linalg.lstsq(conf.T, flat.T, rcond=None)
    pi = np.clip(pi.T, 0.0, None)
    pi = pi / pi.sum(axis=-1, keepdims=True)
    return pi.reshape(q.shape)


def mix_divergences(mix, reference) -> dict[str, jax.Array]:
    """How far depicted mixes are from a reference mix ``r``:

    * ``mad``: ``(1/K) sum_k |pi_k - r_k|`` (DALL-Eval's measure, against uniform there);
    * ``kl``: ``sum_k pi_k log(pi_k / r_k)`` (``0 log 0 = 0``);
    * ``entropy``: ``H(pi) / log K``, 1 for a uniform mix, 0 for a single category.

    Each is a function of ``pi``: applied to posterior draws it gives draws of itself.

    Args:
        mix: ``(..., K)`` mixes (posterior draws, prompts, ...).
        reference: ``(K,)`` positive shares summing to 1.

    >>> d = mix_divergences(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    >>> [round(float(d[k]), 6) for k in ("mad", "kl", "entropy")]
    [0.0, 0.0, 1.0]
    """
    pi = jnp.asarray(mix, dtype=jnp.float64)
    r = jnp.asarray(reference, dtype=jnp.float64)
    k = pi.shape[-1]
    return {
        "mad": jnp.abs(pi - r).mean(axis=-1),
        "kl": (xlogy(pi, pi) - xlogy(pi, r)).sum(axis=-1),
        "entropy": -xlogy(pi, pi).sum(axis=-1) / jnp.log(k),
    }


def check_reference_mix(reference, categories) -> np.ndarray:
    """A reference mix as positive float64 shares in the order of ``categories``.

    Args:
        reference: ``None`` (uniform), or a mapping category -> share.

    Raises:
        ValueError: naming missing or unknown categories, or non-positive shares.
    """
    categories = list(categories)
    if reference is None:
        return np.full(len(categories), 1.0 / len(categories))
    unknown, missing = sorted(set(reference) - set(categories)), [c for c in categories if c not in reference]
    if unknown or missing:
        raise ValueError(f"reference mix: categories {categories}; "
                         + "; ".join(s for s in (f"unknown {unknown}" if unknown else "",
                                                 f"missing {missing}" if missing else "") if s))
    shares = np.asarray([reference[c] for c in categories], dtype=np.float64)
    if not np.isfinite(shares).all() or (shares <= 0).any():
        raise ValueError(f"reference mix shares must be positive (KL needs every r_k > 0), got {dict(zip(categories, shares))}")
    return shares / shares.sum()


def hdi(draws, prob: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density interval of ``prob`` mass along ``axis``: the narrowest window
    spanning ``floor(prob * n)`` steps of the sorted draws (arviz's ``hdi`` for unimodal
    draws, vectorised over the other axes).

    >>> lo, hi = hdi(np.arange(101.0), 0.9)
    >>> float(hi - lo)
    90.0
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    x = np.sort(np.moveaxis(np.asarray(draws, dtype=np.float64), axis, 0), axis=0)
    n = x.shape[0]
    size = int(np.floor(prob * n))
    if size >= n:
        return x[0], x[-1]
    widths = x[size:] - x[: n - size]
    start = np.argmin(widths, axis=0)
    low = np.take_along_axis(x, start[None], axis=0)[0]
    high = np.take_along_axis(x, (start + size)[None], axis=0)[0]
    return low, high
