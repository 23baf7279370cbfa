r"""Per-group metrics as objects: each one is a function of frequency weights on a group.

``by_group`` evaluates a metric on many weightings of one group's rows (the group itself,
random subsets of a common size, jackknife block deletions, bootstrap counts). A metric
object says how: ``prepare(x, y, mask_x, mask_y)`` computes what every weighting shares
(Gram or distance matrices), and ``value(cache, w_x, w_y, plugin)`` returns the metric's
outputs for one weighting as a ``(len(outputs),)`` vector. With ``plugin=True`` it returns
the value *at* the weighted empirical distributions (the truth of a bootstrap world, on
which bootstrap replicates are recentred), which differs from the estimator for
bias-corrected or unbiased statistics. A size-dependent metric may also offer
``restrict(cache, rows_x, rows_y)``: the cache of the listed rows only (``None``: all), so
that a weighting with few rows carrying weight (a subset of a common size much smaller than
the largest group) costs what its rows cost, not what the padded group costs.

Metric objects are frozen dataclasses: equal options give equal (hashable) objects, so a
compiled evaluation is reused across calls, and a new metric is a new class, not a new
branch of a string dispatch (optax's ``GradientTransformation`` in spirit).

``size_dependent`` marks metrics whose *estimand* depends on the sample size: the Vendi
score grows with ``n`` and PRDC's k-NN radii shrink with ``n``. Groups of different sizes
are then compared at a common size (``by_group(common_size=...)``), never at their own.

On the host a metric may share its expensive work across all weightings of a group:
``host_jackknife`` (block sums and block moments: MMD^2, FD) or ``host_subsets`` (one
sorted k-NN list: PRDC; Gram downdates: Vendi); ``_groups`` says when they are used.

Each metric also says what it reports (``Reported``: its catalogue entries, data source,
minimum group size, warnings), and ``REGISTRY`` lists the ones ``faceaudit metrics``, the
measure stage and the report compute: a new metric is a class and a line there.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax.numpy as jnp
import numpy as np

from faceaudit.metric_info import COMMON_SIZE, PROPORTION, MetricInfo

from . import _frechet, _linalg, _mmd, _prdc, _vendi


def _fd_both_from_grams(gxx, gyy, gxy, wx, wy, plugin: bool = False):
    """``(raw FD, bias-corrected FD)`` of weighted sets from ``n x n`` Gram matrices: one
    singular value problem serves both."""
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
    gap = mx2 + my2 - 2.0 * mxy
    return (_frechet._assemble(gap, tr_x, tr_y, r, w_x, w_y, False),
            _frechet._assemble(gap, tr_x, tr_y, r, w_x, w_y, not plugin))


def _block_moments(x, blocks):
    """``(mean, block counts, block sums and scatters about the mean, total scatter)``."""
    mean = x.mean(axis=0)
    centred = x - mean
    count = int(np.max(blocks)) + 1
    counts = np.bincount(blocks, minlength=count).astype(np.float64)
    sums = np.stack([centred[blocks == b].sum(axis=0) for b in range(count)])
    scatters = np.stack([_linalg.host_row_gram(centred[blocks == b]) for b in range(count)])
    return mean, counts, sums, scatters, scatters.sum(axis=0)


def _weighted_stats(x, w, plugin: bool):
    w_sum = w.sum()
    mean = (w @ x) / w_sum
    scatter = _linalg.gram(jnp.sqrt(w)[:, None] * (x - mean))
    # _fd_from_stats divides by count - 1; a plug-in covariance divides by count.
    scale = jnp.where(plugin, (w_sum - 1.0) / w_sum, 1.0)
    return _frechet.GaussianStats(w_sum, mean, scatter * scale)


def _fd_both_from_stats(x, wx, y, wy, plugin: bool = False):
    a, b = _weighted_stats(x, wx, plugin), _weighted_stats(y, wy, plugin)
    return _frechet._fd_both_from_stats(a, b, not plugin)


class Reported:
    """What every metric object says about its outputs, with the defaults of most metrics.

    ``INFO`` holds the catalogue entry of each output (``faceaudit.metric_info.MetricInfo``);
    ``source`` is the data it reads in an audit (``"embedding"``, ``"generated"`` for a
    one-sample metric, ``"audit"`` for the audit space's projections). ``with_settings``
    takes the audit's options (PRDC's ``k``), ``select`` keeps some outputs, ``bind`` fixes
    what depends on all rows of an audit (a median bandwidth) so that every group gets the
    same metric. Adding a metric to ``faceaudit metrics``, the measure stage and the report
    is a class with these plus a line in ``REGISTRY``.
    """

    INFO: ClassVar[dict[str, MetricInfo]] = {}
    source: ClassVar[str] = "embedding"

    def infos(self) -> tuple[MetricInfo, ...]:
        return tuple(self.INFO[o] for o in self.outputs)

    def min_group_size(self, reference: bool) -> int:
        """Rows every group needs in the reference (``reference=True``) or generated set:
        a jackknife replicate that deletes a share ``f`` keeps ``min_rows`` rows."""
        return max(2, math.ceil(self.min_rows() / (1.0 - self.jackknife_delete)))

    def warning(self, output: str, estimates, i: int, dim: int) -> str:
        """Why group ``i``'s number should not be read at face value ("" when it can)."""
        return ""

    def check_rows(self, x, labels, groups, set_name: str) -> None:
        """Refuse a group's rows that the metric cannot score (naming the group and rows)."""

    def with_settings(self, settings):
        return self

    def select(self, outputs: tuple[str, ...]):
        return self

    def bind(self, reference, generated):
        return self


