r"""The depicted mix of every prompt, corrected for the perceived-attribute classifier's
confusion (numpyro; ``design/representation.md``).

For one attribute with categories ``k = 1..K``, ``S`` image sets (the requested groups of
the grid and the neutral prompts) and a classifier calibrated on labelled real faces:

.. math::

    C_{j\cdot} &\sim \mathrm{Dirichlet}(w N_{j\cdot} + a)  &&\text{(row $j$: faces of true category $j$)}\\
    \pi_s &\sim \mathrm{Dirichlet}(\alpha \mathbf{1}_K)   &&\text{(depicted mix of set $s$)}\\
    n_s &\sim \mathrm{Multinomial}(|n_s|,\ C^\top \pi_s)  &&\text{(perceived-label counts)}

``N`` are the calibration counts (``N[j, i]``: true ``j`` called ``i``). With ``w = 1``
the Dirichlet rows are exactly the posterior of a ``Dirichlet(a)`` prior updated by the
calibration faces, so the model is the joint posterior of the confusion and the mixes given
both data sets: the generated faces' labels inform ``C`` as well, and the uncertainty of
``C`` reaches every mix. ``w < 1`` treats the calibration as that many times fewer faces
(the "loosely known confusion" sensitivity fit). The mixes are independent
``Dirichlet(alpha)`` per set, not pooled: requested groups are meant to differ
completely from one another, and pooling them with neutral prompts would pull each towards
the grid's average.

One fit covers every set of the attribute; the data are the sampler's arguments, so every
fit with the same ``K`` and ``S`` runs one compiled program.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist


def depicted_mix(calibration, calibration_weight, perceived, *, confusion_prior: float = 0.5, mix_prior: float = 1.0):
    """Args:
        calibration: ``(K, K)`` confusion counts on labelled real faces.
        calibration_weight: scalar ``w`` (1: the counts as measured).
        perceived: ``(S, K)`` perceived-label counts per image set (every row > 0 images).
        confusion_prior: ``a``, added to every confusion count.
        mix_prior: ``alpha`` of each set's ``Dirichlet(alpha 1)``.
    """
    k = calibration.shape[0]
    s = perceived.shape[0]
    with numpyro.plate("true_category", k):
        confusion = numpyro.sample("confusion", dist.Dirichlet(calibration_weight * calibration + confusion_prior))
    with numpyro.plate("image_set", s):
        mix = numpyro.sample("mix", dist.Dirichlet(jnp.full(k, mix_prior)))
        perceived_mix = numpyro.deterministic("perceived_mix", mix @ confusion)
        numpyro.sample("perceived", dist.Multinomial(total_count=perceived.sum(-1), probs=perceived_mix), obs=perceived)
