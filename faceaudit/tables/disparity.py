"""Disparity tables: a tidy table (one row per response or image) into the models' design,
and a fitted posterior into the summaries people ask for.

Per-group means with HDIs, pairwise differences and ratios, the best-worst gap, the
probability that each group is the worst, a comparison with a reference group, sampler
diagnostics with advice, posterior predictive checks (a misfit is a stated problem), and
the frequentist view beside it (Wilson intervals, chi-square / ANOVA, Kruskal-Wallis).
``summary`` assembles all of it: the disparity stage and ``faceaudit disparity`` on a
survey table both call it, so both say the same.
"""

from __future__ import annotations

import dataclasses
import warnings
import functools

import jax
import numpy as np
import pandas as pd

from faceaudit import core
from faceaudit.files.manifest import group_label
from faceaudit.files.quiet import arviz
from faceaudit.tables.posterior import chain_method, diagnostics, inference_data

KINDS = ("binary", "ordinal", "continuous")


class NothingToModel(ValueError):
    """The outcome does not vary: a finding to state, not an error of the input."""


@dataclasses.dataclass(frozen=True)
class DisparitySpec:
    """What to model. ``group`` lists factor columns (two or more: intersections)."""

    outcome: str
    group: tuple[str, ...]
    kind: str = "binary"
    success: str | None = None  # binary: the value counted as success
    attribute: str | None = "attribute"  # edit column (None: no edit effect)
    item: str | None = "item"  # image column (None: no item effect)
    higher_is_better: bool = True
    reference: str | None = None
    hdi_prob: float = 0.95
    draws: int = 500  # posterior draws kept per chain
    warmup: int | None = None  # warm-up steps per chain (None: as many as draws)
    chains: int = 4
    seed: int = 0
    # numpyro's names, the spec's names before it used the audit's: deprecated.
    num_warmup: dataclasses.InitVar[int | None] = None
    num_samples: dataclasses.InitVar[int | None] = None
    num_chains: dataclasses.InitVar[int | None] = None

    def __post_init__(self, num_warmup, num_samples, num_chains):
        for old, new, value in (("num_samples", "draws", num_samples), ("num_warmup", "warmup", num_warmup),
                                ("num_chains", "chains", num_chains)):
            if value is not None:
                warnings.warn(f"DisparitySpec({old}=...) is deprecated: use {new}=", DeprecationWarning, stacklevel=3)
                object.__setattr__(self, new, value)
        if self.warmup is None:
            object.__setattr__(self, "warmup", self.draws)
        for name in ("draws", "warmup", "chains"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "binary" and self.success is None:
            raise ValueError("a binary outcome needs --success (the value that counts as success)")
        if not self.group:
            raise ValueError("name at least one group column")
        if not 0 < self.hdi_prob < 1:
            raise ValueError(f"hdi_prob must lie in (0, 1), got {self.hdi_prob}")


class PreparedData:
    """Validated arrays and labels for one fit."""

    def __init__(self, frame: pd.DataFrame, spec: DisparitySpec, source: str = "table"):
        from faceaudit.models.disparity import Design

        if spec.kind == "continuous" and spec.item and spec.item in frame.columns and spec.outcome in frame.columns:
            # A per-image metric (CLIP score of the image) repeats identically on every
            # response about that image; an item effect would then explain the data
            # exactly and the residual scale collapses (R-hat 4 on the study's survey).
            # The image is the unit: keep one row per image and drop the item effect.
            per_item = frame.groupby(spec.item)[spec.outcome].nunique(dropna=False)
            if (per_item <= 1).all():
                frame = frame.drop_duplicates(subset=[spec.item]).reset_index(drop=True)
                spec = dataclasses.replace(spec, item=None)

        needed = [spec.outcome, *spec.group] + [c for c in (spec.attribute, spec.item) if c]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"{source}: no column(s) {missing}; columns are {list(frame.columns)}")
        for col in needed:
            empty = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
            if empty.any():
                raise ValueError(f"{source}: column {col!r} has {int(empty.sum())} missing value(s), first in row {int(np.flatnonzero(empty)[0])}")
        codes, levels = [], []
        for col in spec.group:
            cat = pd.Categorical(frame[col].astype(str))
            codes.append(np.asarray(cat.codes))
            levels.append(list(cat.categories))
        cells = group_label(frame.reset_index(drop=True), list(spec.group), where=source)
        cell_cat = pd.Categorical(cells)
        self.cells = list(cell_cat.categories)
        self.cell_codes = np.asarray(cell_cat.codes)
        y_raw = frame[spec.outcome]
        if spec.kind == "binary":
            values = set(y_raw.astype(str))
            if spec.success not in values:
                raise ValueError(f"{source}: outcome {spec.outcome!r} never equals {spec.success!r}; its values are {sorted(values)}")
            y = (y_raw.astype(str) == spec.success).to_numpy().astype(np.int32)
            self.observed = pd.Series(y).groupby(self.cell_codes).mean().to_numpy()
        elif spec.kind == "ordinal":
            num = pd.to_numeric(y_raw, errors="coerce")
            if num.isna().any() or not np.allclose(num, np.round(num)):
                raise ValueError(f"{source}: ordinal outcome {spec.outcome!r} must hold integer ratings")
            self.low_category = int(num.min())
            y = (num - self.low_category).to_numpy().astype(np.int32)
            self.n_categories = int(num.max()) - self.low_category + 1
            self.observed = pd.Series(num.to_numpy()).groupby(self.cell_codes).mean().to_numpy()
        else:
            num = pd.to_numeric(y_raw, errors="coerce")
            if num.isna().any():
                raise ValueError(f"{source}: continuous outcome {spec.outcome!r} has non-numeric values")
            self.location, self.scale = float(num.mean()), float(num.std())
            if not self.scale > 0:
                raise NothingToModel(f"{source}: outcome {spec.outcome!r} is constant; there is no disparity to estimate")
            y = ((num - self.location) / self.scale).to_numpy()
            self.observed = pd.Series(num.to_numpy()).groupby(self.cell_codes).mean().to_numpy()
        if spec.kind != "continuous" and len(np.unique(y)) < 2:
            raise NothingToModel(f"{source}: outcome {spec.outcome!r} takes one value only; there is no disparity to estimate")
        self.y = y
        self.counts = np.bincount(self.cell_codes, minlength=len(self.cells))
        if spec.reference is not None and spec.reference not in self.cells:
            raise ValueError(f"reference group {spec.reference!r} is not one of {self.cells}")

        def code(col):
            if col is None:
                return np.zeros(len(frame), np.int32), 1
            cat = pd.Categorical(frame[col].astype(str))
            return np.asarray(cat.codes, np.int32), len(cat.categories)

        attr, n_attr = code(spec.attribute)
        item, n_item = code(spec.item)
        self.design = Design(
            tuple(jax.numpy.asarray(c) for c in codes), tuple(len(lv) for lv in levels),
            jax.numpy.asarray(self.cell_codes), len(self.cells),
            jax.numpy.asarray(attr), n_attr, jax.numpy.asarray(item), n_item,
        )
        self.spec = spec


