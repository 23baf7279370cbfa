r"""Per-group evaluation with intervals, batched over groups and weightings.

Every metric (``_group_metrics``) is a function of *frequency weights* on a padded group
array: a group is a 0/1 mask, a random subset of a common size is a 0/1 mask, a jackknife
block deletion is a mask with one block zeroed, a bootstrap replicate is a vector of
multinomial counts. So one compiled function, mapped over groups and over weightings,
gives every group's estimate and the values its interval needs. Group sizes differ; rows
are padded to the largest group with weight 0, so nothing recompiles.

**What is estimated.** Size-independent metrics (FD, MMD^2) estimate the population value
between the group's two distributions, from all of the group's rows. Size-dependent ones
(Vendi, PRDC: their value drifts with ``n`` even when nothing else changes) estimate
``theta_m = E[T(m rows)]`` at a *common* size ``m`` shared by all groups, by averaging
``T`` over ``R`` random ``m``-subsets of each group (an incomplete U-statistic; a group of
exactly ``m`` rows is evaluated once, on itself). So two groups with equal distributions
get equal estimands whatever their sizes.

**Intervals.** The default is the delete-block jackknife (``_intervals``): 0/1 weights,
no duplicated rows, so the statistic is never evaluated on data it would not see. For a
subset average each jackknife replicate redraws its subsets from the remaining rows with
the same random ranks (common random numbers), and the Monte Carlo variance of the subset
average, ``s^2 / R``, is added. The bootstrap intervals (basic, percentile, BCa) stay
available for size-independent metrics; their replicates are recentred on the bootstrap
world's truth (``plugin``), because FD and MMD estimators are biased or bias-corrected
(BCa too: its bias correction is measured against that truth).
``experiments/interval_coverage.py`` measures the coverage of each.

**One pass per group on the CPU.** Evaluating each weighting from scratch repeats the
group's expensive work (kernel, distance and scatter products) once per weighting. On the
host a metric may share it instead, with the same weightings and random ranks, so the
numbers agree with the compiled path to rounding (tested): MMD^2's and FD's jackknives
come from block sums and block moments (``host_jackknife``), PRDC's subsets and
half-samples from one sorted k-NN list per set, Vendi's from Gram downdates
(``host_subsets``). Groups are then evaluated one at a time, so memory follows the
largest group, and a pooled set beyond ``POOLED_MAX_ROWS`` is measured in random parts
(``pooled``). The compiled path remains for accelerators and bootstrap replicates.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _group_metrics, _intervals, _linalg, _validate
from ._typing import PRNGKey

GROUP_SEPARATOR = " x "
GROUP_METRICS = _group_metrics.GROUP_METRICS
MIN_BOOTSTRAP = 20  # fewer replicates cannot place a 95% interval's ends at all
MAX_BOOTSTRAP = 1_000_000  # every group's replicates are returned: G x B float64


class GroupEstimates(NamedTuple):
    """One metric output per group with its interval.

    Attributes:
        metric: the output's name (``"fd_unbiased"``, ``"precision"``, ...).
        groups: group names (intersections joined with ``" x "``).
        n_x, n_y: rows of each set in each group (``n_y`` is 0 for one-sample metrics).
        size_x, size_y: the sample size at which the estimand is defined: the common size
            for size-dependent metrics, else the group's own ``n_x``/``n_y``.
        estimate, se, df: ``(G,)`` estimate, standard error and its degrees of freedom.
        low, high: ``(G,)`` interval ends (NaN without an interval).
        bias: ``(G,)`` jackknife estimate of the estimator's bias (NaN where the estimand
            is at a common size below the group's own).
        interval: ``"jackknife"``, ``"basic"``, ``"percentile"`` or ``"bca"``.
        confidence: the interval's nominal coverage.
        replicates: ``(G, B)`` recentred bootstrap values (empty second axis without them).
    """

    metric: str
    groups: tuple[str, ...]
    n_x: np.ndarray
    n_y: np.ndarray
    size_x: np.ndarray
    size_y: np.ndarray
    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    low: np.ndarray
    high: np.ndarray
    bias: np.ndarray
    interval: str
    confidence: float
    replicates: np.ndarray


class Contrast(NamedTuple):
    """The difference ``a - b`` of two groups' estimates (independent groups)."""

    a: str
    b: str
    difference: float
    se: float
    df: float
    low: float
    high: float


def group_labels(labels, name: str = "labels") -> np.ndarray:
    """Normalise labels to strings; a tuple/list of arrays makes their intersection."""
    if isinstance(labels, (tuple, list)) and labels and not np.isscalar(labels[0]):
        parts = [group_labels(p, name) for p in labels]
        if len({p.shape for p in parts}) != 1:
            raise ValueError(f"{name}: the label arrays of an intersection differ in length")
        rows = list(zip(*parts))
        joined = {}
        for row in dict.fromkeys(rows):  # distinct intersections must stay distinct once printed
            other = joined.setdefault(GROUP_SEPARATOR.join(row), row)
            if other != row:
                raise ValueError(f"{name}: the intersections {other} and {row} would both be named "
                                 f"{GROUP_SEPARATOR.join(row)!r}; rename a label so that no group merges with another")
        return np.array([GROUP_SEPARATOR.join(row) for row in rows], dtype=object)
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


# --- weightings of one padded group -----------------------------------------------------


def _resample_weights(key, n, n_max, num):
    """``num`` multinomial count vectors over the first ``n`` of ``n_max`` rows."""
    draws = jax.random.randint(key, (num, n_max), 0, jnp.maximum(n, 1))
    live = (jnp.arange(n_max) < n).astype(jnp.float64)
    return jax.vmap(lambda u: jnp.zeros(n_max).at[u].add(live))(draws)


