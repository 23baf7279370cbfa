"""Shape-annotated array aliases shared by the core (jaxtyping, documentation only)."""

from jaxtyping import Array, Bool, Float, Int, Key

Features = Float[Array, "n d"]
"""A sample of ``n`` embeddings of dimension ``d`` (float32 or float64)."""

Weights = Float[Array, " n"]
"""Non-negative frequency weights, one per row (bootstrap counts, 0/1 group masks)."""

Scalar = Float[Array, ""]
Labels = Int[Array, " n"]
PRNGKey = Key[Array, ""]

__all__ = ["Array", "Bool", "Features", "Float", "Int", "Labels", "PRNGKey", "Scalar", "Weights"]