def _bias_note(estimates, i: int) -> str:
    half = (estimates.high[i] - estimates.low[i]) / 2
    bias = estimates.bias[i]
    return f"jackknife bias {bias:.3g} exceeds half the interval" if math.isfinite(bias) and abs(bias) > half else ""


FD_OUTPUTS = ("fd", "fd_unbiased")


@dataclasses.dataclass(frozen=True)
class FD(Reported):
    """Frechet distance, raw (``"fd"``) and with the first-order finite-sample bias removed
    (``"fd_unbiased"``), from one spectral step.

    Groups no larger than ``d`` go through ``n x n`` Gram matrices computed once per group,
    after which a weighting costs an ``n x n`` singular value problem, independent of ``d``.
    """

    INFO: ClassVar[dict[str, MetricInfo]] = {
        "fd_unbiased": MetricInfo(
            "fd_unbiased", "FD, first-order bias-corrected", False, "distribution",
            "the full-space FD between the group's two distributions",
            "biased where n < 10 d (the correction is first-order): ranks groups only when every group is large",
            rankable=False),
        "fd": MetricInfo(
            "fd", "FD, raw", False, "distribution",
            "the expected raw FD at the group's own sizes (includes the finite-sample bias)",
            "biased: grows as 1/n; for comparison with the literature only, not across groups", rankable=False),
    }
    which: tuple[str, ...] = ("fd",)
    two_sample: ClassVar[bool] = True
    size_dependent: ClassVar[bool] = False
    jackknife_delete: ClassVar[float] = 0.0

    def __post_init__(self):
        if not self.which or any(w not in FD_OUTPUTS for w in self.which):
            raise ValueError(f"FD outputs must be a non-empty subset of {FD_OUTPUTS}, got {self.which}")

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.which

    def min_rows(self) -> int:
        return 2

    def prepare(self, x, y, mx, my):
        if max(x.shape[0], y.shape[0]) <= x.shape[1]:
            return ("gram", x @ x.T, y @ y.T, x @ y.T)
        return ("stats", x, y)

    def select(self, outputs):
        return dataclasses.replace(self, which=tuple(o for o in self.which if o in outputs))

    def warning(self, output, estimates, i, dim):
        if output == "fd":
            return "biased: grows as 1/n; not comparable across groups"
        n = int(min(estimates.n_x[i], estimates.n_y[i]))
        notes = [f"n = {n} < 10 d = {10 * dim}: the first-order correction is out of range" if n < 10 * dim else "",
                 _bias_note(estimates, i)]
        return "; ".join(note for note in notes if note)

    def uses_host_jackknife(self, largest: int, d: int) -> bool:
        return largest > d  # smaller groups go through n x n Grams (``prepare``)

    def host_jackknife(self, x, blocks_x, y, blocks_y):
        """Both FDs and their delete-one-block values from per-block moments: each set is
        centred once, its blocks' sums and scatters taken once (one pass, ``n d^2``), and a
        deletion's statistics are the whole set's downdated by its block,
        ``S - S_b - s_b s_b^T / (n - n_b)`` about the mean ``mean - s_b / (n - n_b)``;
        each replicate then costs one ``d x d`` product spectrum (one thread per core)."""
        with _linalg.single_threaded():  # the same last bit on any thread count (the replicates' are)
            moments = [_block_moments(x, blocks_x), _block_moments(y, blocks_y)]

        def stats(side, leave):
            mean, counts, sums, scatters, total = moments[side]
            if leave is None:
                return counts.sum(), mean, total
            left = counts.sum() - counts[leave]
            return left, mean - sums[leave] / left, total - scatters[leave] - np.outer(sums[leave], sums[leave]) / left

        def both(item):
            (n_a, mean_a, scatter_a), (n_b, mean_b, scatter_b) = stats(0, item[0]), stats(1, item[1])
            s_a, s_b = scatter_a / (n_a - 1.0), scatter_b / (n_b - 1.0)
            r = _linalg._host_product_spectrum(s_a, s_b)
            gap = mean_a - mean_b
            args = (gap @ gap, np.trace(s_a), np.trace(s_b), jnp.asarray(r), n_a, n_b)
            return [float(_frechet._assemble(*args, w == "fd_unbiased")) for w in self.which]

        j_x, j_y = len(moments[0][1]), len(moments[1][1])
        items = [(None, None)] + [(b, None) for b in range(j_x)] + [(None, b) for b in range(j_y)]
        values = np.asarray(_linalg.host_map(both, items))
        return values[0], values[1:1 + j_x], values[1 + j_x:]

    def value(self, cache, wx, wy, plugin: bool):
        if cache[0] == "gram":
            raw, corrected = _fd_both_from_grams(*cache[1:], wx, wy, plugin)
        else:
            raw, corrected = _fd_both_from_stats(cache[1], wx, cache[2], wy, plugin)
        both = {"fd": raw, "fd_unbiased": corrected}
        return jnp.stack([both[w] for w in self.which])


