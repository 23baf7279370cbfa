r"""Precision, recall, density and coverage of generated embeddings (Naeem et al. 2020).

With ``B(x, r)`` the ball of radius ``r`` around ``x`` and ``NND_k(x)`` the distance from a
real (or fake) point to its k-th nearest neighbour in its own set (itself excluded):

.. math::

    \text{precision} = \frac1M \sum_j \mathbb 1[\exists i: Y_j \in B(X_i, NND_k(X_i))], \quad
    \text{recall} = \frac1N \sum_i \mathbb 1[\exists j: X_i \in B(Y_j, NND_k(Y_j))],

    \text{density} = \frac{1}{kM} \sum_j \sum_i \mathbb 1[Y_j \in B(X_i, NND_k(X_i))], \quad
    \text{coverage} = \frac1N \sum_i \mathbb 1[\exists j: Y_j \in B(X_i, NND_k(X_i))],

with strict inequalities, exactly as the ``prdc`` package computes them. faceaudit streams
row blocks of the distance matrices, so at most ``block x n`` distances exist at once per
CPU thread (``prdc`` holds three full ``n x n`` matrices: ~32 GB at n = 50,000). Distances
are compared squared, in float64.

On CPU (``_host_prdc``) the distances are first computed by float32 GEMMs, within-set
blocks only on and above the diagonal, with a rigorous bound on their rounding. Only the
pairs that bound cannot place clearly inside or outside a ball, and each row's k-th
neighbour, are recomputed in float64, so the result equals the float64 computation at
about half its cost. The blocks are shared among one thread per core, each with a
single-threaded BLAS, so that the numpy bookkeeping between GEMMs (candidate merges,
threshold masks) runs beside the other thread's GEMM instead of idling a core.
Elsewhere (GPU, under ``jit``) the XLA kernel below runs in float64.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _linalg, _validate
from ._typing import Array, Features, Scalar

DEFAULT_BLOCK = 512


class PRDC(NamedTuple):
    precision: Scalar
    recall: Scalar
    density: Scalar
    coverage: Scalar


class Membership(NamedTuple):
    """Per-sample k-NN membership behind PRDC.

    Attributes:
        fake_in_real: ``(m,)`` int: how many real k-NN balls hold each generated point
            (``> 0``: the point is on the real manifold, its precision indicator; the sum
            over points / ``k m`` is the density).
        real_covered: ``(n,)`` bool: a generated point lies in the real point's ball (coverage).
        real_recalled: ``(n,)`` bool: the real point lies in some generated point's ball (recall).
    """

    fake_in_real: Array
    real_covered: Array
    real_recalled: Array

    def summary(self, k: int) -> PRDC:
        m = self.fake_in_real.shape[0]
        return PRDC(jnp.mean(self.fake_in_real > 0, dtype=jnp.float64), jnp.mean(self.real_recalled, dtype=jnp.float64),
                    jnp.sum(self.fake_in_real) / (k * m), jnp.mean(self.real_covered, dtype=jnp.float64))


def _sq_dist(a, sq_a, b, sq_b):
    return jnp.clip(sq_a[:, None] + sq_b[None, :] - 2.0 * (a @ b.T), 0.0)


def host_sq_dist(a, sq_a, b, sq_b, out=None):
    """``_sq_dist`` in numpy, in place in ``out`` when given (the host paths' tiles)."""
    out = np.matmul(a, b.T, out=out)
    out *= -2.0
    out += sq_a[:, None]
    out += sq_b[None, :]
    return np.maximum(out, 0.0, out=out)


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
    (nearest_fake2, recalled), (_, count) = jax.lax.scan(body, init, (fb, sqfb, r2fb, valid))
    return count.reshape(-1)[: fake.shape[0]], nearest_fake2 < r2_real, recalled


# --- CPU: float32 screening with exact float64 decisions ---------------------------------

_U32 = 2.0**-24  # unit roundoff of float32


def _screening_error(d: int) -> float:
    """``c`` with ``|D32 - D64| <= c (|a|^2 + |b|^2)`` for a squared distance computed in
    float32 as ``|a|^2 + |b|^2 - 2 a.b`` from float64 rows (any summation order).

    Rounding the inputs moves ``a.b`` by at most ``2.0001 u |a||b|``, the float32 dot
    product adds ``gamma_d (1 + u)^2 |a||b|`` (Higham, Thm 3.1), rounding the norms and the
    two additions add ``5 u (|a|^2 + |b|^2)``; ``2 |a||b| <= |a|^2 + |b|^2`` collects the
    terms. (The factor -2 is applied to one operand before the GEMM: exact in binary.) The
    result is doubled: the bound must hold, its size only sets how many pairs are
    re-checked in float64.
    """
    gamma = d * _U32 / (1.0 - d * _U32)
    return 2.0 * (gamma * (1.0 + _U32) ** 2 + 2.0001 * _U32 + 5.0 * _U32 + 4.0 * _U32)


class _Screen(NamedTuple):
    """One set's rows in float64 and float32, with what the screening needs."""

    x: np.ndarray  # (n, d) float64
    sq: np.ndarray  # (n,) float64 squared norms
    x32: np.ndarray  # (n, d) float32
    neg2_x32: np.ndarray  # (n, d) float32, -2 x (exact)
    sq32: np.ndarray  # (n,) float32
    err: np.ndarray  # (n,) float64: this row's share c |x|^2 of a pair's screening bound

    @classmethod
    def of(cls, x, c: float):
        x = np.asarray(x, dtype=np.float64)
        sq = np.einsum("ij,ij->i", x, x)
        x32 = x.astype(np.float32)
        return cls(x, sq, x32, -2.0 * x32, sq.astype(np.float32), c * sq)


def _sq_dist32(a: _Screen, rows: slice, b: _Screen, cols: slice, buffer: np.ndarray):
    """Float32 squared distances of ``a[rows]`` to ``b[cols]`` in (a view of) ``buffer``."""
    n_rows, n_cols = len(a.sq32[rows]), len(b.sq32[cols])
    out = buffer[: n_rows * n_cols].reshape(n_rows, n_cols)  # contiguous, so sgemm writes in place
    np.matmul(a.neg2_x32[rows], b.x32[cols].T, out=out)
    out += a.sq32[rows, None]
    out += b.sq32[None, cols]
    return out


def _exact_sq(a: _Screen, b: _Screen, rows, cols, chunk: int = 256):
    """Float64 squared distances of the listed pairs, clipped at 0 like the reference.

    The rows are gathered a chunk at a time into two reused buffers: gathering thousands of
    2,048-wide rows at once allocates fresh memory whose page faults cost more than the
    dot products.
    """
    rows, cols = np.asarray(rows), np.asarray(cols)
    dots = np.empty(rows.size)
    width = min(chunk, rows.size)
    left, right = np.empty((width, a.x.shape[1])), np.empty((width, b.x.shape[1]))
    for start in range(0, rows.size, chunk):
        m = min(chunk, rows.size - start)
        np.take(a.x, rows[start:start + m], axis=0, out=left[:m])
        np.take(b.x, cols[start:start + m], axis=0, out=right[:m])
        dots[start:start + m] = np.einsum("ij,ij->i", left[:m], right[:m])
    return np.maximum(a.sq[rows] + b.sq[cols] - 2.0 * dots, 0.0)


def _below32(v):
    """Largest float32 <= each float64 value (a threshold that must not round up)."""
    v32 = v.astype(np.float32)
    return np.where(v32 > v, np.nextafter(v32, np.float32(-np.inf)), v32)


def _above32(v):
    v32 = v.astype(np.float32)
    return np.where(v32 < v, np.nextafter(v32, np.float32(np.inf)), v32)


def _sparse_nonzero(mask: np.ndarray):
    """``np.nonzero`` of a C-contiguous 2-D boolean mask that is mostly False, ~5x faster.

    ``np.nonzero`` visits every byte (~15 ms for a 512 x 10,000 block here, as much as the
    bookkeeping around it); reading the mask as 8-byte words skips the all-False words and
    only the few others are expanded.
    """
    flat = mask.reshape(-1)
    whole = flat.size - flat.size % 8
    words = np.flatnonzero(flat[:whole].view(np.uint64))
    idx = (words[:, None] * 8 + np.arange(8)).ravel()
    idx = np.concatenate([idx, np.arange(whole, flat.size)])
    idx = idx[flat[idx]]
    return np.divmod(idx, mask.shape[1])


def _offer(vals, idx, worst, dist, row0: int, col0: int):
    """Merge into each row's kept candidates the entries of a distance block that beat its
    current worst kept value.

    ``vals``/``idx``/``worst`` are ``(n, keep)``/``(n, keep)``/``(n,)``; the block's rows are
    ``row0...`` and its columns ``col0...``. After a row's first block only a few entries
    per block can still qualify (about ``keep x block / columns seen``), so the work is a
    comparison pass plus a partition of those few instead of a partition of every row.
    """
    n_rows, keep = dist.shape[0], vals.shape[1]
    rows = slice(row0, row0 + n_rows)
    if dist.shape[1] >= keep and np.isinf(worst[rows]).all():  # the rows' first block
        chosen = np.argpartition(dist, keep - 1, axis=1)[:, :keep]
        vals[rows] = np.take_along_axis(dist, chosen, axis=1)
        idx[rows] = chosen + col0
        worst[rows] = vals[rows].max(axis=1)
        return
    # order="C": for a transposed block the mask is then laid out row by row, as
    # _sparse_nonzero reads it.
    r, c = _sparse_nonzero(np.less(dist, worst[row0:row0 + n_rows, None], order="C"))
    if r.size == 0:
        return
    counts = np.bincount(r, minlength=n_rows)
    hit = np.flatnonzero(counts)
    slot = np.zeros(n_rows, np.int64)
    slot[hit] = np.arange(hit.size)
    width = keep + int(counts.max())
    rows = row0 + hit
    cand = np.full((hit.size, width), np.inf, np.float32)
    cand_idx = np.zeros((hit.size, width), np.int64)
    cand[:, :keep], cand_idx[:, :keep] = vals[rows], idx[rows]
    # np.nonzero lists entries row by row: an entry's place among its row's new candidates
    # is its position minus the row's first position.
    place = keep + np.arange(r.size) - (np.cumsum(counts) - counts)[r]
    cand[slot[r], place] = dist[r, c]
    cand_idx[slot[r], place] = c + col0
    chosen = np.argpartition(cand, keep - 1, axis=1)[:, :keep]
    vals[rows] = np.take_along_axis(cand, chosen, axis=1)
    idx[rows] = np.take_along_axis(cand_idx, chosen, axis=1)
    worst[rows] = vals[rows].max(axis=1)


def _knn_candidates(s: _Screen, starts, keep: int, block: int):
    """Each row's ``keep`` smallest screened distances over the row blocks at ``starts``.

    Row block ``p`` is screened against every column from ``p`` on in one wide GEMM (the
    upper triangle of the symmetric distance matrix, ~10% faster per flop here than square
    blocks): its square part on the diagonal serves its own rows, the rest serves them and,
    transposed, the later rows.
    """
    n = s.x.shape[0]
    vals = np.full((n, keep), np.inf, np.float32)
    idx = np.zeros((n, keep), np.int64)
    worst = np.full(n, np.inf, np.float32)
    buffer = np.empty(block * n, np.float32)
    for p in starts:
        dist = _sq_dist32(s, slice(p, p + block), s, slice(p, None), buffer)
        _offer(vals, idx, worst, dist, p, p)
        if p + block < n:
            _offer(vals, idx, worst, dist[:, block:].T, p + block, p)
    return vals, idx


def _balanced(sizes, workers: int) -> list[list[int]]:
    """Indices of ``sizes`` split into ``workers`` lists of near-equal total size (largest
    first, each to the least loaded list)."""
    loads, shares = [0] * workers, [[] for _ in range(workers)]
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        w = loads.index(min(loads))
        loads[w] += sizes[i]
        shares[w].append(i)
    return [sorted(share) for share in shares if share]


def _host_knn_radius2(s: _Screen, k: int, block: int):
    """Exact float64 squared k-NN radii (self included as the 0-th neighbour).

    Float32 blocks on and above the diagonal (the distance matrix is symmetric: half the
    GEMM work), shared among one thread per core, keep each row's ``keep`` smallest screened
    distances; the radius is then the k-th smallest *exact* distance among them,
    recomputing in float64 only those the error bound cannot order. It is the true radius
    unless a row's ``keep``-th screened distance minus the bound does not clear it, in
    which case that row is recomputed in float64 (rare: the bound is ~1e-4 of the squared
    norms).
    """
    n = s.x.shape[0]
    keep = min(n, k + 1 + 8)
    starts = list(range(0, n, block))
    shards = [[starts[i] for i in share] for share in _balanced([n - p for p in starts], _linalg.host_cores())]
    parts = _linalg.host_map(lambda shard: _knn_candidates(s, shard, keep, block), shards)
    vals, idx = (np.concatenate(a, axis=1) for a in zip(*parts))
    # The shards' union holds each row's keep smallest; every value a shard left out is at
    # least its own worst kept value, hence at least the union's keep-th smallest.
    order = np.argsort(vals, axis=1)[:, :keep]
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float64)
    idx = np.take_along_axis(idx, order, axis=1)
    # The true k-th value lies within +-e of the k-th screened one (e bounds every pair of
    # the row). Kept values more than 2e below it are surely below it, more than 2e above
    # surely above: only the few within 2e are recomputed in float64.
    e = s.err + s.err.max()
    kth = vals[:, k]
    below = np.sum(vals < (kth - 2.0 * e)[:, None], axis=1)
    window = np.abs(vals - kth[:, None]) <= 2.0 * e[:, None]
    ri, ci = np.nonzero(window)
    exact = np.full(vals.shape, np.inf)
    exact[ri, ci] = _exact_sq(s, s, ri, idx[ri, ci])
    radius = np.take_along_axis(np.sort(exact, axis=1), (k - below)[:, None], axis=1)[:, 0]
    # Every column left out has a screened distance >= the largest kept one.
    cleared = (vals[:, -1] - e > radius) | (keep == n)
    for i in np.flatnonzero(~cleared):
        full = np.maximum(s.sq[i] + s.sq - 2.0 * (s.x @ s.x[i]), 0.0)
        radius[i] = np.partition(full, k)[k]
    return radius


