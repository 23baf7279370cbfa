r"""Maximum mean discrepancy: the unbiased MMD^2, KID and the Gaussian-kernel (CMMD) form.

.. math::

    \widehat{\mathrm{MMD}}^2_u = \frac{\sum_{i \ne j} k(x_i, x_j)}{m(m-1)}
      + \frac{\sum_{i \ne j} k(y_i, y_j)}{n(n-1)} - \frac{2}{mn}\sum_{i,j} k(x_i, y_j)

with the cubic polynomial kernel ``k(a, b) = (a.b / d + 1)^3`` of KID (Binkowski et al.
2018) or the Gaussian kernel ``exp(-|a - b|^2 / (2 sigma^2))`` of CMMD (Jayasumana et al.
2024; CMMD reports ``1000 * MMD^2`` with ``sigma = 10`` on unit-norm CLIP embeddings).

Kernel sums are accumulated over row blocks, so memory is ``O(block^2 + n d)`` however large
the sets. Within-set sums use symmetry: only blocks on or above the diagonal are computed,
which saves close to half of the GEMM work for the two within-set terms. Every sum carries
frequency weights (padding rows have weight 0; bootstrap replicates are counts), and the
diagonal is removed exactly: ``sum_{i != j} = sum_{a,b} c_a c_b k_ab - sum_a c_a k_aa``.
"""

from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _linalg, _prdc, _validate
from ._typing import Features, PRNGKey, Scalar, Weights

KERNELS = ("cubic", "gaussian")
DEFAULT_BLOCK = 1024


def _kernel_block(kernel: str, a, b, sq_a, sq_b, bandwidth):
    g = a @ b.T
    if kernel == "cubic":
        return (g / a.shape[1] + 1.0) ** 3
    d2 = jnp.clip(sq_a[:, None] + sq_b[None, :] - 2.0 * g, 0.0)
    return jnp.exp(-d2 / (2.0 * bandwidth**2))


def _kernel_diag(kernel: str, a, sq_a, bandwidth):
    if kernel == "cubic":
        return (sq_a / a.shape[1] + 1.0) ** 3
    return jnp.ones_like(sq_a)