@dataclasses.dataclass(frozen=True)
class AuditFD(FD):
    """The bias-corrected FD in the audit space (``fd_audit``): measured on the projections
    of an audit's reference and generated rows onto the top principal directions of a
    held-out half of the reference (``tables.metrics.audit_space``), with at least
    ``ratio`` rows per dimension in every group, where the first-order correction holds."""

    INFO: ClassVar[dict[str, MetricInfo]] = {"fd_audit": MetricInfo(
        "fd_audit", "FD in the audit space", False, "distribution",
        "the FD between the group's two distributions projected on the audit space "
        "(top principal directions of a held-out half of the reference faces, measured on the other "
        "half; k with every group >= 10 k)",
        "bias-corrected where the correction holds (n >= 10 k); residual bias small against the interval",
        default=True)}
    which: tuple[str, ...] = ("fd_unbiased",)
    ratio: int = 10
    source: ClassVar[str] = "audit"

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("fd_audit",)

    def with_settings(self, settings):
        return dataclasses.replace(self, ratio=settings.audit_ratio)

    def select(self, outputs):
        return self

    def min_group_size(self, reference: bool) -> int:
        # k >= 1 audit dimension; half of the reference rows estimate the space instead
        return 2 * self.ratio if reference else self.ratio

    def warning(self, output, estimates, i, dim):
        return _bias_note(estimates, i)