def _inside(dist32, lower, upper, exact, radius2, per_row: bool):
    """``D < r2`` for every pair of a block, exact in float64.

    ``lower``/``upper`` are float32 thresholds below/above which the screened distance
    decides (the radius minus/plus the pair's screening bound, rounded outward), per column
    or, with ``per_row``, per row. Pairs in between are recomputed by ``exact(rows, cols)``.
    """
    lower, upper = (t[:, None] if per_row else t[None, :] for t in (lower, upper))
    inside = dist32 < lower
    undecided = dist32 < upper
    undecided ^= inside  # inside implies below the upper threshold
    ri, ci = _sparse_nonzero(undecided)
    if ri.size:
        inside[ri, ci] = exact(ri, ci) < radius2[ri if per_row else ci]
    return inside


def _cross_counts(fake: _Screen, real: _Screen, r2_real, r2_fake, starts, block: int):
    """For the fake row blocks at ``starts``: each fake row's number of real balls it lies in,
    and which real points' balls it covers / which real points lie in its own ball."""
    n_real = real.x.shape[0]
    hits = np.zeros(fake.x.shape[0], np.int64)
    covered = np.zeros(n_real, bool)
    recalled = np.zeros(n_real, bool)
    buffer = np.empty(block * n_real, np.float32)
    # A pair's bound is err_fake[j] + err_real[i]; the other side's largest share stands in
    # for its own (a few more pairs re-checked, no outer sum per block).
    err_real_max = real.err.max()
    ball_real = r2_real > 0  # a clipped distance is never < 0
    for start in starts:
        rows = slice(start, start + block)
        dist = _sq_dist32(fake, rows, real, slice(None), buffer)
        err_fake_max = fake.err[rows].max()

        def exact(ri, ci, offset=start):
            return _exact_sq(fake, real, ri + offset, ci)

        slack = real.err + err_fake_max
        lower = np.where(ball_real, _below32(r2_real - slack), -np.inf).astype(np.float32)
        in_real = _inside(dist, lower, _above32(r2_real + slack), exact, r2_real, per_row=False)
        hits[rows] = np.count_nonzero(in_real, axis=1)
        covered |= in_real.any(axis=0)
        # Recall: real i inside fake j's ball, D < r2_fake[j]: the same block, row thresholds.
        r2 = r2_fake[rows]
        slack = fake.err[rows] + err_real_max
        lower = np.where(r2 > 0, _below32(r2 - slack), -np.inf).astype(np.float32)
        in_fake = _inside(dist, lower, _above32(r2 + slack), exact, r2, per_row=True)
        recalled |= in_fake.any(axis=0)
    return hits, covered, recalled


