r"""Precision, recall, density and coverage of generated embeddings (Naeem et al. 2020).

With ``B(x, r)`` the ball of radius ``r`` around ``x`` and ``NND_k(x)`` the distance from a
real (or fake) point to its k-th nearest neighbour in its own set (itself excluded):

.. math::

    \text{precision} = \frac1M \sum_j \mathbb 1[\exists i: Y_j \in B(X_i, NND_k(X_i))], \quad
    \text{recall} = \frac1N \sum_i \mathbb 1[\exists j: X_i \in B(Y_j, NND_k(Y_j))],

    \text{density} = \frac{1}{kM} \sum_j \sum_i \mathbb 1[Y_j \in B(X_i, NND_k(X_i))], \quad
    \text{coverage} = \frac1N \sum_i \mathbb 1[\exists j: Y_j \in B(X_i, NND_k(X_i))],

with strict inequalities, exactly as the ``prdc`` package computes them. faceaudit streams
row blocks of the distance matrices, so at most ``block x n`` distances exist at once
(``prdc`` holds three full ``n x n`` matrices: ~32 GB at n = 50,000). Distances are compared
squared, in float64.

On CPU (``_host_prdc``) the distances are first computed by float32 GEMMs, within-set
blocks only on and above the diagonal, with a rigorous bound on their rounding. Only the
pairs that bound cannot place clearly inside or outside a ball, and each row's k-th
neighbour, are recomputed in float64, so the result equals the float64 computation at
about half its cost. Elsewhere (GPU, under ``jit``) the XLA kernel below runs in float64.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _linalg, _validate
from ._typing import Features, Scalar

DEFAULT_BLOCK = 512


class PRDC(NamedTuple):
    precision: Scalar
    recall: Scalar
    density: Scalar
    coverage: Scalar


def _sq_dist(a, sq_a, b, sq_b):
    return jnp.clip(sq_a[:, None] + sq_b[None, :] - 2.0 * (a @ b.T), 0.0)


def _kth_smallest(d2, k: int):
    """Per row, the k-th smallest value (0-based), ties kept as in ``np.partition``.

    ``k`` is small (the neighbourhood size), so k passes of argmin-and-mask beat a
    partial sort: on the CPU backend ``jnp.partition``/``lax.top_k`` cost ~12x more.
    """
    rows = jnp.arange(d2.shape[0])

    def drop_min(_, d):
        return d.at[rows, jnp.argmin(d, axis=1)].set(jnp.inf)

    return jax.lax.fori_loop(0, k, drop_min, d2).min(axis=1)


def _blocks(x, block):
    n, d = x.shape
    nb = -(-n // block)
    pad = nb * block - n
    xb = jnp.pad(x, ((0, pad), (0, 0))).reshape(nb, block, d)
    valid = (jnp.arange(nb * block) < n).reshape(nb, block)
    return xb, valid


def _knn_radius2(x, sq, k: int, block: int):
    """Squared distance from each row to its k-th nearest other row, by row blocks."""
    xb, _ = _blocks(x, block)
    sqb = jnp.pad(sq, (0, xb.shape[0] * block - x.shape[0])).reshape(xb.shape[0], block)
    # Index k counts the point itself (distance 0) as the 0-th neighbour.
    radii = jax.lax.map(lambda ab: _kth_smallest(_sq_dist(ab[0], ab[1], x, sq), k), (xb, sqb))
    return radii.reshape(-1)[: x.shape[0]]


@functools.partial(jax.jit, static_argnames=("k", "block"))
def _prdc(real, fake, k: int, block: int):
    real = real.astype(jnp.float64)
    fake = fake.astype(jnp.float64)
    sq_real = jnp.sum(real * real, axis=1)
    sq_fake = jnp.sum(fake * fake, axis=1)
    r2_real = _knn_radius2(real, sq_real, k, block)
    r2_fake = _knn_radius2(fake, sq_fake, k, block)

    fb, valid = _blocks(fake, block)
    pad = fb.shape[0] * block - fake.shape[0]
    sqfb = jnp.pad(sq_fake, (0, pad)).reshape(fb.shape[0], block)
    r2fb = jnp.pad(r2_fake, (0, pad), constant_values=-1.0).reshape(fb.shape[0], block)

    def body(carry, blk):
        nearest_fake2, recalled = carry
        f, sqf, r2f, ok = blk
        d2 = _sq_dist(f, sqf, real, sq_real)  # (block, n_real)
        in_real_ball = (d2 < r2_real[None, :]) & ok[:, None]
        in_fake_ball = (d2 < r2f[:, None]) & ok[:, None]
        nearest_fake2 = jnp.minimum(nearest_fake2, jnp.where(ok[:, None], d2, jnp.inf).min(axis=0))
        recalled = recalled | in_fake_ball.any(axis=0)
        return (nearest_fake2, recalled), (in_real_ball.any(axis=1), in_real_ball.sum(axis=1))

    init = (jnp.full(real.shape[0], jnp.inf), jnp.zeros(real.shape[0], bool))
    (nearest_fake2, recalled), (hit, count) = jax.lax.scan(body, init, (fb, sqfb, r2fb, valid))
    m = fake.shape[0]
    precision = jnp.sum(hit) / m  # padded rows never hit
    density = jnp.sum(count) / (k * m)
    recall = jnp.mean(recalled, dtype=jnp.float64)
    coverage = jnp.mean(nearest_fake2 < r2_real, dtype=jnp.float64)
    return PRDC(precision, recall, density, coverage)


# --- CPU: float32 screening with exact float64 decisions ---------------------------------

_U32 = 2.0**-24  # unit roundoff of float32


def _screening_error(d: int) -> float:
    """``c`` with ``|D32 - D64| <= c (|a|^2 + |b|^2)`` for a squared distance computed in
    float32 as ``|a|^2 + |b|^2 - 2 a.b`` from float64 rows (any summation order).

    Rounding the inputs moves ``a.b`` by at most ``2.0001 u |a||b|``, the float32 dot
    product adds ``gamma_d (1 + u)^2 |a||b|`` (Higham, Thm 3.1), rounding the norms and the
    two additions add ``5 u (|a|^2 + |b|^2)``; ``2 |a||b| <= |a|^2 + |b|^2`` collects the
    terms. The result is doubled: the bound must hold, its size only sets how many pairs
    are re-checked in float64.
    """
    gamma = d * _U32 / (1.0 - d * _U32)
    return 2.0 * (gamma * (1.0 + _U32) ** 2 + 2.0001 * _U32 + 5.0 * _U32 + 4.0 * _U32)


def _sq_dist32(a32, sq_a32, b32, sq_b32):
    g = a32 @ b32.T  # sgemm
    g *= -2.0
    g += sq_a32[:, None]
    g += sq_b32[None, :]
    return g


def _exact_sq(a, sq_a, b, sq_b, rows, cols):
    """Float64 squared distances of the listed pairs, clipped at 0 like the reference."""
    dots = np.einsum("ij,ij->i", a[rows], b[cols])
    return np.maximum(sq_a[rows] + sq_b[cols] - 2.0 * dots, 0.0)


def _merge_smallest(vals, idx, block_vals, offset, keep):
    """Per row, the ``keep`` smallest of (vals | block_vals) with their column indices.

    Rows whose block minimum cannot displace their current worst kept value are left as
    they are (one pass over the block instead of a partition); after the first few
    blocks that is most rows.
    """
    rows = np.flatnonzero(block_vals.min(axis=1) < vals.max(axis=1))
    if rows.size == 0:
        return vals, idx
    cand = np.concatenate([vals[rows], block_vals[rows]], axis=1)
    part = np.argpartition(cand, keep - 1, axis=1)[:, :keep]
    from_old = part < keep
    old_idx = np.take_along_axis(idx[rows], np.where(from_old, part, 0), axis=1)
    vals, idx = vals.copy(), idx.copy()
    vals[rows] = np.take_along_axis(cand, part, axis=1)
    idx[rows] = np.where(from_old, old_idx, part - keep + offset)
    return vals, idx


def _host_knn_radius2(x, sq, x32, sq32, k: int, block: int, c: float):
    """Exact float64 squared k-NN radii (self included as the 0-th neighbour).

    Float32 blocks on and above the diagonal (the distance matrix is symmetric: half the
    GEMM work) keep each row's ``keep`` smallest screened distances; the radius is then
    the k-th smallest *exact* distance among them, recomputing in float64 only those the
    error bound cannot order. It is the true radius unless a row's ``keep``-th screened
    distance minus the bound does not clear it, in which case that row is recomputed in
    float64 (rare: the bound is ~1e-4 of the squared norms).
    """
    n = x.shape[0]
    keep = min(n, k + 1 + 8)
    vals = np.full((n, keep), np.inf, dtype=np.float32)
    idx = np.zeros((n, keep), dtype=np.int64)
    starts = list(range(0, n, block))
    for p in starts:
        rows = slice(p, min(p + block, n))
        for q in starts[starts.index(p):]:
            cols = slice(q, min(q + block, n))
            dist = _sq_dist32(x32[rows], sq32[rows], x32[cols], sq32[cols])
            vals[rows], idx[rows] = _merge_smallest(vals[rows], idx[rows], dist, q, keep)
            if q != p:
                vals[cols], idx[cols] = _merge_smallest(vals[cols], idx[cols], dist.T, p, keep)
    # The true k-th value lies within +-e of the k-th screened one (e bounds every pair of
    # the row). Kept values more than 2e below it are surely below it, more than 2e above
    # surely above: only the few within 2e are recomputed in float64.
    order = np.argsort(vals, axis=1)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float64)
    idx = np.take_along_axis(idx, order, axis=1)
    e = c * (sq + sq.max())
    kth = vals[:, k]
    below = np.sum(vals < (kth - 2.0 * e)[:, None], axis=1)
    window = np.abs(vals - kth[:, None]) <= 2.0 * e[:, None]
    ri, ci = np.nonzero(window)
    exact = np.full(vals.shape, np.inf)
    exact[ri, ci] = _exact_sq(x, sq, x, sq, ri, idx[ri, ci])
    radius = np.take_along_axis(np.sort(exact, axis=1), (k - below)[:, None], axis=1)[:, 0]
    # Every column left out has a screened distance >= the largest kept one.
    cleared = (vals[:, -1] - e > radius) | (keep == n)
    for i in np.flatnonzero(~cleared):
        full = np.maximum(sq[i] + sq - 2.0 * (x @ x[i]), 0.0)
        radius[i] = np.partition(full, k)[k]
    return radius


def _ball_hits(dist32, e_rows, e_cols, r2, exact):
    """Membership ``D < r2[col]`` of every pair of a block, exact in float64.

    ``dist32`` is ``(rows, cols)`` float32; the screening bound of a pair is
    ``e_rows[:, None] + e_cols`` (float32, widened for the comparisons' own rounding).
    Pairs the bound cannot decide are recomputed in float64 by ``exact(rows, cols)``.
    """
    below = (r2 - e_cols).astype(np.float32)
    above = (r2 + e_cols).astype(np.float32)
    surely = (dist32 + e_rows[:, None]) < below[None, :]
    surely &= (r2 > 0)[None, :]  # a clipped distance is never < 0
    maybe = (dist32 - e_rows[:, None]) < above[None, :]
    ri, ci = np.nonzero(maybe & ~surely)
    if ri.size:
        surely[ri, ci] = exact(ri, ci) < r2[ci]
    return surely


def _host_prdc(real, fake, k: int, block: int) -> PRDC:
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    d = real.shape[1]
    c = _screening_error(d)
    sq_r, sq_f = np.einsum("ij,ij->i", real, real), np.einsum("ij,ij->i", fake, fake)
    r32, f32 = real.astype(np.float32), fake.astype(np.float32)
    sq_r32, sq_f32 = sq_r.astype(np.float32), sq_f.astype(np.float32)
    r2_real = _host_knn_radius2(real, sq_r, r32, sq_r32, k, block, c)
    r2_fake = _host_knn_radius2(fake, sq_f, f32, sq_f32, k, block, c)
    # Bounds in float32 carry their own rounding: widen by 1e-6 relative of the norms.
    e_r = (c * sq_r + 1e-6 * (sq_r + sq_r.max())).astype(np.float32)
    e_f = (c * sq_f + 1e-6 * (sq_f + sq_f.max())).astype(np.float32)
    m = fake.shape[0]
    hit_count = np.zeros(m)
    covered = np.zeros(real.shape[0], bool)
    recalled = np.zeros(real.shape[0], bool)
    for start in range(0, m, block):
        rows = slice(start, min(start + block, m))
        dist = _sq_dist32(f32[rows], sq_f32[rows], r32, sq_r32)  # (block, n_real)

        def exact(ri, ci, offset=start):
            return _exact_sq(fake, sq_f, real, sq_r, ri + offset, ci)

        in_real = _ball_hits(dist, e_f[rows], e_r, r2_real, exact)
        hit_count[rows] = in_real.sum(axis=1)
        covered |= in_real.any(axis=0)
        # Recall: real i inside fake j's ball, D < r2_fake[j]; the same test transposed.
        in_fake = _ball_hits(dist.T, e_r, e_f[rows], r2_fake[rows], lambda real_i, fake_j: exact(fake_j, real_i))
        recalled |= in_fake.any(axis=1)
    precision = float(np.mean(hit_count > 0))
    density = float(hit_count.sum() / (k * m))
    return PRDC(*(jnp.asarray(v) for v in (precision, float(recalled.mean()), density, float(covered.mean()))))


def prdc(real: Features, fake: Features, *, k: int = 5, block_size: int = DEFAULT_BLOCK) -> PRDC:
    """Precision, recall, density and coverage of ``fake`` against ``real``.

    Args:
        real: ``(n, d)`` reference embeddings (n > k).
        fake: ``(m, d)`` generated embeddings (m > k).
        k: neighbourhood size for the radii (Naeem et al. use 5).
        block_size: rows of the distance matrix held at once.

    Returns:
        ``PRDC(precision, recall, density, coverage)`` of float64 scalars.

    References:
        Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models",
        ICML 2020. Kynkaanniemi et al., "Improved Precision and Recall Metric for
        Assessing Generative Models", NeurIPS 2019.
    """
    k = _validate.positive_int(k, "k")
    real = _validate.features(real, "real", min_rows=k + 1, as_jax=False)
    fake = _validate.features(fake, "fake", min_rows=k + 1, as_jax=False)
    _validate.same_dim(real, fake, ("real", "fake"))
    block = min(_validate.positive_int(block_size, "block_size"), max(real.shape[0], fake.shape[0]))
    if _linalg.host_eager(real, fake):
        return _host_prdc(real, fake, k, block)
    return _prdc(jnp.asarray(real), jnp.asarray(fake), k, block)


__all__ = ["PRDC", "prdc"]
