"""Who gets drawn, as tables: per-image perceived labels in, the confusion-corrected depicted
mixes of requested groups and neutral prompts out (``design/representation.md``).

``perceived`` frames have one row per image and attribute (``image_id``, ``attribute``,
``category``, ``probability``, ``classifier``; ``category`` is ``""`` where the classifier
found no face). For each classifier and attribute, ``fit_attribute`` fits the model of
``faceaudit.models.representation`` once over every image set (each generator's requested
groups and neutral prompts) when the reference faces carry labels of that attribute, and
``share_rows`` / ``divergence_rows`` turn its draws into ``faithfulness.parquet`` and
``representation.parquet`` rows. Without labelled reference faces the shares are raw and
say so (``corrected = False``); no number is shown as corrected that is not.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from faceaudit import core
from faceaudit.tables.posterior import chain_method, diagnostics, inference_data

JOINT_SEPARATOR = " x "  # the joint attribute "race x gender" and its categories "Asian x man"


@dataclasses.dataclass(frozen=True)
class FitSettings:
    draws: int = 1500  # posterior draws per chain (and as many warm-up steps): tail ESS >= 400 at K = 8
    chains: int = 2
    seed: int = 0
    hdi_prob: float = 0.9
    confusion_prior: float = 0.5  # a: added to every calibration count
    mix_prior: float = 1.0  # alpha: each set's Dirichlet(alpha 1), flat on the simplex
    loose_weight: float = 0.1  # the sensitivity fit: calibration counts divided by 10

    def __post_init__(self):
        for name in ("draws", "chains"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 < self.hdi_prob < 1:
            raise ValueError(f"hdi_prob must lie in (0, 1), got {self.hdi_prob}")
        for name in ("confusion_prior", "mix_prior", "loose_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class AttributeFit:
    """Posterior draws of one attribute's fit: ``mix`` ``(draws, S, K)``, ``confusion``
    ``(draws, K, K)``; ``idata`` for the netCDF file; ``diagnostics`` from ``posterior``."""

    categories: tuple[str, ...]
    sets: tuple[str, ...]
    mix: np.ndarray
    confusion: np.ndarray
    idata: object
    diagnostics: dict


def fit_attribute(calibration: np.ndarray, perceived: np.ndarray, categories, sets, settings: FitSettings, *,
                  weight: float = 1.0) -> AttributeFit:
    """NUTS on one attribute's calibration counts ``(K, K)`` and per-set perceived counts
    ``(S, K)``.

    Raises:
        ValueError: a set with no labelled image, fewer than 2 categories, mismatched shapes.
    """
    from numpyro.infer import MCMC, NUTS

    from faceaudit.models import representation as models

    calibration = np.asarray(calibration, dtype=np.float64)
    perceived = np.asarray(perceived, dtype=np.float64)
    k = len(categories)
    if k < 2:
        raise ValueError(f"an attribute needs at least 2 categories to have a mix, got {list(categories)}")
    if calibration.shape != (k, k) or perceived.shape != (len(sets), k):
        raise ValueError(f"calibration {calibration.shape} and perceived {perceived.shape} do not match "
                         f"{k} categories and {len(sets)} sets")
    empty = [s for s, n in zip(sets, perceived.sum(axis=1)) if n == 0]
    if empty:
        raise ValueError(f"image sets with no labelled image: {empty}")
    model = functools.partial(models.depicted_mix, confusion_prior=settings.confusion_prior, mix_prior=settings.mix_prior)
    mcmc = MCMC(NUTS(model, target_accept_prob=0.9), num_warmup=settings.draws, num_samples=settings.draws,
                num_chains=settings.chains, progress_bar=False, jit_model_args=True,
                chain_method=chain_method(settings.chains, ("representation", settings.confusion_prior,
                                                             settings.mix_prior), False))
    mcmc.run(jax.random.key(settings.seed), jax.numpy.asarray(calibration), jax.numpy.asarray(weight),
             perceived=jax.numpy.asarray(perceived), init_params=_start(calibration, perceived, settings))
    idata = inference_data(mcmc, observed={"perceived": perceived, "calibration": calibration},
                           coords={"image_set": list(sets), "category": list(categories),
                                   "true_category": list(categories), "perceived_category": list(categories)},
                           dims={"mix": ["image_set", "category"], "perceived_mix": ["image_set", "perceived_category"],
                                 "confusion": ["true_category", "perceived_category"],
                                 "perceived": ["image_set", "perceived_category"],
                                 "calibration": ["true_category", "perceived_category"]})
    draws = mcmc.get_samples()
    return AttributeFit(tuple(categories), tuple(sets), np.asarray(draws["mix"]), np.asarray(draws["confusion"]), idata,
                        diagnostics(idata, ["mix", "confusion"]))


def _start(calibration: np.ndarray, perceived: np.ndarray, settings: FitSettings) -> dict:
    """Every chain starts at the adjusted classify-and-count solution and the calibration's
    confusion (unconstrained values). Where the calibration is weak (the loose sensitivity
    fit) the model has other modes that relabel the categories, a classifier that is
    mostly wrong; starting in the calibrated one keeps both fits in the same mode. Passed
    as the chains' arguments, so no fit recompiles for it."""
    from numpyro.distributions import biject_to, constraints

    simplex = biject_to(constraints.simplex)
    confusion = (calibration + settings.confusion_prior) / (calibration + settings.confusion_prior).sum(1, keepdims=True)
    mix = core.adjusted_classify_and_count(calibration + settings.confusion_prior, perceived) + 0.02
    mix = mix / mix.sum(axis=1, keepdims=True)  # off the simplex's faces, where the transform is infinite
    start = {"confusion": simplex.inv(jax.numpy.asarray(confusion)), "mix": simplex.inv(jax.numpy.asarray(mix))}
    if settings.chains == 1:
        return start
    return {k: jax.numpy.broadcast_to(v, (settings.chains, *v.shape)) for k, v in start.items()}