def fit(data: PreparedData, *, progress: bool = False, predictive: bool = True):
    """NUTS (vectorised chains) on the prepared data; returns InferenceData with ``cell``.

    With ``predictive=True`` the InferenceData also holds prior and posterior predictive
    draws of ``y`` (for ``predictive_checks``).
    """
    from numpyro.infer import MCMC, NUTS, Predictive

    from faceaudit.models import disparity as models

    spec = data.spec
    if spec.kind == "binary":
        model = models.binary_model
    elif spec.kind == "ordinal":
        # The number of categories fixes the cutpoints' shape: bound here, static, not data.
        model = functools.partial(models.ordinal_model, n_categories=data.n_categories)
    else:
        model = models.continuous_model
    # The data are the sampler's arguments (jit_model_args), never constants folded into it,
    # so every fit of the same model and shapes runs one compiled program: kept for the
    # process by ReusedParallelChains, and across processes by JAX's persistent cache.
    method = chain_method(spec.chains, ("disparity", spec.kind, data.n_categories if spec.kind == "ordinal" else 0),
                          progress)
    # A small step size: with target_accept 0.9 the simulated worlds' fits had 1-19
    # divergences (9 of 11 worlds), at 0.99 at most 1 (4 worlds), for 2-4 s more
    # (benchmarks/results/fit_convergence.md).
    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.99),
        num_warmup=spec.warmup, num_samples=spec.draws, num_chains=spec.chains,
        chain_method=method, progress_bar=progress, jit_model_args=True,
    )
    mcmc.run(jax.random.key(spec.seed), data.design, y=jax.numpy.asarray(data.y))
    extra = {}
    if predictive:
        key_prior, key_post = jax.random.split(jax.random.key(spec.seed + 1))
        extra["prior"] = Predictive(model, num_samples=500)(key_prior, data.design)
        extra["posterior_predictive"] = Predictive(model, mcmc.get_samples())(key_post, data.design)
    idata = inference_data(mcmc, observed={"y": np.asarray(data.y)}, coords={"cell": data.cells},
                           dims={"cell_mean": ["cell"]}, **extra)
    cm = idata.posterior["cell_mean"]
    if spec.kind == "ordinal":
        idata.posterior["cell_mean"] = cm + data.low_category
    elif spec.kind == "continuous":
        idata.posterior["cell_mean"] = cm * data.scale + data.location
    return idata


def _hdi(samples: np.ndarray, prob: float) -> tuple[float, float]:
    lo, hi = arviz().hdi(samples, hdi_prob=prob)
    return float(lo), float(hi)