def _host_membership(real, fake, k: int, block: int) -> Membership:
    c = _screening_error(real.shape[1])
    real, fake = _linalg.host_map(lambda x: _Screen.of(x, c), (real, fake))
    r2_real = _host_knn_radius2(real, k, block)
    r2_fake = _host_knn_radius2(fake, k, block)
    m = fake.x.shape[0]
    cores = _linalg.host_cores()
    starts = list(range(0, m, block))
    parts = _linalg.host_map(lambda share: _cross_counts(fake, real, r2_real, r2_fake, share, block),
                             [starts[i::cores] for i in range(cores) if starts[i::cores]])
    hit_count = np.sum([h for h, _, _ in parts], axis=0)
    covered = np.logical_or.reduce([cov for _, cov, _ in parts])
    recalled = np.logical_or.reduce([rec for _, _, rec in parts])
    return Membership(hit_count, covered, recalled)


def _check_radii(name: str, x, k: int, rows=None) -> None:
    """A row repeated more than ``k`` times has a k-NN radius of 0; the strict ``<`` then
    admits nothing into its ball and the set silently scores 0 (prdc's issue #7).
    ``rows`` maps ``x``'s rows to the row numbers a message should name."""
    x = np.asarray(x)
    # Equal rows have equal projections: count repeats of one random projection per row
    # (a 1-D sort instead of a lexicographic sort of whole rows), then confirm exactly.
    # (An elementwise product summed per row: BLAS may round equal rows differently.)
    projection = (x * np.random.default_rng(0).normal(size=x.shape[1])).sum(axis=1)
    _, inverse, counts = np.unique(projection, return_inverse=True, return_counts=True)
    for candidate in np.flatnonzero(counts > k):
        members = np.flatnonzero(inverse == candidate)
        _, first, same = np.unique(x[members], axis=0, return_index=True, return_counts=True)
        if same.max() <= k:
            continue
        local = int(members[first[np.argmax(same)]])
        row = local if rows is None else int(rows[local])
        raise ValueError(f"{name} row {row} appears {int(same.max())} times (more than k = {k}); its k-NN ball "
                         "would be empty and every point inside it missed. Remove duplicate embeddings or raise k")


