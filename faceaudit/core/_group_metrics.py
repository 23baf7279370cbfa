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
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

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


FD_OUTPUTS = ("fd", "fd_unbiased")


@dataclasses.dataclass(frozen=True)
class FD:
    """Frechet distance, raw (``"fd"``) and with the first-order finite-sample bias removed
    (``"fd_unbiased"``), from one spectral step.

    Groups no larger than ``d`` go through ``n x n`` Gram matrices computed once per group,
    after which a weighting costs an ``n x n`` singular value problem, independent of ``d``.
    """

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

    def value(self, cache, wx, wy, plugin: bool):
        if cache[0] == "gram":
            raw, corrected = _fd_both_from_grams(*cache[1:], wx, wy, plugin)
        else:
            raw, corrected = _fd_both_from_stats(cache[1], wx, cache[2], wy, plugin)
        both = {"fd": raw, "fd_unbiased": corrected}
        return jnp.stack([both[w] for w in self.which])


@dataclasses.dataclass(frozen=True)
class MMD2:
    """Unbiased MMD^2 (the U-statistic): ``kernel="cubic"`` is KID's kernel, ``"gaussian"``
    with ``bandwidth`` is CMMD's (reported x1000 as ``cmmd``). Unbiased at every ``n``."""

    kernel: str = "cubic"
    bandwidth: float = 10.0
    two_sample: ClassVar[bool] = True
    size_dependent: ClassVar[bool] = False
    jackknife_delete: ClassVar[float] = 0.0

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("mmd2",) if self.kernel == "cubic" else ("cmmd",)

    def min_rows(self) -> int:
        return 2

    def prepare(self, x, y, mx, my):
        sx, sy = jnp.sum(x * x, 1), jnp.sum(y * y, 1)
        return (
            _mmd._kernel_block(self.kernel, x, x, sx, sx, self.bandwidth),
            _mmd._kernel_block(self.kernel, y, y, sy, sy, self.bandwidth),
            _mmd._kernel_block(self.kernel, x, y, sx, sy, self.bandwidth),
        )

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
class Vendi:
    """Vendi score (cosine kernel) of one set: the effective number of distinct faces.

    Size-dependent: with ``n`` samples it is at most ``n``. Compare groups at a common size.
    """

    q: float = 1.0
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

    def restrict(self, cache, rows_x, rows_y):
        if rows_x is None:
            return cache
        if cache[0] == "kernel":
            return ("kernel", cache[1][rows_x][:, rows_x])
        xh = cache[1][rows_x]
        return ("kernel", xh @ xh.T) if xh.shape[0] <= xh.shape[1] else ("rows", xh)


PRDC_OUTPUTS = ("precision", "recall", "density", "coverage")


@dataclasses.dataclass(frozen=True)
class PRDC:
    """Precision, recall, density and coverage (Naeem et al. 2020), strict ``<`` as ``prdc``.

    The k-NN radii are recomputed on every weighting's *support* (rows with weight > 0), so
    a subset or a jackknife deletion has the radii it would have on its own; frequency
    weights then weight each point's indicator. (A duplicated row never shrinks a radius to
    0.) Size-dependent: radii shrink as ``n`` grows. Compare groups at a common size.
    """

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

    def restrict(self, cache, rows_x, rows_y):
        dxx, dyy, dxy = cache
        if rows_x is not None:
            dxx, dxy = dxx[rows_x][:, rows_x], dxy[rows_x]
        if rows_y is not None:
            dyy, dxy = dyy[rows_y][:, rows_y], dxy[:, rows_y]
        return dxx, dyy, dxy


@dataclasses.dataclass(frozen=True)
class Mean:
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
        "cmmd": lambda **o: MMD2("gaussian", float(o.get("bandwidth", 10.0))),
        "vendi": lambda **o: Vendi(float(o.get("q", 1.0))),
        **{name: (lambda name: lambda **o: PRDC(int(o.get("k", 5)), (name,)))(name) for name in PRDC_OUTPUTS},
        "prdc": lambda **o: PRDC(int(o.get("k", 5))),
    }


GROUP_METRICS = tuple(_by_name())


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

