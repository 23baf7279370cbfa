r"""Hierarchical models of per-image outcomes across demographic groups (numpyro).

All three outcome kinds share one additive predictor on the link scale,

.. math::

    \eta_i = \sum_f \alpha^{(f)}_{g_f(i)} + \gamma_{c(i)} + \beta_{a(i)} + u_{j(i)},

with partially pooled (non-centred) effects: one per level of each grouping factor ``f``
(race, gender, ...), an interaction ``gamma`` per intersection cell when there are two or
more factors, an edit/attribute effect ``beta`` and an item (image) effect ``u``; every
family has its own half-normal scale, so the data decide how much groups are pooled.

* binary outcome (same person? edit applied?): ``y ~ Bernoulli(logit^{-1}(mu + eta))``;
* ordinal 1..K (rating): cumulative logit, ``P(y <= k) = logit^{-1}(c_k - eta)``;
* continuous (CLIP score, similarity; standardised): ``y ~ StudentT(nu, mu + eta, sigma)``.

The deterministic site ``cell_mean`` is the expected outcome averaged over each cell's own
rows (its items and edits as observed): the model-based counterpart of the raw per-group
mean, and the quantity every disparity summary is built from.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer.reparam import LocScaleReparam


@functools.partial(jax.tree_util.register_dataclass, data_fields=["factors", "cell", "attribute", "item"],
                   meta_fields=["levels", "n_cells", "n_attributes", "n_items"])
@dataclasses.dataclass(frozen=True)
class Design:
    """Integer codes of one dataset. A pytree whose sizes are static (Python ints), so a
    design passed as a traced argument (``jit_model_args``: one compiled sampler for every
    dataset of the same shapes) keeps its sizes."""

    factors: tuple  # per factor, (n,) level codes
    levels: tuple  # per factor, number of levels
    cell: jax.Array  # (n,) intersection cell code
    n_cells: int
    attribute: jax.Array  # (n,) edit/attribute code
    n_attributes: int
    item: jax.Array  # (n,) item (image) code
    n_items: int


def _pooled(name: str, size: int, scale: float = 1.0):
    """Zero-centred effects with a learned scale, their centredness learned too.

    Neither fixed form suits every audit: the non-centred one (``sigma * z``) leaves a
    funnel where the data pin the effects down (a simulated world's fit, seed 4, had 27
    divergences and bulk ESS 386, and more at ``target_accept`` 0.95), the centred one
    where they do not. ``LocScaleReparam(centered=None)`` learns the mix per effect during
    warm-up (Gorinova et al. 2020)."""
    sigma = numpyro.sample(f"sigma_{name}", dist.HalfNormal(scale))
    with numpyro.handlers.reparam(config={f"{name}_effect": LocScaleReparam(centered=None)}):
        return numpyro.sample(f"{name}_effect", dist.Normal(0.0, sigma).expand([size]).to_event(1))


def linear_predictor(design: Design):
    eta = 0.0
    for f, (codes, size) in enumerate(zip(design.factors, design.levels)):
        eta = eta + _pooled(f"factor{f}", size)[codes]
    if len(design.factors) > 1:
        eta = eta + _pooled("cell", design.n_cells, 0.5)[design.cell]
    if design.n_attributes > 1:
        eta = eta + _pooled("attribute", design.n_attributes)[design.attribute]
    if design.n_items > 1:
        eta = eta + _pooled("item", design.n_items)[design.item]
    return eta


def _cell_mean(design: Design, per_row):
    totals = jax.ops.segment_sum(per_row, design.cell, design.n_cells)
    counts = jax.ops.segment_sum(jnp.ones_like(per_row), design.cell, design.n_cells)
    return numpyro.deterministic("cell_mean", totals / counts)


def binary_model(design: Design, y=None):
    mu = numpyro.sample("intercept", dist.Normal(0.0, 2.5))
    logits = mu + linear_predictor(design)
    _cell_mean(design, jax.nn.sigmoid(logits))
    numpyro.sample("y", dist.BernoulliLogits(logits), obs=y)


def ordinal_model(design: Design, n_categories: int, y=None):
    """``y`` in ``0..n_categories-1``; ``cell_mean`` is the expected category (0-based)."""
    cut = numpyro.sample(
        "cutpoints",
        dist.TransformedDistribution(
            dist.Normal(0.0, 3.0).expand([n_categories - 1]).to_event(1), dist.transforms.OrderedTransform()
        ),
    )
    eta = linear_predictor(design)
    cdf = jax.nn.sigmoid(cut[None, :] - eta[:, None])  # P(y <= k)
    _cell_mean(design, jnp.sum(1.0 - cdf, axis=1))  # E[y] = sum_k P(y > k)
    numpyro.sample("y", dist.OrderedLogistic(eta, cut), obs=y)


def continuous_model(design: Design, y=None):
    """``y`` standardised (mean 0, sd 1); robust to outliers through the Student-t."""
    mu = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    nu = numpyro.sample("nu", dist.Gamma(2.0, 0.1))
    loc = mu + linear_predictor(design)
    _cell_mean(design, loc)
    numpyro.sample("y", dist.StudentT(nu, loc, sigma), obs=y)


def beta_binomial_model(successes, trials, a: float = 1.0, b: float = 1.0):
    """Unpooled per-group rates with Beta(a, b) priors: the conjugate check of the sampler."""
    p = numpyro.sample("p", dist.Beta(a, b).expand([successes.shape[0]]).to_event(1))
    numpyro.sample("y", dist.Binomial(trials, p).to_event(1), obs=successes)