def knn_membership(real: Features, fake: Features, *, k: int = 5, block_size: int = DEFAULT_BLOCK) -> Membership:
    """Per-sample k-NN membership of ``fake`` in ``real``'s balls and back (PRDC per point).

    Strict ``<`` as in ``prdc``; computed blockwise (at most ``block x n`` distances at
    once), float32 screening with exact float64 decisions on CPU. ``prdc`` is its summary.

    Raises:
        ValueError: as ``prdc``.
    """
    k = _validate.positive_int(k, "k")
    real = _validate.features(real, "real", min_rows=k + 1, as_jax=False)
    fake = _validate.features(fake, "fake", min_rows=k + 1, as_jax=False)
    _validate.same_dim(real, fake, ("real", "fake"))
    if _validate._is_concrete(real) and _validate._is_concrete(fake):
        _check_radii("real", real, k)
        _check_radii("fake", fake, k)
    block = min(_validate.positive_int(block_size, "block_size"), max(real.shape[0], fake.shape[0]))
    if _linalg.host_eager(real, fake):
        return _host_membership(real, fake, k, block)
    return Membership(*_prdc(jnp.asarray(real), jnp.asarray(fake), k, block))


def prdc(real: Features, fake: Features, *, k: int = 5, block_size: int = DEFAULT_BLOCK) -> PRDC:
    """Precision, recall, density and coverage of ``fake`` against ``real``.

    Args:
        real: ``(n, d)`` reference embeddings (n > k).
        fake: ``(m, d)`` generated embeddings (m > k).
        k: neighbourhood size for the radii (Naeem et al. use 5).
        block_size: rows of the distance matrix held at once (by each CPU thread).

    Returns:
        ``PRDC(precision, recall, density, coverage)`` of float64 scalars.

    Raises:
        ValueError: fewer than ``k + 1`` rows, NaN/inf, mismatched dimensions, or a row
            repeated more than ``k`` times (its radius would be 0; see ``knn_membership``).

    .. warning:: The values depend on the set sizes (radii shrink as ``n`` grows): compare
       groups at a common size (``by_group`` does).

    References:
        Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models",
        ICML 2020. Kynkaanniemi et al., "Improved Precision and Recall Metric for
        Assessing Generative Models", NeurIPS 2019.
    """
    return knn_membership(real, fake, k=k, block_size=block_size).summary(k)


__all__ = ["PRDC", "Membership", "knn_membership", "prdc"]


def nearest_distance(real: Features, fake: Features, *, block_size: int = DEFAULT_BLOCK) -> np.ndarray:
    """Euclidean distance from each ``fake`` row to its nearest ``real`` row (float64), in
    blocks of ``block_size`` fake rows: which generated faces lie farthest from every
    reference face (the report shows them).

    >>> nearest_distance(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 1.0], [3.0, 5.0]])).tolist()
    [1.0, 1.0]
    """
    real = np.asarray(_validate.features(real, "real", min_rows=1, as_jax=False), dtype=np.float64)
    fake = np.asarray(_validate.features(fake, "fake", min_rows=1, as_jax=False), dtype=np.float64)
    _validate.same_dim(real, fake, ("real", "fake"))
    block = _validate.positive_int(block_size, "block_size")
    squared_real = np.einsum("ij,ij->i", real, real)
    out = np.empty(len(fake))
    for start in range(0, len(fake), block):
        part = fake[start:start + block]
        d2 = squared_real[None, :] + np.einsum("ij,ij->i", part, part)[:, None] - 2.0 * part @ real.T
        out[start:start + block] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out
