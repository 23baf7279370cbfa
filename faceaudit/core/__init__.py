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

from . import _group_metrics as metrics  # noqa: E402
from ._cosine import clip_score, cosine_similarity, directional_similarity, image_similarity, pixel_distances  # noqa: E402
from ._frechet import (  # noqa: E402
    FDInfinity,
    GaussianStats,
    fd_infinity,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    gaussian_stats_init,
    gaussian_stats_merge,
    gaussian_stats_update,
)
from ._groups import (  # noqa: E402
    GROUP_METRICS,
    Contrast,
    GroupEstimates,
    by_group,
    pooled,
    contrast,
    group_contrast,
    group_labels,
    values_by_group,
)
from ._intervals import (  # noqa: E402
    basic_interval,
    bca_interval,
    jackknife_variance,
    percentile_interval,
    t_interval,
    wilson_interval,
)
from ._identity import (  # noqa: E402
    IdentitySpread,
    VerificationPrediction,
    expected_verification,
    generated_spread,
    identity_spreads,
    kinds_verification,
    ncx2_cdf,
)
from ._linalg import xla_only  # noqa: E402
from ._audit_space import AuditSpace, audit_dimension, audit_space, space_rows  # noqa: E402
from ._mmd import KIDResult, gaussian_mmd2, kid, median_bandwidth, mmd2, mmd2_weighted  # noqa: E402
from ._planning import PlanResult, evaluate_allocation, plan_mix, with_extra  # noqa: E402
from ._prdc import PRDC, Membership, knn_membership, nearest_distance, prdc  # noqa: E402
from ._selection import (  # noqa: E402
    FDPrediction,
    GeneratedGaussians,
    Mixing,
    TargetWorld,
    TrainingMix,
    TrainingStats,
    bures_squared,
    expected_fd,
    fit_generator,
    gaussian_frechet,
    measured_fd_bias,
    mixing,
    noise_free_generator,
    sample_training_stats,
    target_roots,
    transfer_kernel,
)
from ._representation import (  # noqa: E402
    adjusted_classify_and_count,
    category_counts,
    check_reference_mix,
    confusion_counts,
    confusion_matrix,
    hdi,
    mix_divergences,
    zero_shot_probabilities,
)
from ._skin_tone import ITA_CATEGORIES, MONK_CATEGORIES, ita, ita_category, monk_bin, skin_tone, srgb_to_lab  # noqa: E402
from ._vendi import vendi_score, vendi_score_weighted  # noqa: E402
from ._verification import (  # noqa: E402
    ClusteredAccuracy,
    Pairs,
    VerificationSummary,
    clustered_accuracy,
    equal_error_rate,
    pair_scores,
    roc_auc,
    tar_at_far,
    verification_accuracy,
    verification_pairs,
    verification_summary,
)

__all__ = [
    "AuditSpace",
    "ClusteredAccuracy",
    "Contrast",
    "FDInfinity",
    "FDPrediction",
    "GROUP_METRICS",
    "GaussianStats",
    "GeneratedGaussians",
    "GroupEstimates",
    "ITA_CATEGORIES",
    "IdentitySpread",
    "KIDResult",
    "MONK_CATEGORIES",
    "Membership",
    "Mixing",
    "PRDC",
    "Pairs",
    "PlanResult",
    "TargetWorld",
    "TrainingMix",
    "TrainingStats",
    "VerificationPrediction",
    "VerificationSummary",
    "adjusted_classify_and_count",
    "audit_dimension",
    "audit_space",
    "basic_interval",
    "bca_interval",
    "bures_squared",
    "by_group",
    "pooled",
    "category_counts",
    "check_reference_mix",
    "clip_score",
    "clustered_accuracy",
    "confusion_counts",
    "confusion_matrix",
    "contrast",
    "cosine_similarity",
    "directional_similarity",
    "equal_error_rate",
    "evaluate_allocation",
    "expected_fd",
    "expected_verification",
    "fd_infinity",
    "fit_generator",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_frechet",
    "gaussian_mmd2",
    "gaussian_stats",
    "gaussian_stats_init",
    "gaussian_stats_merge",
    "gaussian_stats_update",
    "generated_spread",
    "group_contrast",
    "group_labels",
    "hdi",
    "identity_spreads",
    "image_similarity",
    "ita",
    "ita_category",
    "jackknife_variance",
    "kid",
    "kinds_verification",
    "knn_membership",
    "measured_fd_bias",
    "median_bandwidth",
    "metrics",
    "mix_divergences",
    "mixing",
    "mmd2",
    "mmd2_weighted",
    "nearest_distance",
    "monk_bin",
    "ncx2_cdf",
    "noise_free_generator",
    "pair_scores",
    "percentile_interval",
    "pixel_distances",
    "plan_mix",
    "prdc",
    "roc_auc",
    "sample_training_stats",
    "skin_tone",
    "space_rows",
    "srgb_to_lab",
    "t_interval",
    "tar_at_far",
    "target_roots",
    "transfer_kernel",
    "values_by_group",
    "vendi_score",
    "vendi_score_weighted",
    "verification_accuracy",
    "verification_pairs",
    "verification_summary",
    "wilson_interval",
    "with_extra",
    "xla_only",
    "zero_shot_probabilities",
]