@dataclasses.dataclass(frozen=True)
class MMD2(Reported):
    """Unbiased MMD^2 (the U-statistic): ``kernel="cubic"`` is KID's kernel, ``"gaussian"``
    with ``bandwidth`` is CMMD's (reported x1000). ``bandwidth="median"`` takes the median
    distance between all rows of an audit (``bind``), one bandwidth for every group.
    Unbiased at every ``n``. ``name`` is the output's name (default: ``mmd2``/``cmmd``)."""

    INFO: ClassVar[dict[str, MetricInfo]] = {
        "mmd2": MetricInfo("mmd2", "KID: MMD^2, cubic kernel", False, "distribution",
                           "the population MMD^2 between the group's generated and reference distributions",
                           "unbiased at every size (U-statistic)", scale=1e3, default=True),
        "cmmd": MetricInfo("cmmd", "CMMD: MMD^2, Gaussian kernel", False, "distribution",
                           "the population MMD^2 (Gaussian kernel, sigma = 10, x1000 as CMMD reports it)",
                           "unbiased at every size"),
        "cmmd_median": MetricInfo(
            "cmmd_median", "MMD^2, Gaussian kernel, median bandwidth", False, "distribution",
            "the population MMD^2 with a Gaussian kernel whose sigma is the median distance between the audit's "
            "reference and generated rows (x1000)", "unbiased at every size; one bandwidth for every group"),
    }
    kernel: str = "cubic"
    bandwidth: float | str = 10.0
    name: str = ""
    two_sample: ClassVar[bool] = True
    size_dependent: ClassVar[bool] = False
    unbiased: ClassVar[bool] = True  # at every size: a random part of the rows estimates the same value
    jackknife_delete: ClassVar[float] = 0.0

    def uses_host_jackknife(self, largest: int, d: int) -> bool:
        return True

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.name or ("mmd2" if self.kernel == "cubic" else "cmmd"),)

    def bind(self, reference, generated):
        if self.bandwidth != "median":
            return self
        return dataclasses.replace(self, bandwidth=_mmd.median_bandwidth(reference, generated))

    def min_rows(self) -> int:
        return 2

    def prepare(self, x, y, mx, my):
        sx, sy = jnp.sum(x * x, 1), jnp.sum(y * y, 1)
        return (
            _mmd._kernel_block(self.kernel, x, x, sx, sx, self.bandwidth),
            _mmd._kernel_block(self.kernel, y, y, sy, sy, self.bandwidth),
            _mmd._kernel_block(self.kernel, x, y, sx, sy, self.bandwidth),
        )

    def host_jackknife(self, x, blocks_x, y, blocks_y):
        """The estimate and its delete-one-block values from block sums of the kernels
        (``_mmd.host_mmd2_jackknife``): one pass over each kernel, tiled, in numpy."""
        scale = 1000.0 if self.kernel == "gaussian" else 1.0
        estimate, leave_x, leave_y = _mmd.host_mmd2_jackknife(self.kernel, x, blocks_x, y, blocks_y, self.bandwidth)
        return scale * np.atleast_1d(estimate), scale * leave_x[:, None], scale * leave_y[:, None]

    def value(self, cache, wx, wy, plugin: bool):
        kxx, kyy, kxy = cache
        m, n = wx.sum(), wy.sum()
        # The unbiased U-statistic, or (plug-in) the V-statistic of the empirical
        # distributions, which keeps the diagonal.
        keep_diag = 0.0 if plugin else 1.0
        s_xx = wx @ kxx @ wx - keep_diag * (wx @ jnp.diag(kxx))
        s_yy = wy @ kyy @ wy - keep_diag * (wy @ jnp.diag(kyy))
        pairs_x = m * m if plugin else m * (m - 1.0)
        pairs_y = n * n if plugin else n * (n - 1.0)
        value = s_xx / pairs_x + s_yy / pairs_y - 2.0 * (wx @ kxy @ wy) / (m * n)
        return (value * (1000.0 if self.kernel == "gaussian" else 1.0))[None]


