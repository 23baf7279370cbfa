r"""Per-group evaluation with bootstrap intervals, batched over groups and replicates.

Every metric is rewritten as a function of *frequency weights* on a padded group array:
a group is a 0/1 mask, a bootstrap replicate is a vector of multinomial counts, a
jackknife block deletion is a mask with one block zeroed. So one compiled function,
``vmap``-ed over replicate weights and mapped over groups, gives the estimate, the
bootstrap distribution and the jackknife values of every group at once.

Group sizes differ; rows are padded to the largest group with weight 0, so every group
has the same shapes and nothing recompiles. For the Frechet distance with groups smaller
than the embedding dimension (the usual audit: a few hundred faces per group, d = 512 to
2048) the work moves to ``n x n`` Gram matrices computed once per group, after which a
replicate costs ``O(n^2)`` plus an ``n x n`` singular value problem, independent of ``d``.

Bootstrap: the two sets of a two-sample metric are resampled independently within the
group. Replicates are recentred on the bootstrap world's truth (the metric evaluated at
the group's empirical distributions), because FD and MMD estimators are biased or
bias-corrected: resampled sets have duplicated rows, which inflates FD replicates by
about the finite-sample bias; ``theta* - T(F_hat)`` mimics ``theta_hat - T(F)`` instead. PRDC is bootstrapped conditionally on its k-NN radii (the radii come from the whole
group; replicates resample which points are scored), which avoids the radius collapse
that duplicated points cause; say so when reporting its intervals.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _bootstrap, _frechet, _linalg, _mmd, _prdc, _validate, _vendi
from ._typing import Array, PRNGKey

GROUP_SEPARATOR = " x "


class GroupEstimates(NamedTuple):
    """One metric per group with its bootstrap interval.

    Attributes:
        groups: group names (intersections joined with ``" x "``).
        n_x, n_y: rows of each set in each group (``n_y`` is 0 for one-sample metrics).
        estimate: ``(G,)`` value on the group's data.
        low, high: ``(G,)`` interval ends.
        replicates: ``(G, B)`` bootstrap values (empty second axis when B = 0).
    """

    groups: tuple[str, ...]
    n_x: np.ndarray
    n_y: np.ndarray
    estimate: Array
    low: Array
    high: Array
    replicates: Array


def group_labels(labels, name: str = "labels") -> np.ndarray:
    """Normalise labels to strings; a tuple/list of arrays makes their intersection."""
    if isinstance(labels, (tuple, list)) and labels and not np.isscalar(labels[0]):
        parts = [group_labels(p, name) for p in labels]
        if len({p.shape for p in parts}) != 1:
            raise ValueError(f"{name}: the label arrays of an intersection differ in length")
        return np.array([GROUP_SEPARATOR.join(row) for row in zip(*parts)], dtype=object)
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one label per row (1-D), got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} has missing labels in rows {np.flatnonzero(np.isnan(arr))[:5].tolist()}")
    if arr.dtype == object and any(v is None for v in arr):
        raise ValueError(f"{name} has missing (None) labels")
    return arr.astype(str).astype(object)


def _padded(x: np.ndarray, labels: np.ndarray, groups, n_max: int):
    d = x.shape[1]
    out = np.zeros((len(groups), n_max, d), dtype=np.float64)
    counts = np.zeros(len(groups), dtype=np.int64)
    for gi, g in enumerate(groups):
        rows = np.flatnonzero(labels == g)
        out[gi, : rows.size] = x[rows]
        counts[gi] = rows.size
    return jnp.asarray(out), jnp.asarray(counts)


# --- weighted metric kernels on one padded group ---------------------------------------


def _fd_gram(x, wx, y, wy, unbiased: bool):
    """FD of weighted sets through ``n x n`` Gram matrices (no d x d work)."""
    gxx, gyy, gxy = x @ x.T, y @ y.T, x @ y.T
    return _fd_from_grams(gxx, gyy, gxy, wx, wy, unbiased)


def _fd_from_grams(gxx, gyy, gxy, wx, wy, unbiased: bool, plugin: bool = False):
    """FD of weighted sets from ``n x n`` Gram matrices (no ``d x d`` work).

    ``plugin=True`` gives the FD of the weighted empirical distributions themselves
    (covariances normalised by ``sum(w)``, no bias correction): the bootstrap world's
    true value, on which replicates are recentred.
    """
    w_x, w_y = wx.sum(), wy.sum()
    dof_x, dof_y = (w_x, w_y) if plugin else (w_x - 1.0, w_y - 1.0)
    px, py = wx / w_x, wy / w_y
    mx2, my2, mxy = px @ gxx @ px, py @ gyy @ py, px @ gxy @ py
    tr_x = (wx @ jnp.diag(gxx) - w_x * mx2) / dof_x
    tr_y = (wy @ jnp.diag(gyy) - w_y * my2) / dof_y
    a, b = gxy @ py, px @ gxy
    centred = gxy - a[:, None] - b[None, :] + mxy  # (x_i - mean_x) . (y_j - mean_y)
    cross = jnp.sqrt(wx)[:, None] * centred * jnp.sqrt(wy)[None, :] / jnp.sqrt(dof_x * dof_y)
    r = _linalg.singular_values(cross)
    return _frechet._assemble(mx2 + my2 - 2.0 * mxy, tr_x, tr_y, r, w_x, w_y, unbiased and not plugin)


def _weighted_stats(x, w, plugin: bool):
    w_sum = w.sum()
    mean = (w @ x) / w_sum
    scatter = _linalg.gram(jnp.sqrt(w)[:, None] * (x - mean))
    # _fd_from_stats divides by count - 1; a plug-in covariance divides by count.
    scale = jnp.where(plugin, (w_sum - 1.0) / w_sum, 1.0)
    return _frechet.GaussianStats(w_sum, mean, scatter * scale)


def _fd_stats(x, wx, y, wy, unbiased: bool, plugin: bool = False):
    a, b = _weighted_stats(x, wx, plugin), _weighted_stats(y, wy, plugin)
    return _frechet._fd_from_stats(a, b, unbiased and not plugin)


class _Metric(NamedTuple):
    two_sample: bool
    # prepare(x, y, mask_x, mask_y) -> per-group cache;
    # replicate(cache, wx, wy, plugin) -> scalar. With plugin=True it returns the metric's
    # value *at* the weighted empirical distributions (the truth of the bootstrap world),
    # which differs from the estimator for bias-corrected or unbiased statistics.
    prepare: object
    replicate: object


def _metric(name: str, d: int, n_max: int, options: dict) -> _Metric:
    unbiased = name == "fd_unbiased"
    if name in ("fd", "fd_unbiased"):
        if n_max <= d:
            return _Metric(
                True,
                lambda x, y, mx, my: (x @ x.T, y @ y.T, x @ y.T),
                lambda c, wx, wy, plugin: _fd_from_grams(*c, wx, wy, unbiased, plugin),
            )
        return _Metric(
            True,
            lambda x, y, mx, my: (x, y),
            lambda c, wx, wy, plugin: _fd_stats(c[0], wx, c[1], wy, unbiased, plugin),
        )
    if name in ("mmd2", "cmmd"):
        kernel = "cubic" if name == "mmd2" else "gaussian"
        bw = float(options.get("bandwidth", 10.0))

        def kernels(x, y, mx, my):
            sx, sy = jnp.sum(x * x, 1), jnp.sum(y * y, 1)
            kxx = _mmd._kernel_block(kernel, x, x, sx, sx, bw)
            kyy = _mmd._kernel_block(kernel, y, y, sy, sy, bw)
            kxy = _mmd._kernel_block(kernel, x, y, sx, sy, bw)
            return kxx, kyy, kxy

        def mmd(c, wx, wy, plugin):
            kxx, kyy, kxy = c
            m, n = wx.sum(), wy.sum()
            # The unbiased U-statistic, or (plug-in) the V-statistic of the empirical
            # distributions, which keeps the diagonal.
            keep_diag = jnp.where(plugin, 0.0, 1.0)
            s_xx = wx @ kxx @ wx - keep_diag * (wx @ jnp.diag(kxx))
            s_yy = wy @ kyy @ wy - keep_diag * (wy @ jnp.diag(kyy))
            pairs_x = jnp.where(plugin, m * m, m * (m - 1.0))
            pairs_y = jnp.where(plugin, n * n, n * (n - 1.0))
            value = s_xx / pairs_x + s_yy / pairs_y - 2.0 * (wx @ kxy @ wy) / (m * n)
            return value * (1000.0 if name == "cmmd" else 1.0)

        return _Metric(True, kernels, mmd)
    if name == "vendi":
        q = float(options.get("q", 1.0))
        return _Metric(False, lambda x, y, mx, my: x, lambda c, wx, wy, plugin: _vendi._vendi_weighted(c, wx, 1.0, q, "cosine"))
    if name in ("precision", "recall", "density", "coverage"):
        k = int(options.get("k", 5))

        def indicators(x, y, mx, my):
            # Per-point PRDC contributions with radii from the whole (unpadded) group.
            big = jnp.inf
            sx, sy = jnp.sum(x * x, 1), jnp.sum(y * y, 1)
            dxx = jnp.where(mx[None, :], _prdc._sq_dist(x, sx, x, sx), big)
            dyy = jnp.where(my[None, :], _prdc._sq_dist(y, sy, y, sy), big)
            r2x = _prdc._kth_smallest(dxx, k)
            r2y = _prdc._kth_smallest(dyy, k)
            dxy = _prdc._sq_dist(x, sx, y, sy)  # real rows, fake columns
            in_real = (dxy < r2x[:, None]) & mx[:, None] & my[None, :]
            in_fake = (dxy < r2y[None, :]) & mx[:, None] & my[None, :]
            nearest = jnp.where(my[None, :], dxy, big).min(axis=1)
            per_real = {"recall": in_fake.any(axis=1), "coverage": nearest < r2x}
            per_fake = {"precision": in_real.any(axis=0), "density": in_real.sum(axis=0) / k}
            return per_real.get(name), per_fake.get(name)

        def mean(c, wx, wy, plugin):
            per_real, per_fake = c
            if per_real is not None:
                return (wx @ per_real) / wx.sum()
            return (wy @ per_fake) / wy.sum()

        return _Metric(True, indicators, mean)
    raise ValueError(f"unknown metric {name!r}; per-group metrics: {GROUP_METRICS}")


GROUP_METRICS = ("fd", "fd_unbiased", "mmd2", "cmmd", "precision", "recall", "density", "coverage", "vendi")


def _resample_weights(key, n, n_max, num):
    """``num`` multinomial count vectors over the first ``n`` of ``n_max`` rows."""
    draws = jax.random.randint(key, (num, n_max), 0, jnp.maximum(n, 1))
    live = (jnp.arange(n_max) < n).astype(jnp.float64)
    return jax.vmap(lambda u: jnp.zeros(n_max).at[u].add(live))(draws)


def _jackknife_weights(n, n_max, blocks: int):
    idx = jnp.arange(n_max)
    j = jnp.minimum(blocks, n)
    block_of_row = (idx * j) // jnp.maximum(n, 1)
    live = idx < n
    masks = jax.vmap(lambda b: (live & (block_of_row != b)).astype(jnp.float64))(jnp.arange(blocks))
    # Blocks beyond j (tiny groups) repeat the full mask; they are dropped by `active`.
    active = jnp.arange(blocks) < j
    return masks, active


@functools.partial(jax.jit, static_argnames=("name", "num_bootstrap", "blocks", "options"))
def _evaluate(key, xs, nx, ys, ny, name, num_bootstrap, blocks, options):
    g, n_max_x, d = xs.shape
    n_max = max(n_max_x, ys.shape[1])
    metric = _metric(name, d, n_max, dict(options))

    def one_group(args):
        k, x, n_x, y, n_y = args
        mx = jnp.arange(x.shape[0]) < n_x
        my = jnp.arange(y.shape[0]) < n_y
        cache = metric.prepare(x, y, mx, my)
        rep = lambda wx, wy: metric.replicate(cache, wx, wy, False)  # noqa: E731
        full_x, full_y = mx.astype(jnp.float64), my.astype(jnp.float64)
        estimate = rep(full_x, full_y)
        plugin = metric.replicate(cache, full_x, full_y, True)
        kx, ky = jax.random.split(k)
        bx = _resample_weights(kx, n_x, x.shape[0], num_bootstrap)
        if metric.two_sample:
            by = _resample_weights(ky, n_y, y.shape[0], num_bootstrap)
        else:
            by = jnp.broadcast_to(full_y, (num_bootstrap, y.shape[0]))
        # Recentre: theta* - T(F_hat) mimics theta_hat - T(F), so shift the replicates
        # by the estimator's bias in the bootstrap world. Without this a raw FD
        # interval (positively biased statistic) can miss its own estimate entirely.
        replicates = jax.vmap(rep)(bx, by) - plugin + estimate
        jx, _ = _jackknife_weights(n_x, x.shape[0], blocks)
        jack_x = jax.vmap(lambda w: rep(w, full_y))(jx)
        if metric.two_sample:
            jy, _ = _jackknife_weights(n_y, y.shape[0], blocks)
            jack_y = jax.vmap(lambda w: rep(full_x, w))(jy)
        else:
            jack_y = jnp.zeros((0,))
        return estimate, replicates, jack_x, jack_y

    keys = jax.random.split(key, g)
    return jax.lax.map(one_group, (keys, xs, nx, ys, ny))


def by_group(
    metric: str,
    x,
    x_groups,
    y=None,
    y_groups=None,
    *,
    key: PRNGKey,
    num_bootstrap: int = 200,
    confidence: float = 0.95,
    interval: str = "basic",
    jackknife_blocks: int = 20,
    min_group_size: int = 2,
    **options,
) -> GroupEstimates:
    """Evaluate ``metric`` in every group, with bootstrap intervals.

    Args:
        metric: one of ``GROUP_METRICS``.
        x: ``(n_x, d)`` embeddings (the real/reference set of a two-sample metric, or the
            set scored by a one-sample metric such as ``"vendi"``).
        x_groups: ``(n_x,)`` labels, or a tuple of label arrays for intersections.
        y, y_groups: the generated set and its labels (two-sample metrics).
        key: PRNG key for the resampling.
        num_bootstrap: replicates per group (0: point estimates only).
        confidence: interval coverage.
        interval: ``"basic"`` (reflected percentile; right for biased statistics such as the
            raw FD), ``"percentile"``, or ``"bca"`` (jackknife acceleration with
            ``jackknife_blocks`` delete-block jackknife values per set; delete-one when a
            group has at most that many rows).
        min_group_size: smallest allowed group (per set).
        **options: metric options (``k`` for PRDC, ``q`` for Vendi, ``bandwidth`` for cmmd).

    Raises:
        ValueError: unknown metric or interval, a group present in one set only, a group
            smaller than ``min_group_size``, or any check of the embedding arrays.
    """
    if metric not in GROUP_METRICS:
        raise ValueError(f"unknown metric {metric!r}; per-group metrics: {GROUP_METRICS}")
    if interval not in _bootstrap.INTERVALS:
        raise ValueError(f"interval must be one of {_bootstrap.INTERVALS}, got {interval!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    _validate.key(key)
    num_bootstrap = _validate.positive_int(num_bootstrap, "num_bootstrap", minimum=0)
    blocks = _validate.positive_int(jackknife_blocks, "jackknife_blocks", minimum=2)
    two_sample = metric != "vendi"
    min_rows = int(options.get("k", 5)) + 1 if metric in ("precision", "recall", "density", "coverage") else 2
    min_group_size = max(min_group_size, min_rows)
    x = np.asarray(_validate.features(x, "x"), dtype=np.float64)
    lx = group_labels(x_groups, "x_groups")
    if lx.shape[0] != x.shape[0]:
        raise ValueError(f"x_groups has {lx.shape[0]} labels but x has {x.shape[0]} rows")
    if two_sample:
        if y is None or y_groups is None:
            raise ValueError(f"{metric} compares two sets: pass y and y_groups")
        y = np.asarray(_validate.features(y, "y"), dtype=np.float64)
        if y.shape[1] != x.shape[1]:
            raise ValueError(f"x has {x.shape[1]} feature columns but y has {y.shape[1]}")
        ly = group_labels(y_groups, "y_groups")
        if ly.shape[0] != y.shape[0]:
            raise ValueError(f"y_groups has {ly.shape[0]} labels but y has {y.shape[0]} rows")
        only_x = sorted(set(lx) - set(ly))
        only_y = sorted(set(ly) - set(lx))
        if only_x or only_y:
            raise ValueError(
                "every group needs rows in both sets: "
                + "; ".join(s for s in (f"only in x: {only_x}" if only_x else "", f"only in y: {only_y}" if only_y else "") if s)
            )
    else:
        y, ly = np.zeros((1, x.shape[1])), np.array(["_"], dtype=object)
    groups = tuple(sorted(set(lx)))
    for set_name, labels in (("x", lx), ("y", ly)) if two_sample else (("x", lx),):
        for g in groups:
            size = int(np.sum(labels == g))
            if size < min_group_size:
                raise ValueError(
                    f"group {g!r} has {size} row{'s' if size != 1 else ''} in {set_name}; "
                    f"{metric} needs at least {min_group_size} per group"
                )
    n_max_x = max(int(np.sum(lx == g)) for g in groups)
    xs, nx = _padded(x, lx, groups, n_max_x)
    if two_sample:
        ys, ny = _padded(y, ly, groups, max(int(np.sum(ly == g)) for g in groups))
    else:
        ys, ny = jnp.zeros((len(groups), 1, x.shape[1])), jnp.zeros(len(groups), jnp.int64)
    frozen = tuple(sorted(options.items()))
    estimate, replicates, jack_x, jack_y = _evaluate(key, xs, nx, ys, ny, metric, num_bootstrap, blocks, frozen)
    if num_bootstrap == 0:
        nan = jnp.full(len(groups), jnp.nan)
        low, high = nan, nan
    elif interval == "percentile":
        low, high = _bootstrap.percentile_interval(replicates, confidence)
    elif interval == "basic":
        low, high = _bootstrap.basic_interval(replicates, estimate, confidence)
    else:
        jk = [_active_jackknife(jack_x, nx, blocks)]
        if two_sample:
            jk.append(_active_jackknife(jack_y, ny, blocks))
        low, high = _bca_per_group(replicates, estimate, confidence, jk)
    return GroupEstimates(groups, np.asarray(nx), np.asarray(ny), estimate, low, high, replicates)


def _active_jackknife(jack, counts, blocks):
    return [jack[g, : min(blocks, int(counts[g]))] for g in range(jack.shape[0])]


def _bca_per_group(replicates, estimate, confidence, jackknives):
    lows, highs = [], []
    for g in range(replicates.shape[0]):
        lo, hi = _bootstrap.bca_interval(replicates[g], estimate[g], confidence, *[jk[g] for jk in jackknives])
        lows.append(lo)
        highs.append(hi)
    return jnp.stack(lows), jnp.stack(highs)


def values_by_group(
    values,
    groups,
    *,
    key: PRNGKey,
    num_bootstrap: int = 200,
    confidence: float = 0.95,
    min_group_size: int = 2,
) -> GroupEstimates:
    """Group means of per-item values (CLIP scores, similarities), with percentile intervals."""
    if not isinstance(values, (np.ndarray, jax.Array)) or values.ndim != 1:
        raise TypeError("values must be a 1-D numpy or JAX array (one value per item)")
    _validate.key(key)
    num_bootstrap = _validate.positive_int(num_bootstrap, "num_bootstrap", minimum=0)
    v = _validate.features(values[:, None], "values", min_rows=1)
    return _values_by_group(
        np.asarray(v, dtype=np.float64)[:, 0], group_labels(groups, "groups"), key, num_bootstrap, confidence, min_group_size
    )


def _values_by_group(v, labels, key, num_bootstrap, confidence, min_group_size):
    if labels.shape[0] != v.shape[0]:
        raise ValueError(f"groups has {labels.shape[0]} labels but there are {v.shape[0]} values")
    names = tuple(sorted(set(labels)))
    for g in names:
        size = int(np.sum(labels == g))
        if size < min_group_size:
            raise ValueError(f"group {g!r} has {size} values; need at least {min_group_size}")
    n_max = max(int(np.sum(labels == g)) for g in names)
    xs, nx = _padded(v[:, None], labels, names, n_max)
    keys = jax.random.split(key, len(names))

    @jax.jit
    def run(keys, xs, nx):
        def one(args):
            k, x, n = args
            live = (jnp.arange(x.shape[0]) < n).astype(jnp.float64)
            w = _resample_weights(k, n, x.shape[0], num_bootstrap)
            return (live @ x[:, 0]) / n, (w @ x[:, 0]) / n

        return jax.lax.map(one, (keys, xs, nx))

    estimate, replicates = run(keys, xs, nx)
    if num_bootstrap:
        low, high = _bootstrap.percentile_interval(replicates, confidence)
    else:
        low = high = jnp.full(len(names), jnp.nan)
    return GroupEstimates(names, np.asarray(nx), np.zeros(len(names), np.int64), estimate, low, high, replicates)


