"""faceaudit.core: pure JAX array functions for auditing generated faces.

Everything here takes ``(n, d)`` embedding arrays (numpy or JAX, float32 or float64) and
returns JAX scalars or small arrays. Nothing imports torch, xarray, pandas or numpyro.

Importing this package enables JAX's float64 mode (``jax_enable_x64``): distributional
metrics lose digits in float32 (an all-float32 FD is off by 1-5% at d = 2048), so
statistics are accumulated and spectral steps are done in float64. Arrays you pass in
keep their dtype; float32 embeddings are upcast inside the metrics.
"""

import jax

jax.config.update("jax_enable_x64", True)

from ._bootstrap import bca_interval, percentile_interval  # noqa: E402
from ._cosine import clip_score, cosine_similarity, directional_similarity, image_similarity  # noqa: E402
from ._frechet import (  # noqa: E402
    FDInfinity,
    GaussianStats,
    fd_infinity,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    gaussian_stats_init,
    gaussian_stats_update,
)
from ._groups import GROUP_METRICS, GroupEstimates, by_group, group_labels, values_by_group  # noqa: E402
from ._linalg import xla_only  # noqa: E402
from ._mmd import KIDResult, kid, median_bandwidth, mmd2, mmd2_weighted  # noqa: E402
from ._prdc import PRDC, prdc  # noqa: E402
from ._vendi import vendi_score, vendi_score_weighted  # noqa: E402
from ._verification import (  # noqa: E402
    Pairs,
    VerificationSummary,
    equal_error_rate,
    pair_scores,
    roc_auc,
    tar_at_far,
    verification_accuracy,
    verification_pairs,
    verification_summary,
)

__all__ = [
    "FDInfinity",
    "GROUP_METRICS",
    "GaussianStats",
    "GroupEstimates",
    "KIDResult",
    "PRDC",
    "Pairs",
    "VerificationSummary",
    "bca_interval",
    "by_group",
    "clip_score",
    "cosine_similarity",
    "directional_similarity",
    "equal_error_rate",
    "fd_infinity",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_stats",
    "gaussian_stats_init",
    "gaussian_stats_update",
    "group_labels",
    "image_similarity",
    "kid",
    "median_bandwidth",
    "mmd2",
    "mmd2_weighted",
    "pair_scores",
    "percentile_interval",
    "prdc",
    "roc_auc",
    "tar_at_far",
    "values_by_group",
    "vendi_score",
    "vendi_score_weighted",
    "verification_accuracy",
    "verification_pairs",
    "verification_summary",
    "xla_only",
]