@dataclasses.dataclass(frozen=True)
class Vendi(Reported):
    """Vendi score (cosine kernel) of one set: the effective number of distinct faces.

    Size-dependent: with ``n`` samples it is at most ``n``. Compare groups at a common size.
    """

    INFO: ClassVar[dict[str, MetricInfo]] = {"vendi": MetricInfo(
        "vendi", "Vendi diversity", True, "diversity",
        "expected Vendi score (cosine) of m generated faces (m: the common size)", COMMON_SIZE, (1.0, math.inf),
        default=True)}
    q: float = 1.0
    source: ClassVar[str] = "generated"
    two_sample: ClassVar[bool] = False
    size_dependent: ClassVar[bool] = True
    jackknife_delete: ClassVar[float] = 0.0

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("vendi",)

    def min_rows(self) -> int:
        return 2

    def prepare(self, x, y, mx, my):
        norm = jnp.linalg.norm(x, axis=1, keepdims=True)
        xh = x / jnp.where(norm > 0, norm, 1.0)  # zero rows only occur as weight-0 padding
        n, d = x.shape
        return ("kernel", xh @ xh.T) if n <= d else ("rows", xh)

    def value(self, cache, wx, wy, plugin: bool):
        sw = jnp.sqrt(wx)
        if cache[0] == "kernel":
            mat = cache[1] * sw[:, None] * sw[None, :]
        else:
            xw = cache[1] * sw[:, None]
            mat = _linalg.gram(xw)
        return _vendi._order_entropy_exp(_linalg.eigvalsh(mat / wx.sum()), self.q)[None]

    def host_subsets(self, x, y, masks_x, masks_y):
        """Scores of 0/1 weightings on the host: ``full`` ``(R, n)`` subset masks and ``jack``
        ``(J, R, n)`` jackknife masks, each a small change of its subset: the ``d x d`` dual
        of a jackknife replicate is its subset's minus the rows it lost plus the rows it
        gained (a few per block), not a new ``n``-row product; the eigensolves run on one
        thread per core. Returns ``(R, 1)`` and ``(J, R, 1)`` values (and no ``y``)."""
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        xh = x / np.where(norm > 0, norm, 1.0)
        full, jack = (np.asarray(m, bool) for m in masks_x)
        kernel = xh @ xh.T if full.sum(axis=1).max() <= xh.shape[1] else None
        duals = None if kernel is not None else [_linalg.host_row_gram(xh[mask]) for mask in full]

        def score(item):
            r, mask = item
            rows = np.flatnonzero(mask)
            if kernel is not None:
                mat = kernel[np.ix_(rows, rows)]
            else:
                lost, gained = np.flatnonzero(full[r] & ~mask), np.flatnonzero(mask & ~full[r])
                mat = duals[r] - xh[lost].T @ xh[lost] + xh[gained].T @ xh[gained]
            return _linalg._eigvalsh_values_only(mat / rows.size)

        items = [(r, m) for r, m in enumerate(full)] + [(r, m) for masks in jack for r, m in enumerate(masks)]
        spectra = _linalg.host_map(score, items)
        values = np.asarray([float(_vendi._order_entropy_exp(jnp.asarray(lam), self.q)) for lam in spectra])
        r_count = full.shape[0]
        return values[:r_count, None], values[r_count:].reshape(jack.shape[0], r_count, 1), None

    def restrict(self, cache, rows_x, rows_y):
        if rows_x is None:
            return cache
        if cache[0] == "kernel":
            return ("kernel", cache[1][rows_x][:, rows_x])
        xh = cache[1][rows_x]
        return ("kernel", xh @ xh.T) if xh.shape[0] <= xh.shape[1] else ("rows", xh)


PRDC_OUTPUTS = ("precision", "recall", "density", "coverage")


