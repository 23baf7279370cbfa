"""Independent float64 reference implementations (numpy/scipy/mpmath/sklearn).

Written from the papers' definitions with the most direct algorithm, never sharing code
with faceaudit: full distance matrices, general eigensolvers, explicit loops.
"""

from __future__ import annotations

import mpmath
import numpy as np
import scipy.linalg
from scipy.spatial.distance import cdist


def frechet_distance(x, y):
    """FD with np.cov and the general eigenvalues of S1 S2 (no symmetric tricks)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    eig = scipy.linalg.eigvals(s1 @ s2)
    cross = np.sum(np.sqrt(np.clip(eig.real, 0, None)))
    gap = x.mean(0) - y.mean(0)
    return float(gap @ gap + np.trace(s1) + np.trace(s2) - 2 * cross)


def frechet_distance_mpmath(x, y, dps: int = 40):
    """FD in 40-digit arithmetic, via the singular values of the centred cross product.

    For small singular cases (n <= d) where float64 eigensolvers lose digits.
    """
    mpmath.mp.dps = dps
    x = mpmath.matrix(np.asarray(x).tolist())
    y = mpmath.matrix(np.asarray(y).tolist())

    def centred(a):
        n, d = a.rows, a.cols
        mean = [mpmath.fsum(a[i, j] for i in range(n)) / n for j in range(d)]
        out = mpmath.matrix(n, d)
        for i in range(n):
            for j in range(d):
                out[i, j] = a[i, j] - mean[j]
        return out, mean

    xc, mx = centred(x)
    yc, my = centred(y)
    nx, ny = x.rows, y.rows
    gap = mpmath.fsum((mx[j] - my[j]) ** 2 for j in range(x.cols))
    tr_x = mpmath.fsum(v**2 for v in xc) / (nx - 1)
    tr_y = mpmath.fsum(v**2 for v in yc) / (ny - 1)
    cross = (xc * yc.T) / mpmath.sqrt((nx - 1) * (ny - 1))
    sv = mpmath.svd_r(cross, compute_uv=False)
    return float(gap + tr_x + tr_y - 2 * mpmath.fsum(sv))


def fd_bias(x_cov, y_cov, n_x, n_y):
    """First-order bias of the sample FD, from population covariances (the docstring's
    formula, evaluated with scipy's general eigensolver)."""
    r = np.sqrt(np.clip(scipy.linalg.eigvals(x_cov @ y_cov).real, 0, None))
    pair = np.add.outer(r, r)
    phi = 0.5 * r.sum() + np.sum(np.divide(np.outer(r, r), pair, out=np.zeros_like(pair), where=pair > 0))
    return np.trace(x_cov) / n_x + np.trace(y_cov) / n_y + (0.5 / (n_x - 1) + 0.5 / (n_y - 1)) * phi


def _kernel(kind, a, b, bandwidth=None):
    if kind == "cubic":
        return (a @ b.T / a.shape[1] + 1.0) ** 3
    return np.exp(-cdist(a, b, "sqeuclidean") / (2 * bandwidth**2))


def mmd2_unbiased(x, y, kernel="cubic", bandwidth=None):
    """Unbiased MMD^2 with explicit full kernel matrices and zeroed diagonals."""
    kxx, kyy, kxy = _kernel(kernel, x, x, bandwidth), _kernel(kernel, y, y, bandwidth), _kernel(kernel, x, y, bandwidth)
    m, n = len(x), len(y)
    np.fill_diagonal(kxx, 0)
    np.fill_diagonal(kyy, 0)
    return kxx.sum() / (m * (m - 1)) + kyy.sum() / (n * (n - 1)) - 2 * kxy.mean()


def prdc(real, fake, k):
    """Naeem et al. 2020 from full scipy distance matrices and np.sort."""
    d_rr = cdist(real, real)
    d_ff = cdist(fake, fake)
    d_rf = cdist(real, fake)
    r_real = np.sort(d_rr, axis=1)[:, k]
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside = d_rf < r_real[:, None]
    return dict(
        precision=inside.any(axis=0).mean(),
        recall=(d_rf < r_fake[None, :]).any(axis=1).mean(),
        density=inside.sum(axis=0).mean() / k,
        coverage=(d_rf.min(axis=1) < r_real).mean(),
    )


def vendi(x, q=1.0, kernel="cosine", bandwidth=None):
    """Vendi score from the full n x n kernel matrix and scipy's eigvalsh."""
    x = np.asarray(x, np.float64)
    if kernel == "cosine":
        xh = x / np.linalg.norm(x, axis=1, keepdims=True)
        k = xh @ xh.T
    else:
        k = np.exp(-cdist(x, x, "sqeuclidean") / (2 * bandwidth**2))
    lam = scipy.linalg.eigvalsh(k / len(x))
    lam = lam[lam > len(lam) * np.finfo(float).eps * lam.max()]  # numerical rank
    if q == 1:
        return float(np.exp(-np.sum(lam * np.log(lam))))
    if np.isinf(q):
        return float(1 / lam.max())
    return float(np.exp(np.log(np.sum(lam**q)) / (1 - q)))


def eer(scores, genuine):
    """EER by sklearn's ROC and the same linear interpolation at the crossing."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(genuine, scores, drop_intermediate=False)
    fnr = 1 - tpr
    b = int(np.argmax(fpr >= fnr))
    a = b - 1
    fa, na, fb, nb = fpr[a], fnr[a], fpr[b], fnr[b]
    denom = (fb - fa) - (nb - na)
    alpha = (na - fa) / denom if denom != 0 else 0.0
    return fa + alpha * (fb - fa)


def tar_at_far(scores, genuine, far):
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(genuine, scores, drop_intermediate=False)
    return float(tpr[fpr <= far].max())


def cv_accuracy(scores, genuine, fold):
    """LFW-protocol accuracy with explicit loops over folds and candidate thresholds."""
    scores = np.asarray(scores)
    accs = []
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        s_tr, g_tr = scores[train], genuine[train]
        distinct = np.unique(s_tr)[::-1]
        best_t, best_correct = np.inf, np.sum(~g_tr)  # reject everything
        for i, s in enumerate(distinct):
            correct = np.sum((s_tr >= s) & g_tr) + np.sum((s_tr < s) & ~g_tr)
            if correct > best_correct:
                below = distinct[i + 1] if i + 1 < len(distinct) else s - 2.0
                best_t = (s + below) / 2 if i + 1 < len(distinct) else s - 1.0
                best_correct = correct
        pred = scores[test] >= best_t
        accs.append(np.mean(pred == genuine[test]))
    return float(np.mean(accs))


def prdc_membership(real, fake, k):
    """Per-sample PRDC indicators from full scipy distance matrices and np.sort."""
    d_rr, d_ff, d_rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r_real = np.sort(d_rr, axis=1)[:, k]
    r_fake = np.sort(d_ff, axis=1)[:, k]
    return dict(
        fake_in_real=(d_rf < r_real[:, None]).sum(axis=0),
        real_covered=d_rf.min(axis=1) < r_real,
        real_recalled=(d_rf < r_fake[None, :]).any(axis=1),
    )


def block_jackknife_se(statistic, x, blocks):
    """Delete-block jackknife standard error with an explicit loop over blocks
    (block of row i: floor(i * J / n), as Efron & Tibshirani's grouped jackknife)."""
    n = len(x)
    block = (np.arange(n) * blocks) // n
    reps = np.array([statistic(x[block != b]) for b in range(blocks)])
    return float(np.sqrt((blocks - 1) / blocks * np.sum((reps - reps.mean()) ** 2)))


def bca_textbook(replicates, estimate, jackknife, confidence):
    """BCa (Efron & Tibshirani 1993, eqs. 14.9-14.15) with scipy.stats.norm and np.percentile."""
    from scipy.stats import norm

    b = len(replicates)
    z0 = norm.ppf(np.clip(np.mean(replicates < estimate), 0.5 / b, 1 - 0.5 / b))
    u = jackknife.mean() - jackknife
    a = np.sum(u**3) / (6 * np.sum(u**2) ** 1.5)
    levels = []
    for alpha in ((1 - confidence) / 2, (1 + confidence) / 2):
        z = norm.ppf(alpha)
        levels.append(norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z))))
    return np.percentile(replicates, 100 * np.asarray(levels))


def gaussian_mmd2_monte_carlo(rng, mean_x, cov_x, mean_y, cov_y, draws, kernel="cubic"):
    """Population MMD^2 between two Gaussians by Monte Carlo over independent pairs:
    E k(x, x') + E k(y, y') - 2 E k(x, y), one kernel evaluation per independent pair."""
    d = len(mean_x)
    lx, ly = np.linalg.cholesky(cov_x), np.linalg.cholesky(cov_y)
    x1, x2 = (mean_x + rng.normal(size=(draws, d)) @ lx.T for _ in range(2))
    y1, y2 = (mean_y + rng.normal(size=(draws, d)) @ ly.T for _ in range(2))

    def k(a, b):
        return (np.sum(a * b, axis=1) / d + 1.0) ** 3

    terms = k(x1, x2) + k(y1, y2) - k(x1, y1) - k(x2, y2)
    return float(terms.mean()), float(terms.std() / np.sqrt(draws))
