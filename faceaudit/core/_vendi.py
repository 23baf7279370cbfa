r"""The Vendi score: the effective number of distinct samples (Friedman & Dieng 2023).

.. math::

    \mathrm{VS}_q(X) = \exp\Bigl(\frac{1}{1-q}\log\sum_i \lambda_i^q\Bigr), \quad
    \mathrm{VS}_1 = \exp\Bigl(-\sum_i \lambda_i \log \lambda_i\Bigr), \quad
    \mathrm{VS}_\infty = 1 / \max_i \lambda_i,

where ``lambda`` are the eigenvalues of ``K / n`` for a kernel with ``k(x, x) = 1``.
For the cosine kernel ``K = Xh Xh^T`` (rows normalised) has the same non-zero spectrum
as the ``d x d`` matrix ``Xh^T Xh``, used whenever ``d < n`` (vendi-score's
``score_dual``); the Gaussian kernel has no finite dual and costs an ``n x n``
eigendecomposition. Frequency weights ``w`` (bootstrap counts, group masks) give the
score of the multiset: the spectrum of ``W^{1/2} K W^{1/2} / sum(w)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from . import _linalg, _validate
from ._typing import Array, Features, Scalar, Weights

KERNELS = ("cosine", "gaussian")


def _order_entropy_exp(lam: Array, q: float) -> Scalar:
    # Eigenvalues below the numerical rank tolerance are round-off of exact zeros; with
    # q < 1 their powers (1e-17 ** 0.5 ~ 3e-9 each) would otherwise add up to real error.
    tol = lam.shape[0] * jnp.finfo(lam.dtype).eps * jnp.max(lam)
    lam = jnp.where(lam > tol, lam, 0.0)
    lam = lam / lam.sum()
    if q == 1.0:
        return jnp.exp(-jnp.sum(jax.scipy.special.xlogy(lam, lam)))
    if math.isinf(q):
        return 1.0 / lam.max()
    return jnp.exp(jnp.log(jnp.sum(jnp.where(lam > 0, lam, 0.0) ** q)) / (1.0 - q))


@functools.partial(jax.jit, static_argnames=("q", "kernel"))
def _vendi_weighted(x, w, bandwidth, q: float, kernel: str):
    x = x.astype(jnp.float64)
    w = w.astype(jnp.float64)
    n, d = x.shape
    if kernel == "cosine":
        norm = jnp.linalg.norm(x, axis=1, keepdims=True)
        xh = x / jnp.where(norm > 0, norm, 1.0)  # zero rows only occur as weight-0 padding
        xw = xh * jnp.sqrt(w)[:, None]
        mat = _linalg.gram(xw) if d < n else xw @ xw.T
    else:
        sq = jnp.sum(x * x, axis=1)
        d2 = jnp.clip(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
        sw = jnp.sqrt(w)
        mat = jnp.exp(-d2 / (2.0 * bandwidth**2)) * sw[:, None] * sw[None, :]
    return _order_entropy_exp(_linalg.eigvalsh(mat / w.sum()), q)


def _check(q, kernel, bandwidth):
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    if not isinstance(q, (int, float)) or isinstance(q, bool) or not q > 0:
        raise ValueError(f"q must be a positive number or float('inf'), got {q!r}")
    if kernel == "gaussian" and not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
        raise ValueError(f"the gaussian kernel needs a positive bandwidth, got {bandwidth!r}")
    return float(q), float(bandwidth) if kernel == "gaussian" else 1.0


def vendi_score(x: Features, *, q: float = 1.0, kernel: str = "cosine", bandwidth: float = 1.0) -> Scalar:
    """Vendi score of one embedding set, between 1 (all identical) and ``n``.

    Args:
        x: ``(n, d)`` embeddings (no all-zero rows for the cosine kernel).
        q: order (> 0; ``1.0`` Shannon, ``float('inf')`` the largest eigenvalue).
        kernel: ``"cosine"`` or ``"gaussian"`` (``exp(-|a-b|^2 / (2 bandwidth^2))``).
        bandwidth: Gaussian kernel width (ignored for cosine).

    Example:
        >>> import numpy as np
        >>> round(float(vendi_score(np.eye(4))), 6)
        4.0

    References:
        Friedman & Dieng, "The Vendi Score: A Diversity Evaluation Metric for Machine
        Learning", TMLR 2023. Pasarkar & Dieng, "Cousins of the Vendi Score", 2023.
    """
    q, bw = _check(q, kernel, bandwidth)
    x = _validate.features(x, "x", min_rows=1, as_jax=False)
    if kernel == "cosine" and x.shape[1] < x.shape[0] and _linalg.host_eager(x):
        return _host_cosine_vendi(x, q)
    if kernel == "cosine":
        _validate.nonzero_rows(x, "x")
    return _vendi_weighted(jnp.asarray(x), jnp.ones(x.shape[0]), bw, q, kernel)


def _host_cosine_vendi(x, q: float) -> Scalar:
    """The ``d x d`` dual straight from the caller's array on CPU: row norms, then rows
    scaled by ``1 / (|x_i| sqrt(n))`` chunk by chunk into BLAS ``syrk``, then LAPACK's
    values-only eigensolver. (The zero-row check reuses the norms.)"""
    x = np.asarray(x, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    if np.any(sq == 0):
        _validate.nonzero_rows(x, "x")
    dual = _linalg.host_row_gram(x, row_scale=1.0 / np.sqrt(sq * x.shape[0]))
    return _order_entropy_exp(jnp.asarray(_linalg._eigvalsh_values_only(dual)), q)


def vendi_score_weighted(x: Features, w: Weights, *, q=1.0, kernel="cosine", bandwidth=1.0) -> Scalar:
    """``vendi_score`` of the multiset repeating row ``i`` ``w_i`` times."""
    q, bw = _check(q, kernel, bandwidth)
    x = _validate.features(x, "x", min_rows=1)
    w = _validate.weights(w, x.shape[0], "w")
    if kernel == "cosine":
        _validate.nonzero_rows(x, "x")
    return _vendi_weighted(x, w, bw, q, kernel)