@dataclasses.dataclass(frozen=True)
class PRDC(Reported):
    """Precision, recall, density and coverage (Naeem et al. 2020), strict ``<`` as ``prdc``.

    The k-NN radii are recomputed on every weighting's *support* (rows with weight > 0), so
    a subset or a jackknife deletion has the radii it would have on its own; frequency
    weights then weight each point's indicator. (A duplicated row never shrinks a radius to
    0.) Size-dependent: radii shrink as ``n`` grows. Compare groups at a common size.
    """

    INFO: ClassVar[dict[str, MetricInfo]] = {
        "precision": MetricInfo("precision", "precision", True, "distribution",
                                "expected precision of m generated vs m reference faces (m: the common size)",
                                COMMON_SIZE, PROPORTION, default=True),
        "recall": MetricInfo("recall", "recall", True, "distribution", "expected recall at the common sizes",
                             COMMON_SIZE, PROPORTION, default=True),
        "density": MetricInfo("density", "density", True, "distribution", "expected density at the common sizes",
                              COMMON_SIZE, (0.0, math.inf), default=True),
        "coverage": MetricInfo("coverage", "coverage", True, "distribution", "expected coverage at the common sizes",
                               COMMON_SIZE, PROPORTION, default=True),
    }
    k: int = 5
    which: tuple[str, ...] = PRDC_OUTPUTS
    two_sample: ClassVar[bool] = True
    size_dependent: ClassVar[bool] = True
    # k-NN indicators are not smooth in the data: a delete-block jackknife overstates their
    # variance (coverage 0.98-1.0 for nominal 0.95 in the coverage study); random
    # half-samples (delete-d, d = n/2) are consistent for such statistics (Shao & Wu 1989).
    jackknife_delete: ClassVar[float] = 0.5

    def __post_init__(self):
        unknown = [w for w in self.which if w not in PRDC_OUTPUTS]
        if unknown or not self.which:
            raise ValueError(f"PRDC outputs must be a non-empty subset of {PRDC_OUTPUTS}, got {self.which}")

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.which

    def min_rows(self) -> int:
        return self.k + 1

    def with_settings(self, settings):
        return dataclasses.replace(self, k=settings.k)

    def check_rows(self, x, labels, groups, set_name):
        for g in groups:
            rows = np.flatnonzero(labels == g)
            _prdc._check_radii(f"group {g!r}: {set_name}", x[rows], self.k, rows)

    def select(self, outputs):
        return dataclasses.replace(self, which=tuple(o for o in self.which if o in outputs))

    def prepare(self, x, y, mx, my):
        sx, sy = jnp.sum(x * x, 1), jnp.sum(y * y, 1)
        return _prdc._sq_dist(x, sx, x, sx), _prdc._sq_dist(y, sy, y, sy), _prdc._sq_dist(x, sx, y, sy)

    def value(self, cache, wx, wy, plugin: bool):
        dxx, dyy, dxy = cache
        px, py = wx > 0, wy > 0
        r2x = _prdc._kth_smallest(jnp.where(px[None, :], dxx, jnp.inf), self.k)
        r2y = _prdc._kth_smallest(jnp.where(py[None, :], dyy, jnp.inf), self.k)
        pair = px[:, None] & py[None, :]
        in_real = (dxy < r2x[:, None]) & pair  # real rows, fake columns
        in_fake = (dxy < r2y[None, :]) & pair
        nearest = jnp.where(py[None, :], dxy, jnp.inf).min(axis=1)
        values = {
            "precision": (wy @ in_real.any(axis=0)) / wy.sum(),
            "recall": (wx @ in_fake.any(axis=1)) / wx.sum(),
            "density": (wy @ in_real.sum(axis=0)) / (self.k * wy.sum()),
            "coverage": (wx @ ((nearest < r2x) & px)) / wx.sum(),
        }
        return jnp.stack([values[w] for w in self.which])

    def host_subsets(self, x, y, masks_x, masks_y):
        """Outputs of 0/1 weightings on the host, from one k-NN pass per set.

        ``masks_*`` are ``(full (R, n), jack (J, R, n))`` as in ``by_group``. Each row's
        nearest rows are sorted once (enough of them for the sparsest weighting's support,
        ``_sorted_neighbours``); a weighting's k-NN radius is then the distance at which the
        sorted list reaches ``k + 1`` rows of its support (the row itself included, as
        ``value`` counts it), read in ``O(k n / share)`` instead of a pass over ``n x n``
        distances; rows whose list runs out are done exactly. Returns the values of the
        ``R`` subsets and ``(J, R, outputs)`` with a block of x, then of y, left out."""
        sx, sy = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
        dxy = _prdc.host_sq_dist(x, sx, y, sy)
        (full_x, jack_x), (full_y, jack_y) = (tuple(np.asarray(m, bool) for m in masks) for masks in (masks_x, masks_y))
        near_x = _sorted_neighbours(x, sx, self.k, min(full_x.sum(1).min(), jack_x.sum(2).min()))
        near_y = _sorted_neighbours(y, sy, self.k, min(full_y.sum(1).min(), jack_y.sum(2).min()))

        def one(pair):
            px, py = pair
            rows, cols = np.flatnonzero(px), np.flatnonzero(py)
            r2x, r2y = _support_radius(near_x, px, rows, self.k), _support_radius(near_y, py, cols, self.k)
            in_some_ball, in_balls, recalled, covered = np.zeros(cols.size, bool), 0, 0, 0
            for c0 in range(0, rows.size, NEIGHBOUR_CHUNK):  # a chunk of real rows at a time
                d = dxy[np.ix_(rows[c0:c0 + NEIGHBOUR_CHUNK], cols)]
                radius = r2x[c0:c0 + NEIGHBOUR_CHUNK]
                inside = d < radius[:, None]  # supported real rows' balls, supported fake columns
                in_some_ball |= inside.any(axis=0)
                in_balls += int(inside.sum())
                recalled += int((d < r2y[None, :]).any(axis=1).sum())
                covered += int((d.min(axis=1) < radius).sum())
            values = {"precision": in_some_ball.mean(), "recall": recalled / rows.size,
                      "density": in_balls / (self.k * cols.size), "coverage": covered / rows.size}
            return [values[w] for w in self.which]

        r, j_x, j_y = full_x.shape[0], jack_x.shape[0], jack_y.shape[0]
        pairs = ([(full_x[i], full_y[i]) for i in range(r)] + [(m, full_y[i]) for ms in jack_x for i, m in enumerate(ms)]
                 + [(full_x[i], m) for ms in jack_y for i, m in enumerate(ms)])
        values = np.asarray(_linalg.host_map(one, pairs), dtype=np.float64)
        return (values[:r], values[r:r + j_x * r].reshape(j_x, r, -1), values[r + j_x * r:].reshape(j_y, r, -1))

    def restrict(self, cache, rows_x, rows_y):
        dxx, dyy, dxy = cache
        if rows_x is not None:
            dxx, dxy = dxx[rows_x][:, rows_x], dxy[rows_x]
        if rows_y is not None:
            dyy, dxy = dyy[rows_y][:, rows_y], dxy[:, rows_y]
        return dxx, dyy, dxy