def calibration_report(calibration: np.ndarray, categories) -> dict:
    """Per-category accuracy, the condition number of the row-normalised confusion and
    which categories the classifier cannot tell apart (``design/representation.md``:
    near-singular ``C`` leaves the mix at its prior)."""
    counts = np.asarray(calibration, dtype=np.float64)
    totals = counts.sum(axis=1)
    rows = counts / np.maximum(totals, 1)[:, None]
    condition = float(np.linalg.cond(rows)) if (totals > 0).all() else float("inf")
    accuracy = {c: (float(rows[j, j]) if totals[j] else float("nan")) for j, c in enumerate(categories)}
    # A category whose row is closer to another category's row than to its own indicator
    # is one the classifier cannot tell apart from that other.
    confused = sorted({tuple(sorted((categories[j], categories[i])))
                       for j in range(len(categories)) for i in range(len(categories))
                       if i != j and totals[j] and totals[i] and rows[j, i] >= rows[j, j]})
    return {"accuracy": accuracy, "faces": {c: int(t) for c, t in zip(categories, totals)}, "condition": condition,
            "cannot_tell_apart": [list(p) for p in confused]}


def summarise_draws(draws: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean, HDI and SD along axis 0."""
    low, high = core.hdi(draws, prob, axis=0)
    return draws.mean(axis=0), low, high, draws.std(axis=0, ddof=1)


def raw_shares(perceived: np.ndarray) -> np.ndarray:
    """The classifier's raw proportions (what every earlier tool reports)."""
    perceived = np.asarray(perceived, dtype=np.float64)
    return perceived / np.maximum(perceived.sum(axis=-1, keepdims=True), 1)


def divergence_draws(mix: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    """Draws of MAD, KL and normalised entropy of each set's mix against ``reference``."""
    return {k: np.asarray(v) for k, v in core.mix_divergences(mix, reference).items()}