def _blocked(x, w, block):
    n, d = x.shape
    k = -(-n // block)
    pad = k * block - n
    xb = jnp.pad(x, ((0, pad), (0, 0))).reshape(k, block, d)
    wb = jnp.pad(w, (0, pad)).reshape(k, block)
    return xb, wb


def _pair_sum(kernel, xa, wa, xb, wb, bandwidth, *, symmetric: bool):
    """``sum_{i,j} w_i w_j k(a_i, b_j)`` over all pairs, by blocks (a is b when symmetric)."""
    ka, kb = xa.shape[0], xb.shape[0]
    if symmetric:
        pairs = [(p, q) for p in range(ka) for q in range(p, ka)]
    else:
        pairs = [(p, q) for p in range(ka) for q in range(kb)]
    ps = jnp.asarray([p for p, _ in pairs])
    qs = jnp.asarray([q for _, q in pairs])
    mult = jnp.asarray([1.0 if (p == q or not symmetric) else 2.0 for p, q in pairs], xa.dtype)
    sqa = jnp.sum(xa * xa, axis=-1)
    sqb = jnp.sum(xb * xb, axis=-1)

    def body(total, pqm):
        p, q, m = pqm
        kern = _kernel_block(kernel, xa[p], xb[q], sqa[p], sqb[q], bandwidth)
        return total + m * (wa[p] @ kern @ wb[q]), None

    total, _ = jax.lax.scan(body, jnp.zeros((), xa.dtype), (ps, qs, mult))
    return total


@functools.partial(jax.jit, static_argnames=("kernel", "block"))
def _mmd2_weighted(x, wx, y, wy, bandwidth, kernel: str, block: int):
    x = x.astype(jnp.float64)
    y = y.astype(jnp.float64)
    wx = wx.astype(jnp.float64)
    wy = wy.astype(jnp.float64)
    xb, wxb = _blocked(x, wx, block)
    yb, wyb = _blocked(y, wy, block)
    m, n = wx.sum(), wy.sum()
    diag_x = wx @ _kernel_diag(kernel, x, jnp.sum(x * x, axis=1), bandwidth)
    diag_y = wy @ _kernel_diag(kernel, y, jnp.sum(y * y, axis=1), bandwidth)
    s_xx = _pair_sum(kernel, xb, wxb, xb, wxb, bandwidth, symmetric=True) - diag_x
    s_yy = _pair_sum(kernel, yb, wyb, yb, wyb, bandwidth, symmetric=True) - diag_y
    s_xy = _pair_sum(kernel, xb, wxb, yb, wyb, bandwidth, symmetric=False)
    return s_xx / (m * (m - 1.0)) + s_yy / (n * (n - 1.0)) - 2.0 * s_xy / (m * n)


def _check_kernel(kernel, bandwidth):
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    if kernel == "gaussian" and not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
        raise ValueError(f"the gaussian kernel needs a positive bandwidth, got {bandwidth!r}")
    return float(bandwidth) if kernel == "gaussian" else 1.0


def mmd2(
    x: Features,
    y: Features,
    *,
    kernel: str = "cubic",
    bandwidth: float = 10.0,
    block_size: int = DEFAULT_BLOCK,
) -> Scalar:
    """Unbiased MMD^2 over all samples (deterministic; no subsets).

    Args:
        x: ``(m, d)`` embeddings; y: ``(n, d)`` embeddings.
        kernel: ``"cubic"`` (KID's polynomial kernel) or ``"gaussian"`` (CMMD).
        bandwidth: ``sigma`` of the Gaussian kernel (ignored for ``"cubic"``).
        block_size: rows per block; memory is ``O(block_size^2)``.

    Returns:
        float64 scalar (may be slightly negative: the estimator is unbiased).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, 4)); y = rng.normal(size=(200, 4))
        >>> abs(float(mmd2(x, y))) < 0.05
        True
    """
    bw = _check_kernel(kernel, bandwidth)
    x = _validate.features(x, "x")
    y = _validate.features(y, "y")
    _validate.same_dim(x, y, ("x", "y"))
    block = _validate.positive_int(block_size, "block_size")
    block = min(block, max(x.shape[0], y.shape[0]))
    return _mmd2_weighted(x, jnp.ones(x.shape[0]), y, jnp.ones(y.shape[0]), bw, kernel, block)


def mmd2_weighted(x, wx: Weights, y, wy: Weights, *, kernel="cubic", bandwidth=10.0, block_size=DEFAULT_BLOCK):
    """``mmd2`` of the multisets that repeat row ``i`` ``w_i`` times (bootstrap counts)."""
    bw = _check_kernel(kernel, bandwidth)
    x = _validate.features(x, "x")
    y = _validate.features(y, "y")
    _validate.same_dim(x, y, ("x", "y"))
    wx = _validate.weights(wx, x.shape[0], "wx")
    wy = _validate.weights(wy, y.shape[0], "wy")
    block = min(_validate.positive_int(block_size, "block_size"), max(x.shape[0], y.shape[0]))
    return _mmd2_weighted(x, wx, y, wy, bw, kernel, block)


class KIDResult(NamedTuple):
    """KID over random subsets: ``mean`` and population ``std`` (ddof = 0) of the subset
    MMD^2 values (torch-fidelity and torchmetrics report the same pair)."""

    mean: Scalar
    std: Scalar


@functools.partial(jax.jit, static_argnames=("n_x", "n_y", "num_subsets", "subset_size"))
def _subset_indices(key, n_x: int, n_y: int, num_subsets: int, subset_size: int):
    """``(num_subsets, subset_size)`` row indices into x and y, without replacement."""

    def one(k):
        kx, ky = jax.random.split(k)
        return (jax.random.choice(kx, n_x, (subset_size,), replace=False),
                jax.random.choice(ky, n_y, (subset_size,), replace=False))

    return jax.vmap(one)(jax.random.split(key, num_subsets))


# The XLA path (GPUs, user jit, fc.xla_only()) evaluates subsets in chunks whose three
# m x m kernel matrices fit in this many bytes: each chunk is three batched GEMMs (one
# gathered batch of subsets) instead of a scan of small blocks per subset.
KID_CHUNK_BYTES = 1 << 28


def _kid_chunk(num_subsets: int, subset_size: int) -> int:
    return int(max(1, min(num_subsets, KID_CHUNK_BYTES // (3 * 8 * subset_size**2))))


@functools.partial(jax.jit, static_argnames=("subset_size", "chunk"))
def _kid(x, y, ix, iy, subset_size: int, chunk: int):
    d, m = x.shape[1], subset_size

    def one(idx):  # lax.map(batch_size=chunk) vmaps this: the products become batched GEMMs
        xs, ys = x[idx[0]], y[idx[1]]
        k_xx = (xs @ xs.T / d + 1.0) ** 3
        k_yy = (ys @ ys.T / d + 1.0) ** 3
        k_xy = (xs @ ys.T / d + 1.0) ** 3
        within = (k_xx.sum() - jnp.trace(k_xx) + k_yy.sum() - jnp.trace(k_yy)) / (m * (m - 1.0))
        return within - 2.0 * k_xy.mean()

    values = jax.lax.map(one, (ix, iy), batch_size=chunk)
    return KIDResult(values.mean(), values.std())


def _cubic_kernel_sum(gram, row_sum, d: int, square, *, off_diagonal: bool) -> float:
    """``sum (g / d + 1)^3`` over a Gram matrix, from three power sums.

    ``sum (g/d + 1)^3 = S3 / d^3 + 3 S2 / d^2 + 3 S1 / d + N`` with ``Sp = sum g^p``: one
    elementwise square (into the caller's ``square`` buffer) and BLAS dot products,
    instead of four full passes that apply the kernel (this was a third of KID's time).
    ``S1`` needs no pass at all: it is ``row_sum`` dotted with itself or the other set's.
    The terms can cancel where ``g / d`` is near -1; the rounding is then
    ~eps * N * max|g/d + 1|^3 per sum, far below the MMD's own cancellation between its
    three sums (host and XLA paths agree to ~1e-14 in the tests).
    """
    flat = gram.reshape(-1)
    np.multiply(flat, flat, out=square)
    s2 = float(square.sum())
    s3 = float(square @ flat)
    total = s3 / d**3 + 3.0 * s2 / d**2 + 3.0 * row_sum / d + flat.size
    if off_diagonal:
        total -= float(np.sum((np.diagonal(gram) / d + 1.0) ** 3))
    return total


def _host_kid(x, y, ix, iy) -> KIDResult:
    """KID on CPU straight from the caller's arrays.

    Per subset: the within-set Gram matrices by BLAS ``syrk`` (numpy's ``a @ a.T``, half a
    GEMM), the cross one by GEMM, the cubic kernel summed from power sums. Subsets run on
    one thread per core, each with a single-threaded BLAS (``_linalg.host_map``): at
    1,000 x 1,000 products that beat one multi-threaded BLAS call at a time by 15-30% here,
    and the elementwise work runs in parallel too. Each thread reuses its own buffers for
    the gathered rows and the Gram matrices: fresh ones cost page faults on every subset.
    """
    d, m = x.shape[1], ix.shape[1]
    buffers = threading.local()

    def one(subset):
        if not hasattr(buffers, "gram"):
            buffers.xs, buffers.ys = np.empty((m, d)), np.empty((m, d))
            buffers.gram, buffers.square = np.empty((m, m)), np.empty(m * m)
        xs, ys, gram, square = buffers.xs, buffers.ys, buffers.gram, buffers.square
        a, b = subset
        np.take(x, a, axis=0, out=xs)
        np.take(y, b, axis=0, out=ys)
        sx, sy = xs.sum(axis=0), ys.sum(axis=0)
        k_xx = _cubic_kernel_sum(np.matmul(xs, xs.T, out=gram), sx @ sx, d, square, off_diagonal=True)
        k_yy = _cubic_kernel_sum(np.matmul(ys, ys.T, out=gram), sy @ sy, d, square, off_diagonal=True)
        k_xy = _cubic_kernel_sum(np.matmul(xs, ys.T, out=gram), sx @ sy, d, square, off_diagonal=False)
        return (k_xx + k_yy) / (m * (m - 1.0)) - 2.0 * k_xy / (m * m)

    values = np.asarray(_linalg.host_map(one, np.stack([ix, iy], axis=1)))
    return KIDResult(jnp.asarray(values.mean()), jnp.asarray(values.std()))


def kid(
    x: Features,
    y: Features,
    *,
    key: PRNGKey,
    num_subsets: int = 100,
    subset_size: int | None = None,
) -> KIDResult:
    """Kernel Inception Distance: unbiased cubic-kernel MMD^2 averaged over subsets.

    Each subset draws ``subset_size`` rows of ``x`` and of ``y`` without replacement,
    independently, from ``key`` (the peers draw from numpy's global RNG). The default
    subset size is the peers' 1,000, or the smaller set's size when a set is smaller (then
    ``std`` is the spread of near-identical subsets and says little; prefer ``mmd2``, the
    all-pairs estimate of the same quantity, for small sets).

    Raises:
        ValueError: ``subset_size`` larger than either set, or below 2.

    References:
        Binkowski et al., "Demystifying MMD GANs", ICLR 2018.
    """
    _validate.key(key)
    x = _validate.features(x, "x", as_jax=False)
    y = _validate.features(y, "y", as_jax=False)
    _validate.same_dim(x, y, ("x", "y"))
    num_subsets = _validate.positive_int(num_subsets, "num_subsets")
    n_min = min(x.shape[0], y.shape[0])
    subset_size = min(1000, n_min) if subset_size is None else subset_size
    subset_size = _validate.positive_int(subset_size, "subset_size", minimum=2)
    if subset_size > n_min:
        raise ValueError(
            f"subset_size={subset_size} is larger than the smaller set ({n_min} rows); "
            f"pass subset_size <= {n_min}"
        )
    ix, iy = _subset_indices(key, x.shape[0], y.shape[0], num_subsets, subset_size)
    if _linalg.host_eager(x, y):
        return _host_kid(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(ix), np.asarray(iy))
    return _kid(jnp.asarray(x, dtype=jnp.float64), jnp.asarray(y, dtype=jnp.float64), ix, iy, subset_size,
                _kid_chunk(num_subsets, subset_size))


def median_bandwidth(x: Features, y: Features, *, max_rows: int = 2000) -> float:
    """Median pairwise distance of the pooled sets (the usual Gaussian-kernel heuristic),
    from at most ``max_rows`` evenly strided rows of each set (deterministic)."""
    x = np.asarray(_validate.features(x, "x"), dtype=np.float64)
    y = np.asarray(_validate.features(y, "y"), dtype=np.float64)
    pooled = np.concatenate([x[:: max(1, len(x) // max_rows)], y[:: max(1, len(y) // max_rows)]])
    sq = (pooled * pooled).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0, None)
    return float(np.sqrt(np.median(d2[np.triu_indices(len(pooled), 1)])))


def _expected_kernel(kernel: str, a, cov_a, b, cov_b, bandwidth: float, d: int):
    r"""``E k(x, y)`` for independent ``x ~ N(a, A)``, ``y ~ N(b, B)``.

    Cubic kernel ``(u/d + 1)^3`` with ``u = x.y``: conditioning on ``y``, ``u ~ N(a.y,
    y^T A y)``, so ``E u = a.b``, ``E u^2 = tr(AB) + a^T B a + b^T A b + (a.b)^2`` and
    ``E u^3 = (a.b)^3 + 3 (a.b)(a^T B a + b^T A b + tr(AB)) + 6 a^T B A b``.
    Gaussian kernel: ``det(I + (A + B)/s^2)^{-1/2} exp(-(a-b)^T (s^2 I + A + B)^{-1} (a-b) / 2)``.
    """
    if kernel == "cubic":
        ab = a @ b
        tr_ab = jnp.sum(cov_a * cov_b.T)
        aba, bab = a @ cov_b @ a, b @ cov_a @ b
        u1 = ab
        u2 = tr_ab + aba + bab + ab**2
        u3 = ab**3 + 3.0 * ab * (aba + bab + tr_ab) + 6.0 * a @ cov_b @ cov_a @ b
        return u3 / d**3 + 3.0 * u2 / d**2 + 3.0 * u1 / d + 1.0
    s2 = bandwidth**2
    total = cov_a + cov_b
    eye = jnp.eye(a.shape[0])
    gap = a - b
    _, logdet = jnp.linalg.slogdet(eye + total / s2)
    return jnp.exp(-0.5 * logdet - 0.5 * gap @ jnp.linalg.solve(s2 * eye + total, gap))


def gaussian_mmd2(mean_x, cov_x, mean_y, cov_y, *, kernel: str = "cubic", bandwidth: float = 10.0) -> Scalar:
    """The population MMD^2 between ``N(mean_x, cov_x)`` and ``N(mean_y, cov_y)`` (closed form).

    What ``mmd2`` (and per group ``by_group("mmd2")``) estimates without bias for Gaussian
    embeddings: the truth of the bias and coverage studies. Same kernels and scaling as
    ``mmd2`` (the Gaussian kernel here is *not* multiplied by 1000).

    Example:
        >>> import numpy as np
        >>> float(gaussian_mmd2(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3)))
        0.0
    """
    bw = _check_kernel(kernel, bandwidth)
    mx, my = (jnp.asarray(v, jnp.float64) for v in (mean_x, mean_y))
    cx, cy = (jnp.asarray(v, jnp.float64) for v in (cov_x, cov_y))
    d = mx.shape[0]
    if mx.shape != my.shape or cx.shape != (d, d) or cy.shape != (d, d):
        raise ValueError(f"means must be (d,) and covariances (d, d) of one d; got {mx.shape}, {cx.shape}, {my.shape}, {cy.shape}")
    k = functools.partial(_expected_kernel, kernel, bandwidth=bw, d=d)
    return k(mx, cx, mx, cx) + k(my, cy, my, cy) - 2.0 * k(mx, cx, my, cy)


# --- block sums: one pass over the kernel serves the estimate and its jackknife ----------

# Rows of the kernel evaluated at a time by the block sums: memory is O(tile x n), never a
# whole n x n matrix (at n = 10,000 three of those are 2.4 GB).
BLOCK_SUM_TILE = 1024


def _host_kernel(kernel: str, a, b, sq_a, sq_b, bandwidth, out):
    if kernel == "cubic":
        np.matmul(a, b.T, out=out)
        out /= a.shape[1]
        out += 1.0
        np.power(out, 3, out=out)
    else:
        _prdc.host_sq_dist(a, sq_a, b, sq_b, out=out)
        out /= -2.0 * bandwidth**2
        np.exp(out, out=out)
    return out


def _one_hot(blocks, count: int):
    return (np.asarray(blocks)[:, None] == np.arange(count)[None, :]).astype(np.float64)


def host_block_sums(kernel: str, a, blocks_a, b=None, blocks_b=None, bandwidth: float = 1.0):
    """``S[p, q] = sum_{i in block p, j in block q} k(a_i, b_j)`` (``b`` omitted: ``a`` with
    itself, computing only the tiles on or above the diagonal), and for ``a`` with itself
    the per-block diagonal sums ``sum_{i in p} k(a_i, a_i)``.

    ``blocks_*`` give each row's block (``0 .. J - 1``, any order). The kernel is evaluated
    ``BLOCK_SUM_TILE`` rows at a time and reduced at once by one-hot products (``J / d`` of
    the kernel's own flops), so every jackknife deletion of a block then costs ``O(J)``.
    """
    a = np.asarray(a, dtype=np.float64)
    same = b is None
    b, blocks_b = (a, blocks_a) if same else (np.asarray(b, dtype=np.float64), blocks_b)
    ja, jb = int(np.max(blocks_a)) + 1, int(np.max(blocks_b)) + 1
    ha, hb = _one_hot(blocks_a, ja), _one_hot(blocks_b, jb)
    sq_a, sq_b = np.sum(a * a, axis=1), np.sum(b * b, axis=1)
    sums = np.zeros((ja, jb))
    buffer = np.empty(min(BLOCK_SUM_TILE, a.shape[0]) * b.shape[0])
    for r0 in range(0, a.shape[0], BLOCK_SUM_TILE):
        r1 = min(a.shape[0], r0 + BLOCK_SUM_TILE)
        c0 = r0 if same else 0  # with itself: the tile's own square and everything right of it
        k = _host_kernel(kernel, a[r0:r1], b[c0:], sq_a[r0:r1], sq_b[c0:], bandwidth,
                         buffer[: (r1 - r0) * (b.shape[0] - c0)].reshape(r1 - r0, b.shape[0] - c0))
        part = ha[r0:r1].T @ (k @ hb[c0:])
        if same:
            upper = ha[r0:r1].T @ (k[:, r1 - r0:] @ hb[r1:])  # strictly above the diagonal tile
            part += upper.T
        sums += part
    if not same:
        return sums
    diag = ha.T @ np.asarray(_kernel_diag(kernel, a, sq_a, bandwidth))
    return sums, diag


def host_mmd2_jackknife(kernel: str, x, blocks_x, y, blocks_y, bandwidth: float = 1.0):
    """The unbiased MMD^2 of ``x`` and ``y`` and its delete-one-block values.

    Returns ``(estimate, leave_x (J_x,), leave_y (J_y,))``, where ``leave_x[p]`` is the
    statistic without ``x``'s block ``p``: from the block sums of the three kernels, with
    ``sum_{i != j, i, j not in p} = S - 2 S[p, :] + S[p, p] - (D - D[p])``.
    """
    s_xx, d_x = host_block_sums(kernel, x, blocks_x, bandwidth=bandwidth)
    s_yy, d_y = host_block_sums(kernel, y, blocks_y, bandwidth=bandwidth)
    s_xy = host_block_sums(kernel, x, blocks_x, y, blocks_y, bandwidth=bandwidth)
    c_x = np.bincount(blocks_x, minlength=s_xx.shape[0]).astype(np.float64)
    c_y = np.bincount(blocks_y, minlength=s_yy.shape[0]).astype(np.float64)

    def within(s, d, c):  # off-diagonal sums and row counts: all rows, and without each block
        left = s.sum() - 2.0 * s.sum(axis=1) + np.diagonal(s) - (d.sum() - d)
        return s.sum() - d.sum(), left, c.sum(), c.sum() - c

    xx, xx_left, m, m_left = within(s_xx, d_x, c_x)
    yy, yy_left, n, n_left = within(s_yy, d_y, c_y)
    xy = s_xy.sum()
    xy_left_x, xy_left_y = xy - s_xy.sum(axis=1), xy - s_xy.sum(axis=0)

    def value(k_xx, m_, k_yy, n_, k_xy):
        return k_xx / (m_ * (m_ - 1.0)) + k_yy / (n_ * (n_ - 1.0)) - 2.0 * k_xy / (m_ * n_)

    return (value(xx, m, yy, n, xy), value(xx_left, m_left, yy, n, xy_left_x),
            value(xx, m, yy_left, n_left, xy_left_y))