def _block_of_row(n, n_max: int, blocks: int):
    """Jackknife block of each live row (``min(blocks, n)`` near-equal blocks) and the
    number of active blocks."""
    j = jnp.minimum(blocks, n)
    return (jnp.arange(n_max) * j) // jnp.maximum(n, 1), j


def _smallest(u, size):
    """0/1 weights on the ``size`` rows with the smallest ``u`` (``inf`` never chosen)."""
    rank = jnp.argsort(jnp.argsort(u, axis=-1), axis=-1)
    return ((rank < size) & jnp.isfinite(u)).astype(jnp.float64)


def _subset_masks(u_sub, u_del, n, size, n_max: int, blocks: int, delete: float):
    """Masks of ``R`` random ``size``-subsets of the live rows (``(R, n_max)``) and, for each
    jackknife replicate, the same subsets redrawn without its deleted rows (``(J, R, n_max)``,
    common random ranks; ``min(size, rows left)`` rows each). The deleted rows are block ``j``
    (``delete == 0``) or a random ``ceil(delete * n)`` rows. The ranks are the uniforms
    ``u_sub`` (``(R, n_max)``) and, for random deletions, ``u_del`` (``(J, n_max)``)."""
    live = jnp.arange(n_max) < n
    u = jnp.where(live[None, :], u_sub, jnp.inf)
    full = _smallest(u, size)
    if delete:
        v = jnp.where(live[None, :], u_del, jnp.inf)
        in_block = _smallest(v, jnp.ceil(delete * n)).astype(bool)
        active = blocks
    else:
        block, active = _block_of_row(n, n_max, blocks)
        in_block = block[None, :] == jnp.arange(blocks)[:, None]  # (J, n_max)
    left = n - jnp.sum(in_block & live[None, :], axis=1)  # rows outside each block
    u_jack = jnp.where(in_block[:, None, :], jnp.inf, u[None])
    jack = jax.vmap(_smallest)(u_jack, jnp.minimum(size, left))
    return full, jack, active


def _rank_uniforms(rng: np.random.Generator, groups: int, n_max: int, subsamples: int, blocks: int,
                   delete: float) -> tuple:
    """Per group, the uniforms that rank rows for subsets (``(G, R, n_max)``) and random
    deletions (``(G, J, n_max)``; empty for block deletion).

    Drawn on the host (from the caller's key) rather than inside the compiled evaluation:
    JAX's threefry generator took ~1 s of the ~2.5 s it took to compile each evaluation,
    and an audit compiles one per metric and group layout; the numbers cost nothing to pass."""
    return rng.random((groups, subsamples, n_max)), rng.random((groups, blocks if delete else 0, n_max))


# Weightings are evaluated in batches whose working set (a few n x n arrays each) stays
# around this many bytes, so memory does not grow with the number of weightings.
BATCH_BYTES = 1 << 27
BOOTSTRAP_CHUNK = 256  # replicates drawn and evaluated at a time


