"""Named tolerance tiers, so every comparison says why its tolerance is what it is."""

# Same estimator, same float64 arithmetic, different association order.
EXACT_ALGEBRA = 1e-12
# Against an independent float64 reference (another algorithm: general eigensolver,
# explicit loops, mpmath): round-off of O(d) accumulated operations.
FLOAT64_REFERENCE = 1e-10
# Against a peer library computing in float64 by its own route (the target).
PEER_FLOAT64 = 1e-9
# Against peers that go through scipy.linalg.sqrtm (Schur-based, loses ~half the digits
# of the smallest eigenvalues of S1 S2): what the peer itself can promise.
PEER_SQRTM = 1e-7


def monte_carlo(standard_error: float, z: float = 4.0) -> float:
    """Tolerance for a Monte Carlo mean: z standard errors (z = 4: false alarm 6e-5)."""
    return z * standard_error


def binomial_floor(trials: int, p: float, alpha: float = 1e-3) -> int:
    """Smallest count ``c`` with ``P(Binomial(trials, p) < c) <= alpha``: a coverage test
    with this floor fails by chance with probability at most ``alpha`` when the true
    coverage is ``p``."""
    from scipy.stats import binom

    c = 0
    while binom.cdf(c, trials, p) <= alpha:
        c += 1
    return c