def summarise(idata, data: PreparedData) -> dict:
    """JSON-ready summaries of ``cell_mean``: groups, pairwise contrasts, gap, reference."""
    spec = data.spec
    draws = idata.posterior["cell_mean"].stack(sample=("chain", "draw")).transpose("sample", "cell").values
    worst_idx = np.argmin(draws, axis=1) if spec.higher_is_better else np.argmax(draws, axis=1)
    p_worst = np.bincount(worst_idx, minlength=draws.shape[1]) / draws.shape[0]
    groups = []
    for j, cell in enumerate(data.cells):
        lo, hi = _hdi(draws[:, j], spec.hdi_prob)
        groups.append(
            {
                "group": cell, "n": int(data.counts[j]), "observed": float(data.observed[j]),
                "mean": float(draws[:, j].mean()), "sd": float(draws[:, j].std()),
                "hdi_low": lo, "hdi_high": hi, "p_worst": float(p_worst[j]),
            }
        )
    pairs = []
    for a in range(len(data.cells)):
        for b in range(a + 1, len(data.cells)):
            diff = draws[:, a] - draws[:, b]
            ratio = draws[:, a] / draws[:, b]
            lo, hi = _hdi(diff, spec.hdi_prob)
            rlo, rhi = _hdi(ratio, spec.hdi_prob)
            pairs.append(
                {
                    "group": data.cells[a], "versus": data.cells[b], "difference": float(diff.mean()),
                    "hdi_low": lo, "hdi_high": hi, "p_greater": float((diff > 0).mean()),
                    "ratio": float(ratio.mean()), "ratio_hdi_low": rlo, "ratio_hdi_high": rhi,
                }
            )
    gap = draws.max(axis=1) - draws.min(axis=1)
    glo, ghi = _hdi(gap, spec.hdi_prob)
    out = {
        "outcome": spec.outcome, "kind": spec.kind, "success": spec.success, "group_by": list(spec.group),
        "hdi_prob": spec.hdi_prob, "higher_is_better": spec.higher_is_better,
        "groups": groups, "pairwise": pairs,
        "gap": {"mean": float(gap.mean()), "hdi_low": glo, "hdi_high": ghi},
    }
    if spec.reference is not None:
        r = data.cells.index(spec.reference)
        out["versus_reference"] = []
        for j, cell in enumerate(data.cells):
            if j == r:
                continue
            diff = draws[:, j] - draws[:, r]
            lo, hi = _hdi(diff, spec.hdi_prob)
            worse = diff < 0 if spec.higher_is_better else diff > 0
            out["versus_reference"].append(
                {"group": cell, "reference": spec.reference, "difference": float(diff.mean()), "hdi_low": lo, "hdi_high": hi, "p_worse": float(worse.mean())}
            )
    return out


def predictive_checks(idata, data: PreparedData) -> list[dict]:
    """Per-group checks of the model against the data, on the outcome's own scale.

    For each group: the observed mean, the central 95% range of the same mean under the
    prior predictive (is the prior sensible?) and under the posterior predictive, and the
    posterior predictive p-value ``P(rep >= observed)``; values near 0 or 1 flag a misfit.
    """
    out = []
    y_post = np.asarray(idata.posterior_predictive["y"]).reshape(-1, data.y.size)
    y_prior = np.asarray(idata.prior_predictive["y"]).reshape(-1, data.y.size)

    def to_scale(y):
        if data.spec.kind == "ordinal":
            return y + data.low_category
        if data.spec.kind == "continuous":
            return y * data.scale + data.location
        return y

    for j, cell in enumerate(data.cells):
        rows = data.cell_codes == j
        post = to_scale(y_post[:, rows]).mean(axis=1)
        prior = to_scale(y_prior[:, rows]).mean(axis=1)
        observed = float(data.observed[j])
        out.append(
            {
                "group": cell, "observed": observed,
                "prior_predictive_95": [float(np.quantile(prior, 0.025)), float(np.quantile(prior, 0.975))],
                "posterior_predictive_95": [float(np.quantile(post, 0.025)), float(np.quantile(post, 0.975))],
                "ppc_p_value": float((post >= observed).mean()),
            }
        )
    return out


def frequentist(data: PreparedData, confidence: float = 0.95) -> dict:
    """The study's classical view: per-group raw rates/means, intervals and tests."""
    spec = data.spec
    samples = [data.y[data.cell_codes == j] for j in range(len(data.cells))]
    rows = []
    for cell, s in zip(data.cells, samples):
        row = {"group": cell, "n": int(s.size)}
        if spec.kind == "binary":
            row["rate"] = float(s.mean())
            low, high = core.wilson_interval(int(s.sum()), int(s.size), confidence)
            row["wilson_low"], row["wilson_high"] = float(low), float(high)
        rows.append(row)
    return {"groups": rows, **core.group_tests(samples, binary=spec.kind == "binary")}


def summary(idata, data: PreparedData) -> dict:
    """Everything a disparity fit reports, JSON-ready: the summaries, the classical tests,
    the predictive checks and the diagnostics, whose ``problems`` include any group the
    model misfits (posterior predictive p-value outside (0.01, 0.99))."""
    out = summarise(idata, data)
    out["diagnostics"] = diagnostics(idata, ["cell_mean"])
    out["frequentist"] = frequentist(data)
    out["predictive_checks"] = predictive_checks(idata, data)
    misfit = [c["group"] for c in out["predictive_checks"] if not 0.01 < c["ppc_p_value"] < 0.99]
    if misfit:
        out["diagnostics"]["problems"].append(
            f"posterior predictive p-value outside (0.01, 0.99) for {misfit}: the model misfits these groups")
        out["diagnostics"]["ok"] = False
    return out