class _Neighbours(NamedTuple):
    order: np.ndarray  # (n, L) each row's nearest rows, nearest first (itself among them)
    dist: np.ndarray  # (n, L) their squared distances
    x: np.ndarray  # the rows and their squared norms, for a row whose list runs out
    sq: np.ndarray


# Rows sorted at a time: the partial sort's index temporaries stay O(chunk x n), not the
# n x n int64 (800 MB at n = 10,000) of one call.
NEIGHBOUR_CHUNK = 1024


def _sorted_neighbours(x, sq, k: int, smallest_support: int) -> _Neighbours:
    """Each row's ``L`` nearest rows in order, ``L`` sized so that a support of
    ``smallest_support`` of the ``n`` rows is expected to hold ``k + 1`` of them thrice
    over (fewer is caught and done exactly in ``_support_radius``). The distances are
    computed a chunk of rows at a time and only the lists kept."""
    n = x.shape[0]
    length = int(min(n, max(4 * (k + 1), np.ceil(3 * (k + 1) * n / max(smallest_support, 1)) + 16)))
    order, dist = np.empty((n, length), dtype=np.int64), np.empty((n, length))
    for r0 in range(0, n, NEIGHBOUR_CHUNK):
        d2 = _prdc.host_sq_dist(x[r0:r0 + NEIGHBOUR_CHUNK], sq[r0:r0 + NEIGHBOUR_CHUNK], x, sq)
        part = np.argpartition(d2, length - 1, axis=1)[:, :length] if length < n else np.argsort(d2, axis=1)
        near = np.take_along_axis(d2, part, axis=1)
        within = np.argsort(near, axis=1, kind="stable")
        order[r0:r0 + len(d2)] = np.take_along_axis(part, within, axis=1)
        dist[r0:r0 + len(d2)] = np.take_along_axis(near, within, axis=1)
    return _Neighbours(order, dist, x, sq)