def _batch(n_max_x: int, n_max_y: int, d: int) -> int:
    per = 8 * 4 * max(n_max_x, n_max_y) * max(n_max_x, n_max_y, d)
    return int(min(64, max(1, BATCH_BYTES // per)))


def _on_support(metric, cache, support_x, support_y):
    """``metric.value`` of one subset or jackknife weighting. Given a static ``support`` (the
    most rows to which any of these weightings gives weight), the metric sees only the rows
    with weight (``metric.restrict``): a common size of 100 in a group padded to 1,000 rows
    then costs what 100 rows cost. The dropped rows have weight 0, so the value is the same."""
    if support_x is None and support_y is None:
        return lambda w: metric.value(cache, w[0], w[1], False)

    def value(w):
        wx, wy = w
        rx = None if support_x is None else jax.lax.top_k(wx, support_x)[1]
        ry = None if support_y is None else jax.lax.top_k(wy, support_y)[1]
        return metric.value(metric.restrict(cache, rx, ry), wx if rx is None else wx[rx],
                            wy if ry is None else wy[ry], False)

    return value


def _evaluate_impl(key, uniforms, xs, nx, sx, ys, ny, sy, metric, num_bootstrap: int, blocks: int, delete: float,
                   support_x: int | None = None, support_y: int | None = None):
    n_max_x, n_max_y = xs.shape[1], ys.shape[1]
    batch = _batch(support_x or n_max_x, support_y or n_max_y, xs.shape[2])
    subsamples = uniforms[0].shape[1]

    def one_group(args):
        k, (u_sub_x, u_del_x, u_sub_y, u_del_y), x, n_x, s_x, y, n_y, s_y = args
        mx, my = jnp.arange(n_max_x) < n_x, jnp.arange(n_max_y) < n_y
        cache = metric.prepare(x, y, mx, my)
        full_x, jack_x, _ = _subset_masks(u_sub_x, u_del_x, n_x, s_x, n_max_x, blocks, delete)
        if metric.two_sample:
            full_y, jack_y, _ = _subset_masks(u_sub_y, u_del_y, n_y, s_y, n_max_y, blocks, delete)
        else:
            full_y = jnp.broadcast_to(my.astype(jnp.float64), (subsamples, n_max_y))
            jack_y = jnp.zeros((0, subsamples, n_max_y))
        # Every weighting as one flat list: R subsets, then J x R with an x block left out,
        # then J x R with a y block left out.
        j_y = jack_y.shape[0]
        wx = jnp.concatenate([full_x, jack_x.reshape(-1, n_max_x), jnp.tile(full_x, (j_y, 1))])
        wy = jnp.concatenate([full_y, jnp.tile(full_y, (blocks, 1)), jack_y.reshape(-1, n_max_y)])
        values = jax.lax.map(_on_support(metric, cache, support_x, support_y), (wx, wy), batch_size=batch)
        r = subsamples
        subsets = values[:r]
        jk_x = values[r:r + blocks * r].reshape(blocks, r, -1).mean(axis=1)
        jk_y = values[r + blocks * r:].reshape(j_y, r, -1).mean(axis=1) if j_y else jnp.zeros((0, values.shape[1]))
        estimate = subsets.mean(axis=0)
        if num_bootstrap:
            live_x, live_y = mx.astype(jnp.float64), my.astype(jnp.float64)
            chunk = min(num_bootstrap, BOOTSTRAP_CHUNK)
            chunks = -(-num_bootstrap // chunk)

            def replicates(k):  # draw a chunk of count vectors and evaluate it: memory O(chunk n)
                kx, ky = jax.random.split(k)
                bx = _resample_weights(kx, n_x, n_max_x, chunk)
                by = (_resample_weights(ky, n_y, n_max_y, chunk) if metric.two_sample
                      else jnp.broadcast_to(live_y, (chunk, n_max_y)))
                return jax.lax.map(lambda w: metric.value(cache, w[0], w[1], False), (bx, by), batch_size=batch)

            boot = jax.lax.map(replicates, jax.random.split(k, chunks)).reshape(chunks * chunk, -1)[:num_bootstrap]
            plugin = metric.value(cache, live_x, live_y, True)
        else:
            boot = jnp.zeros((0, estimate.shape[0]))
            plugin = jnp.zeros_like(estimate)
        return estimate, subsets, jk_x, jk_y, boot, plugin

    # The PRNG runs in the compiled program only where bootstrap counts are drawn.
    keys = jax.random.split(key, xs.shape[0]) if num_bootstrap else jnp.zeros(xs.shape[0])
    return jax.lax.map(one_group, (keys, uniforms, xs, nx, sx, ys, ny, sy))


_evaluate = jax.jit(_evaluate_impl, static_argnames=("metric", "num_bootstrap", "blocks", "delete", "support_x",
                                                    "support_y"))


def _common_sizes(common_size, metric, counts_x, counts_y, two_sample):
    """Per set, the size every group is evaluated at (None: each group's own)."""
    if common_size is None:
        common_size = "smallest" if metric.size_dependent else "own"
    if common_size == "own":
        if metric.size_dependent and (len(set(counts_x)) > 1 or (two_sample and len(set(counts_y)) > 1)):
            raise ValueError(
                f"{'/'.join(metric.outputs)} depends on the sample size and the groups differ in size; "
                "compare them at a common size (common_size='smallest' or a number)"
            )
        return None, None
    if common_size == "smallest":
        return min(counts_x), (min(counts_y) if two_sample else None)
    sizes = common_size if isinstance(common_size, tuple) else (common_size, common_size)
    size_x, size_y = (_validate.positive_int(s, "common_size", minimum=2) for s in sizes)
    for set_name, size, counts in (("x", size_x, counts_x), ("y", size_y, counts_y)) if two_sample else (("x", size_x, counts_x),):
        if size > min(counts):
            raise ValueError(f"common_size {size} exceeds the smallest group's {min(counts)} rows in {set_name}")
    return size_x, (size_y if two_sample else None)


@dataclasses.dataclass(frozen=True)
class Scheme:
    """How ``by_group`` puts an interval of the same estimand on each group's number.

    Attributes:
        interval: ``"jackknife"`` (delete-block or delete-d, t; the default), or the
            bootstrap's ``"basic"``, ``"percentile"``, ``"bca"`` (size-independent metrics).
        confidence: the interval's coverage.
        bootstrap: replicates (needed, at least 20, by bootstrap intervals).
        blocks: jackknife replicates per set (fewer blocks when a group has fewer rows).
        delete: share of the rows a jackknife replicate deletes (None: the metric's own,
            0 = one of ``blocks`` blocks, PRDC's 0.5 = random half-samples).
        common_size: for size-dependent metrics, the size every group is evaluated at:
            ``"smallest"`` (the default: the smallest group's, per set), a number, a pair
            ``(size_x, size_y)``; ``"own"`` evaluates each group at its own size.
        subsamples: random subsets averaged per group at a common size.
        min_group_size: the smallest group allowed (per set).
    """

    interval: str = "jackknife"
    confidence: float = 0.95
    bootstrap: int = 0
    blocks: int = 20
    delete: float | None = None
    common_size: object = None
    subsamples: int = 8
    min_group_size: int = 2

    def __post_init__(self):
        if self.interval not in _intervals.INTERVALS:
            raise ValueError(f"interval must be one of {_intervals.INTERVALS}, got {self.interval!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")
        _validate.positive_int(self.bootstrap, "num_bootstrap", minimum=0)
        _validate.positive_int(self.blocks, "jackknife_blocks", minimum=2)
        _validate.positive_int(self.subsamples, "subsamples")
        if self.delete is not None and not 0.0 <= self.delete < 1.0:
            raise ValueError(f"jackknife_delete must lie in [0, 1) (0: delete-block), got {self.delete}")
        if self.interval in _intervals.BOOTSTRAP_INTERVALS:
            if self.bootstrap < MIN_BOOTSTRAP:
                raise ValueError(f"a {self.interval} bootstrap interval needs num_bootstrap >= {MIN_BOOTSTRAP}, "
                                 f"got {self.bootstrap}")
            if self.bootstrap > MAX_BOOTSTRAP:
                raise ValueError(f"num_bootstrap must be at most {MAX_BOOTSTRAP:,} (every group's replicates are kept "
                                 f"in memory), got {self.bootstrap:,}")

    @classmethod
    def from_options(cls, interval="jackknife", confidence=0.95, num_bootstrap=0, jackknife_blocks=20,
                     jackknife_delete=None, common_size=None, subsamples=8, min_group_size=2) -> Scheme:
        """The scheme of ``by_group``'s keyword options (their historical names)."""
        return cls(interval, confidence, num_bootstrap, jackknife_blocks,
                   None if jackknife_delete is None else float(jackknife_delete), common_size, subsamples,
                   min_group_size)

    def for_metric(self, metric) -> Scheme:
        """This scheme with the metric's own deletion share, refused where it cannot hold."""
        if self.interval in _intervals.BOOTSTRAP_INTERVALS and metric.size_dependent:
            raise ValueError(f"{self.interval} bootstrap intervals duplicate rows, which shrinks "
                             f"{'/'.join(metric.outputs)}; use interval='jackknife'")
        return dataclasses.replace(self, delete=metric.jackknife_delete if self.delete is None else self.delete,
                                   min_group_size=max(self.min_group_size, metric.min_rows()))

    @property
    def replicates(self) -> int:
        return self.bootstrap if self.interval in _intervals.BOOTSTRAP_INTERVALS else 0


# Interval schemes in parts, composed the way optax chains transformations:
#   chain(Jackknife(blocks=40), CommonSize(200))  or  chain(Bootstrap("bca", 2000))
# Each part sets its own fields of a Scheme; chain applies them in order and the Scheme
# validates the result once.


@dataclasses.dataclass(frozen=True)
class Jackknife:
    """Delete-block jackknife t interval: ``blocks`` replicates per set, each deleting one
    block (or a ``delete`` share of the rows; None: the metric's own)."""

    blocks: int = 20
    delete: float | None = None

    def fields(self) -> dict:
        return {"interval": "jackknife", "blocks": self.blocks, "delete": self.delete}


@dataclasses.dataclass(frozen=True)
class HalfSamples:
    """Delete-half jackknife (random half-samples, ``replicates`` per set): what PRDC's
    k-NN radii need, since deleting a small block barely moves them."""

    replicates: int = 20

    def fields(self) -> dict:
        return {"interval": "jackknife", "blocks": self.replicates, "delete": 0.5}


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """Bootstrap interval (``kind``: basic, percentile or bca) from ``replicates`` resamples;
    for size-independent metrics only (duplicated rows shrink k-NN radii and spectra)."""

    kind: str = "bca"
    replicates: int = 2000

    def fields(self) -> dict:
        return {"interval": self.kind, "bootstrap": self.replicates}


@dataclasses.dataclass(frozen=True)
class CommonSize:
    """Size-dependent metrics at one size for every group (``"smallest"``, a number, a pair
    ``(size_x, size_y)``, or ``"own"``: each group at its own size), averaged over
    ``subsamples`` random subsets."""

    size: object = "smallest"
    subsamples: int = 8

    def fields(self) -> dict:
        return {"common_size": self.size, "subsamples": self.subsamples}


def chain(*parts, confidence: float = 0.95, min_group_size: int = 2) -> Scheme:
    """The ``Scheme`` of ``parts`` (at most one interval part and one ``CommonSize``),
    validated once; parts left out keep the defaults (jackknife, the smallest group's size)."""
    unknown = [part for part in parts if not isinstance(part, (Jackknife, HalfSamples, Bootstrap, CommonSize))]
    if unknown:
        raise TypeError(f"scheme parts are Jackknife, HalfSamples, Bootstrap and CommonSize, got {unknown[0]!r}")
    intervals = sum(isinstance(part, (Jackknife, HalfSamples, Bootstrap)) for part in parts)
    if intervals > 1 or sum(isinstance(part, CommonSize) for part in parts) > 1:
        raise ValueError("a scheme has one interval part and at most one CommonSize, got "
                         f"{[type(part).__name__ for part in parts]}")
    fields: dict = {"confidence": confidence, "min_group_size": min_group_size}
    for part in parts:
        fields.update(part.fields())
    return Scheme(**fields)


_SCHEME_OPTIONS = ("interval", "confidence", "num_bootstrap", "jackknife_blocks", "jackknife_delete", "common_size",
                   "subsamples", "min_group_size")


def _resolve_scheme(scheme, options: dict) -> Scheme:
    """The scheme of a call: given (a ``Scheme`` or one part), or from keyword options."""
    if scheme is not None and options:
        raise ValueError(f"pass the interval options in the scheme or as keywords, not both: {sorted(options)}")
    if scheme is None:
        return Scheme.from_options(**options)
    return scheme if isinstance(scheme, Scheme) else chain(scheme)


def _split_options(metric, options: dict):
    """The metric object (options ``k``, ``q``, ``bandwidth``; unknown ones are refused
    there) and the interval scheme's keyword options."""
    interval_options = {k: options.pop(k) for k in _SCHEME_OPTIONS if k in options}
    return _group_metrics.group_metric(metric, **options), interval_options


def _host_rng(key) -> np.random.Generator:
    """A numpy generator seeded by a JAX key (random ranks and parts drawn on the host)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key), dtype=np.uint32).ravel().tolist())


class _Grouped(NamedTuple):
    """The checked sets of one ``by_group`` call: rows, labels, group names, per-group row
    counts and the common sizes (None: each group's own)."""

    x: np.ndarray
    lx: np.ndarray
    y: np.ndarray | None
    ly: np.ndarray | None
    groups: tuple[str, ...]
    counts_x: list[int]
    counts_y: list[int]
    size_x: int | None
    size_y: int | None

    def sizes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        nx, ny = np.asarray(self.counts_x), np.asarray(self.counts_y)
        return nx, ny, np.asarray([self.size_x or n for n in self.counts_x]), np.asarray([self.size_y or n for n in self.counts_y])


class _Values(NamedTuple):
    """Per group and output: the estimate, each subset's value, the jackknife replicates of
    each set and the recentred bootstrap replicates."""

    estimate: np.ndarray
    subsets: np.ndarray
    jk_x: np.ndarray
    jk_y: np.ndarray
    recentred: np.ndarray


def by_group(metric, x, x_groups, y=None, y_groups=None, *, key: PRNGKey, scheme: Scheme | None = None, **options):
    """Evaluate ``metric`` in every group, with intervals of the same estimand.

    Args:
        metric: a name from ``GROUP_METRICS`` (options ``k``, ``q``, ``bandwidth`` as
            keywords) or a metric object from ``faceaudit.core.metrics``.
        x: ``(n_x, d)`` embeddings (the real/reference set of a two-sample metric, or the
            set scored by a one-sample metric such as Vendi).
        x_groups: ``(n_x,)`` labels, or a tuple of label arrays for intersections.
        y: the generated set (two-sample metrics).
        y_groups: its labels.
        key: PRNG key for subsets and resampling.
        scheme: the interval scheme: ``chain(Jackknife(...), CommonSize(...))``, one part
            (``Bootstrap("bca", 2000)``) or a ``Scheme``; or its fields as keywords under
            their historical names: ``interval``, ``confidence``, ``num_bootstrap``,
            ``jackknife_blocks``, ``jackknife_delete``, ``common_size``, ``subsamples``,
            ``min_group_size``.

    Returns:
        ``GroupEstimates`` for a one-output metric; for a multi-output one (``"prdc"``) a
        dict of them by output name.

    Raises:
        ValueError: unknown metric or interval, a group present in one set only, a group
            smaller than the metric needs, repeated rows that empty a k-NN ball, or any
            check of the embedding arrays.
    """
    metric, options = _split_options(metric, options)
    scheme = _resolve_scheme(scheme, options).for_metric(metric)
    _validate.key(key)
    data = _grouped(metric, x, x_groups, y, y_groups, scheme)
    return _outputs(metric, data, _values(metric, data, scheme, key), scheme)


def _grouped(metric, x, x_groups, y, y_groups, scheme: Scheme) -> _Grouped:
    """The sets checked (features, labels, every group in both sets and large enough, the
    metric's own checks) and the groups' common sizes."""
    x = np.asarray(_validate.features(x, "x", as_jax=False), dtype=np.float64)
    lx = group_labels(x_groups, "x_groups")
    if lx.shape[0] != x.shape[0]:
        raise ValueError(f"x_groups has {lx.shape[0]} labels but x has {x.shape[0]} rows")
    ly = None
    if metric.two_sample:
        if y is None or y_groups is None:
            raise ValueError(f"{'/'.join(metric.outputs)} compares two sets: pass y and y_groups")
        y = np.asarray(_validate.features(y, "y", as_jax=False), dtype=np.float64)
        if y.shape[1] != x.shape[1]:
            raise ValueError(f"x has {x.shape[1]} feature columns but y has {y.shape[1]}")
        ly = group_labels(y_groups, "y_groups")
        if ly.shape[0] != y.shape[0]:
            raise ValueError(f"y_groups has {ly.shape[0]} labels but y has {y.shape[0]} rows")
        only_x, only_y = sorted(set(lx) - set(ly)), sorted(set(ly) - set(lx))
        if only_x or only_y:
            raise ValueError("every group needs rows in both sets: " + "; ".join(
                s for s in (f"only in x: {only_x}" if only_x else "", f"only in y: {only_y}" if only_y else "") if s))
    groups = tuple(sorted(set(lx)))
    counts_x = [int(np.sum(lx == g)) for g in groups]
    counts_y = [int(np.sum(ly == g)) for g in groups] if metric.two_sample else [0] * len(groups)
    for set_name, rows, labels, counts in (("x", x, lx, counts_x), ("y", y, ly, counts_y))[: 1 + metric.two_sample]:
        for g, size in zip(groups, counts):
            if size < scheme.min_group_size:
                raise ValueError(f"group {g!r} has {size} row{'s' if size != 1 else ''} in {set_name}; "
                                 f"{'/'.join(metric.outputs)} needs at least {scheme.min_group_size} per group")
        if hasattr(metric, "check_rows"):  # a user's own metric object may have none
            metric.check_rows(rows, labels, groups, set_name)
    size_x, size_y = _common_sizes(scheme.common_size, metric, counts_x, counts_y, metric.two_sample)
    return _Grouped(x, lx, y, ly, groups, counts_x, counts_y, size_x, size_y)


def _values(metric, data: _Grouped, scheme: Scheme, key) -> _Values:
    """Every group's estimate and replicates: on the host where the metric shares its work
    across weightings (CPU, no bootstrap), else by the compiled evaluation."""
    at_common = data.size_x is not None
    # Subsets of a group at its own size are the group itself: average over several only
    # where some group is larger than the common size.
    larger = at_common and (any(n > data.size_x for n in data.counts_x)
                            or (metric.two_sample and any(n > data.size_y for n in data.counts_y)))
    r = scheme.subsamples if larger else 1
    host = not scheme.replicates and _linalg.host_eager(data.x, data.y)
    if (host and r == 1 and not scheme.delete and metric.two_sample and hasattr(metric, "host_jackknife")
            and metric.uses_host_jackknife(max(data.counts_x + data.counts_y), data.x.shape[1])):
        # Each group's whole jackknife from one pass over its data, a group at a time.
        estimate, jk_x, jk_y = _host_jackknife(metric, data, scheme.blocks)
        return _Values(estimate, estimate[:, None, :], jk_x, jk_y, np.zeros((len(data.groups), 0, estimate.shape[1])))
    rng = _host_rng(key)
    u_x = _rank_uniforms(rng, len(data.groups), max(data.counts_x), r, scheme.blocks, scheme.delete)
    u_y = (_rank_uniforms(rng, len(data.groups), max(data.counts_y), r, scheme.blocks, scheme.delete)
           if metric.two_sample else (np.zeros((len(data.groups), r, 0)), np.zeros((len(data.groups), 0, 0))))
    if host and hasattr(metric, "host_subsets"):
        # The same weightings (same random ranks) evaluated on the host, a group at a time.
        sets = ((data.x, data.lx, u_x, data.size_x), (data.y, data.ly, u_y, data.size_y) if metric.two_sample else None)
        estimate, subsets, jk_x, jk_y = _host_subsets(metric, data.groups, sets, scheme.blocks, scheme.delete)
        return _Values(estimate, subsets, jk_x, jk_y, np.zeros((len(data.groups), 0, estimate.shape[1])))
    return _compiled_values(metric, data, scheme, key, (*u_x, *u_y), larger)


def _compiled_values(metric, data: _Grouped, scheme: Scheme, key, uniforms, larger: bool) -> _Values:
    xs, nx = _padded(data.x, data.lx, data.groups, max(data.counts_x))
    if metric.two_sample:
        ys, ny = _padded(data.y, data.ly, data.groups, max(data.counts_y))
    else:
        ys, ny = jnp.zeros((len(data.groups), 1, data.x.shape[1])), jnp.zeros(len(data.groups), jnp.int64)
    _, _, sx, sy = data.sizes()
    # At a common size below the largest group no subset or jackknife weighting carries more
    # rows than that size: evaluate on those rows only where the metric can.
    restrictable = larger and hasattr(metric, "restrict")
    support_x = data.size_x if restrictable and data.size_x < xs.shape[1] else None
    support_y = data.size_y if restrictable and metric.two_sample and data.size_y < ys.shape[1] else None
    estimate, subsets, jk_x, jk_y, boot, plugin = (np.asarray(a) for a in _evaluate(
        key, uniforms, xs, nx, jnp.asarray(sx), ys, ny, jnp.asarray(sy) if metric.two_sample else ny, metric=metric,
        num_bootstrap=scheme.replicates, blocks=scheme.blocks, delete=scheme.delete, support_x=support_x,
        support_y=support_y))
    # Recentred replicates for the basic and percentile intervals: theta* - T(F_hat) mimics
    # theta_hat - T(F) (without it a raw FD interval, a positively biased statistic, can miss
    # its own estimate entirely). BCa corrects the median bias itself and takes them raw.
    return _Values(estimate, subsets, jk_x, jk_y, boot - plugin[:, None, :] + estimate[:, None, :])


def _host_jackknife(metric, data: _Grouped, blocks: int):
    """Per group, the estimate and delete-one-block values of a metric that computes them
    from block sums on the host (``metric.host_jackknife``), one group at a time: memory
    follows the largest group, not all of them. Blocks are those of ``_block_of_row``."""
    g_count, outputs = len(data.groups), len(metric.outputs)
    estimate = np.zeros((g_count, outputs))
    jk_x, jk_y = np.zeros((g_count, blocks, outputs)), np.zeros((g_count, blocks, outputs))
    for gi, g in enumerate(data.groups):
        xg, yg = data.x[data.lx == g], data.y[data.ly == g]
        bx = np.arange(len(xg)) * min(blocks, len(xg)) // len(xg)
        by = np.arange(len(yg)) * min(blocks, len(yg)) // len(yg)
        estimate[gi], leave_x, leave_y = metric.host_jackknife(xg, bx, yg, by)
        jk_x[gi, : len(leave_x)], jk_y[gi, : len(leave_y)] = leave_x, leave_y
    return estimate, jk_x, jk_y


_masks = jax.jit(_subset_masks, static_argnames=("n_max", "blocks", "delete"))


def _host_subsets(metric, groups, sets, blocks: int, delete: float):
    """Per group, a metric's subset values and jackknife values evaluated on the host
    (``metric.host_subsets``) with the masks and random ranks of the compiled path, so both
    give the same numbers; one group at a time, so memory follows the largest group.
    ``sets`` holds ``(rows, labels, (u_sub, u_del), common size)`` for x and for y (None
    for a one-sample metric)."""
    outputs = len(metric.outputs)
    estimate, subsets = [], []
    jk = {side: np.zeros((len(groups), blocks if side == 0 or sets[1] else 0, outputs)) for side in (0, 1)}
    for gi, g in enumerate(groups):
        data, masks, sizes = [], [], []
        for side in sets:
            if side is None:
                data.append(None)
                masks.append(None)
                continue
            rows_all, labels, (u_sub, u_del), size = side
            rows = np.flatnonzero(labels == g)
            full, jack, _ = _masks(u_sub[gi], u_del[gi], rows.size, size or rows.size, u_sub.shape[2], blocks, delete)
            data.append(rows_all[rows])
            masks.append((np.asarray(full)[:, : rows.size], np.asarray(jack)[:, :, : rows.size]))
            sizes.append(rows.size)
        values, leave_x, leave_y = metric.host_subsets(data[0], data[1], masks[0], masks[1])
        subsets.append(values)
        estimate.append(values.mean(axis=0))
        for side, leave in enumerate((leave_x, leave_y)):
            if leave is not None:
                active = _active_blocks(sizes[side], blocks, delete)
                jk[side][gi, :active] = leave[:active].mean(axis=1)
    return np.asarray(estimate), np.asarray(subsets), jk[0], jk[1]


def _outputs(metric, data: _Grouped, values: _Values, scheme: Scheme):
    out = {}
    for o, name in enumerate(metric.outputs):
        one = _Values(*(v[..., o] for v in values))
        out[name] = _summarise(name, data, one, scheme, metric.two_sample)
    return out[metric.outputs[0]] if len(out) == 1 else out


def _summarise(name: str, data: _Grouped, values: _Values, scheme: Scheme, two_sample: bool) -> GroupEstimates:
    """One output's estimates, standard errors (the jackknife variance of each set, plus the
    Monte Carlo variance of a subset average), degrees of freedom, bias and interval."""
    nx, ny, sx, sy = data.sizes()
    if not two_sample:
        sy = np.zeros(len(data.groups), np.int64)
    blocks, delete = scheme.blocks, scheme.delete
    at_common = data.size_x is not None
    g_count = len(data.groups)
    se, df, bias = np.zeros(g_count), np.zeros(g_count), np.full(g_count, np.nan)
    for g in range(g_count):
        active_x = _active_blocks(int(nx[g]), blocks, delete)
        var_x, mean_x = _intervals.jackknife_variance(values.jk_x[g, :active_x], delete=delete, n=int(nx[g]))
        parts, dofs = [var_x], [active_x - 1]
        bias_g = _jackknife_bias(mean_x - values.estimate[g], delete, active_x)
        if values.jk_y.shape[1]:
            active_y = _active_blocks(int(ny[g]), blocks, delete)
            var_y, mean_y = _intervals.jackknife_variance(values.jk_y[g, :active_y], delete=delete, n=int(ny[g]))
            parts.append(var_y)
            dofs.append(active_y - 1)
            bias_g += _jackknife_bias(mean_y - values.estimate[g], delete, active_y)
        if values.subsets.shape[1] > 1:
            parts.append(np.var(values.subsets[g], ddof=1) / values.subsets.shape[1])
            dofs.append(values.subsets.shape[1] - 1)
        se[g] = np.sqrt(sum(parts))
        df[g] = _intervals.welch_df(parts, dofs)
        if not at_common:
            bias[g] = bias_g
    low, high = _interval_ends(values, se, df, nx, ny, scheme)
    return GroupEstimates(name, tuple(data.groups), nx, ny, sx, sy, values.estimate, se, df, low, high, bias,
                          scheme.interval, scheme.confidence, values.recentred)


def _interval_ends(values: _Values, se, df, nx, ny, scheme: Scheme):
    confidence, recentred, estimate = scheme.confidence, values.recentred, values.estimate
    if scheme.interval == "jackknife":
        return _intervals.t_interval(estimate, se, df, confidence)
    if scheme.interval == "percentile":
        return tuple(np.asarray(v) for v in _intervals.percentile_interval(jnp.asarray(recentred), confidence))
    if scheme.interval == "basic":
        return tuple(np.asarray(v) for v in _intervals.basic_interval(jnp.asarray(recentred), jnp.asarray(estimate),
                                                                      confidence))
    lows, highs = [], []
    for g in range(len(estimate)):
        jk = [values.jk_x[g, : _active_blocks(int(nx[g]), scheme.blocks, scheme.delete)]]
        if values.jk_y.shape[1]:
            jk.append(values.jk_y[g, : _active_blocks(int(ny[g]), scheme.blocks, scheme.delete)])
        # On the recentred replicates: BCa's bias correction compares each replicate with
        # the bootstrap world's truth, which for a U-statistic or a bias-corrected FD is
        # not the estimate (on the raw replicates 95% intervals of MMD^2 covered 0.24).
        lo, hi = _intervals.bca_interval(jnp.asarray(recentred[g]), jnp.asarray(estimate[g]), confidence,
                                         *map(jnp.asarray, jk))
        lows.append(float(lo))
        highs.append(float(hi))
    return np.asarray(lows), np.asarray(highs)


# A pooled set larger than this (per set) is measured in random parts of at most this many
# rows: the all-pairs MMD^2 of 20,000 rows is 4 x 10^8 kernel pairs per term (9 s here at
# d = 512), and of 80,000 rows, 6.4 x 10^9.
POOLED_MAX_ROWS = 8192


def pooled(metric, x, y=None, *, key: PRNGKey, name: str = "all", max_rows: int = POOLED_MAX_ROWS,
           scheme: Scheme | None = None, **options):
    """``metric`` on all rows together, reported as the one group ``name``.

    Sets of at most ``max_rows`` rows are evaluated whole (``by_group`` with one label).
    Larger sets of a metric that is unbiased at every size (``metric.unbiased``: MMD^2) are
    split at random into ``B = ceil(n / max_rows)`` near-equal parts per set; part ``b``
    of ``x`` is compared with part ``b`` of ``y``. Each part is a random sample of the
    pooled rows, so its estimate is unbiased for the pooled population value, and so is
    the mean of the ``B``; the parts are disjoint, hence independent, and the mean's
    variance is ``sum(se_b^2) / B^2`` with Welch-Satterthwaite degrees of freedom. This
    is the incomplete U-statistic that KID's subsets also are, with the cost and memory of
    one part. Other metrics, or bootstrap intervals, are evaluated whole.
    """
    metric, options = _split_options(metric, options)
    scheme = _resolve_scheme(scheme, options)
    sizes = [len(x)] + ([len(y)] if y is not None else [])
    parts = -(-max(sizes) // max_rows)
    whole = (parts == 1 or not getattr(metric, "unbiased", False) or not metric.two_sample
             or scheme.interval != "jackknife")
    if whole:
        labels = [np.full(n, name, dtype=object) for n in sizes]
        return by_group(metric, x, labels[0], *((y, labels[1]) if y is not None else ()), key=key, scheme=scheme)
    rng = _host_rng(key)
    labels = [np.asarray([f"part {p}" for p in rng.permutation(np.arange(n) % parts)], dtype=object) for n in sizes]
    by_part = by_group(metric, x, labels[0], y, labels[1], key=jax.random.fold_in(key, 1), scheme=scheme)
    results = by_part if isinstance(by_part, dict) else {metric.outputs[0]: by_part}
    out = {}
    for output, est in results.items():
        variances = est.se**2 / parts**2
        se = np.sqrt(variances.sum(keepdims=True))
        df = np.atleast_1d(_intervals.welch_df(list(variances), list(est.df)))
        estimate = np.atleast_1d(est.estimate.mean())
        low, high = _intervals.t_interval(estimate, se, df, est.confidence)
        n_x, n_y = np.asarray([est.n_x.sum()]), np.asarray([est.n_y.sum()])
        out[output] = GroupEstimates(output, (name,), n_x, n_y, n_x, n_y, estimate, se, df, low, high,
                                     np.atleast_1d(est.bias.mean()), est.interval, est.confidence,
                                     np.zeros((1, 0)))
    return out[metric.outputs[0]] if len(out) == 1 else out


def _active_blocks(n: int, blocks: int, delete: float) -> int:
    """Jackknife replicates of a set of ``n`` rows: ``blocks`` random deletions, or one per
    block with at most one block per row (``_block_of_row``)."""
    return blocks if delete else min(blocks, n)


def _jackknife_bias(shift, delete: float, blocks: int):
    # E T(n (1 - f)) - E T(n) = b f / (n (1 - f)) for a bias b / n, where f is the share
    # deleted per replicate (1/J for blocks): bias = shift (1 - f) / f.
    f = delete if delete else 1.0 / blocks
    return shift * (1.0 - f) / f


class Estimate(NamedTuple):
    """One group's number with its standard error and degrees of freedom (a row of
    ``metrics.parquet`` has these fields)."""

    group: str
    value: float
    se: float
    df: float


def contrast(a: Estimate, b: Estimate, confidence: float = 0.95) -> Contrast:
    """``a - b`` of two independent estimates with a Welch t interval (infinite ``df``: normal)."""
    diff = float(a.value - b.value)
    var = [float(a.se) ** 2, float(b.se) ** 2]
    se = float(np.sqrt(sum(var)))
    dofs = [np.inf if not np.isfinite(df) else df for df in (a.df, b.df)]
    df = float(_intervals.welch_df(var, dofs)) if all(np.isfinite(dofs)) else np.inf
    low, high = _intervals.t_interval(diff, se, df, confidence)
    return Contrast(a.group, b.group, diff, se, df, float(low), float(high))


def group_contrast(estimates: GroupEstimates, a: str, b: str) -> Contrast:
    """``a - b`` with a Welch t interval from the two groups' standard errors.

    Valid for jackknife estimates (independent groups); the same estimand on both sides
    (a common size for size-dependent metrics) is what makes the difference meaningful.
    """
    if a not in estimates.groups or b not in estimates.groups:
        raise ValueError(f"groups {a!r} and {b!r} must both be among {estimates.groups}")
    i, j = estimates.groups.index(a), estimates.groups.index(b)
    return contrast(Estimate(a, estimates.estimate[i], estimates.se[i], estimates.df[i]),
                    Estimate(b, estimates.estimate[j], estimates.se[j], estimates.df[j]), estimates.confidence)


def values_by_group(
    values,
    groups,
    *,
    key: PRNGKey,
    confidence: float = 0.95,
    jackknife_blocks: int = 20,
    min_group_size: int = 2,
) -> GroupEstimates:
    """Group means of per-item values (CLIP scores, similarities) with jackknife t intervals.

    (For a mean, the delete-block jackknife variance is the usual between-block variance
    of block means: the interval is the t interval of the mean with ``J - 1`` degrees of
    freedom.)
    """
    if not isinstance(values, (np.ndarray, jax.Array)) or values.ndim != 1:
        raise TypeError("values must be a 1-D numpy or JAX array (one value per item)")
    v = _validate.features(values[:, None], "values", min_rows=1)
    return by_group(_group_metrics.Mean(), np.asarray(v, dtype=np.float64), groups, key=key, confidence=confidence,
                    jackknife_blocks=jackknife_blocks, min_group_size=min_group_size)