def _support_radius(near: _Neighbours, support, rows, k: int):
    """Per row in ``rows``, the ``k``-th smallest (0-based) squared distance to the rows in
    ``support``: what ``_prdc._kth_smallest`` gives on the masked distance matrix."""
    counted = np.cumsum(support[near.order[rows]], axis=1)
    found = counted[:, -1] > k
    position = np.argmax(counted > k, axis=1)
    radius = near.dist[rows, position]
    for i in np.flatnonzero(~found):  # the sorted list ran out: the whole row, exactly
        row = _prdc.host_sq_dist(near.x[rows[i]][None], near.sq[rows[i]][None], near.x[support], near.sq[support])[0]
        radius[i] = np.partition(row, k)[k]
    return radius


@dataclasses.dataclass(frozen=True)
class Mean(Reported):
    """The mean of one value per item (a CLIP score, a similarity): ``x`` is ``(n, 1)``."""

    name: str = "mean"
    two_sample: ClassVar[bool] = False
    size_dependent: ClassVar[bool] = False
    jackknife_delete: ClassVar[float] = 0.0

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.name,)

    def min_rows(self) -> int:
        return 2

    def prepare(self, x, y, mx, my):
        return x[:, 0]

    def value(self, cache, wx, wy, plugin: bool):
        return ((wx @ cache) / wx.sum())[None]


def _by_name() -> dict:
    return {
        "fd": lambda **o: FD(("fd",)),
        "fd_unbiased": lambda **o: FD(("fd_unbiased",)),
        "mmd2": lambda **o: MMD2("cubic"),
        "cmmd": lambda **o: MMD2("gaussian", float(o.get("bandwidth", 10.0)), "cmmd"),
        "vendi": lambda **o: Vendi(float(o.get("q", 1.0))),
        **{name: (lambda name: lambda **o: PRDC(int(o.get("k", 5)), (name,)))(name) for name in PRDC_OUTPUTS},
        "prdc": lambda **o: PRDC(int(o.get("k", 5))),
    }


GROUP_METRICS = tuple(_by_name())

# What `faceaudit metrics` and the measure stage can compute from two embedding sets, in
# the order of their tables (a new metric: its class above and one line here).
REGISTRY = (
    MMD2(),
    AuditFD(),
    FD(("fd_unbiased", "fd")),
    PRDC(),
    MMD2("gaussian", 10.0, "cmmd"),
    MMD2("gaussian", "median", "cmmd_median"),
    Vendi(),
)


def group_metric(metric, **options):
    """A metric object from a name in ``GROUP_METRICS`` (options: ``k``, ``q``,
    ``bandwidth``), or the object itself."""
    if not isinstance(metric, str):
        for attr in ("prepare", "value", "outputs", "two_sample", "size_dependent"):
            if not hasattr(metric, attr):
                raise TypeError(f"a group metric needs {attr!r}; got {type(metric).__name__}")
        return metric
    table = _by_name()
    if metric not in table:
        raise ValueError(f"unknown metric {metric!r}; per-group metrics: {GROUP_METRICS}")
    unknown = sorted(set(options) - {"k", "q", "bandwidth"})
    if unknown:
        raise ValueError(f"unknown metric option(s) {unknown}; known: k (PRDC), q (Vendi), bandwidth (cmmd)")
    return table[metric](**options)

