"""Every metric against an independent float64 reference, through one registry."""

from __future__ import annotations

import jax
import numpy as np
import scipy.linalg
import pytest

import faceaudit.core as fc
from tests import references as ref
from tests.tolerances import EXACT_ALGEBRA, FLOAT64_REFERENCE


def _sets(rng, n_x, n_y, d, *, scale=1.3, shift=0.2, anisotropic=True):
    spectrum = np.linspace(0.2, 2.0, d) if anisotropic else np.ones(d)
    rot = np.linalg.qr(rng.normal(size=(d, d)))[0]
    x = rng.normal(size=(n_x, d)) * np.sqrt(spectrum) @ rot
    y = (rng.normal(size=(n_y, d)) * np.sqrt(spectrum[::-1]) * scale + shift) @ rot
    return x, y


# (name, faceaudit call, reference call, shapes (n_x, n_y, d))
REGISTRY = [
    ("fd n>d", lambda x, y: fc.frechet_distance(x, y), ref.frechet_distance, (400, 300, 24)),
    ("fd n>>d", lambda x, y: fc.frechet_distance(x, y), ref.frechet_distance, (3000, 2000, 128)),
    ("fd mixed n", lambda x, y: fc.frechet_distance(x, y), ref.frechet_distance, (500, 60, 32)),
    ("fd streaming", lambda x, y: fc.frechet_distance_from_stats(fc.gaussian_stats(x), fc.gaussian_stats(y)), ref.frechet_distance, (400, 300, 24)),
    ("mmd2 cubic", lambda x, y: fc.mmd2(x, y), ref.mmd2_unbiased, (300, 250, 16)),
    ("mmd2 cubic blocked", lambda x, y: fc.mmd2(x, y, block_size=37), ref.mmd2_unbiased, (300, 250, 16)),
    (
        "mmd2 gaussian",
        lambda x, y: fc.mmd2(x, y, kernel="gaussian", bandwidth=3.0, block_size=64),
        lambda x, y: ref.mmd2_unbiased(x, y, "gaussian", 3.0),
        (300, 250, 16),
    ),
    ("vendi cosine dual", lambda x, y: fc.vendi_score(x), lambda x, y: ref.vendi(x), (300, 0, 16)),
    ("vendi cosine primal", lambda x, y: fc.vendi_score(x), lambda x, y: ref.vendi(x), (40, 0, 64)),
    ("vendi q=2", lambda x, y: fc.vendi_score(x, q=2.0), lambda x, y: ref.vendi(x, q=2.0), (200, 0, 16)),
    ("vendi q=0.5", lambda x, y: fc.vendi_score(x, q=0.5), lambda x, y: ref.vendi(x, q=0.5), (200, 0, 16)),
    ("vendi q=inf", lambda x, y: fc.vendi_score(x, q=float("inf")), lambda x, y: ref.vendi(x, q=np.inf), (200, 0, 16)),
    (
        "vendi gaussian",
        lambda x, y: fc.vendi_score(x, kernel="gaussian", bandwidth=4.0),
        lambda x, y: ref.vendi(x, kernel="gaussian", bandwidth=4.0),
        (150, 0, 8),
    ),
]
for _field in ("precision", "recall", "density", "coverage"):
    REGISTRY.append(
        (
            f"prdc {_field}",
            lambda x, y, f=_field: getattr(fc.prdc(x, y, k=5, block_size=64), f),
            lambda x, y, f=_field: ref.prdc(x, y, 5)[f],
            (300, 260, 12),
        )
    )


@pytest.mark.parametrize("name, ours, theirs, shape", REGISTRY, ids=[r[0] for r in REGISTRY])
def test_against_float64_reference(name, ours, theirs, shape, rng):
    n_x, n_y, d = shape
    x, y = _sets(rng, n_x, max(n_y, 2), d)
    got = float(ours(x, y))
    want = float(theirs(x, y))
    assert got == pytest.approx(want, rel=FLOAT64_REFERENCE, abs=FLOAT64_REFERENCE)


@pytest.mark.parametrize("n_x, n_y, d", [(6, 7, 10), (6, 40, 10), (9, 5, 12)])
def test_singular_covariances_against_40_digit_reference(n_x, n_y, d, rng):
    """n <= d: covariances are singular, where sqrtm returns complex parts and Cholesky
    fails; faceaudit's cross-factor route must still be exact."""
    x, y = _sets(rng, n_x, n_y, d)
    assert float(fc.frechet_distance(x, y)) == pytest.approx(
        ref.frechet_distance_mpmath(x, y), rel=FLOAT64_REFERENCE
    )


def test_repeated_rows_against_40_digit_reference(rng):
    """n > d but fewer distinct rows than dimensions, as in every bootstrap replicate of a
    group with n near d: the covariance is singular (Cholesky fails) and the pivoted
    Cholesky route must match the 40-digit reference, alone and batched over replicates."""
    from faceaudit.core import _linalg

    x, y = _sets(rng, 15, 60, 24)
    repeated = x[rng.integers(0, 15, 40)]
    assert float(fc.frechet_distance(repeated, y)) == pytest.approx(ref.frechet_distance_mpmath(repeated, y),
                                                                   rel=FLOAT64_REFERENCE)
    s1, s2 = np.cov(repeated.T), np.cov(y.T)
    with pytest.raises(np.linalg.LinAlgError):
        scipy.linalg.cholesky(s1)
    batched = _linalg._host_product_spectrum(np.stack([s1, s1]), np.stack([s2, 2.0 * s2]))
    assert np.count_nonzero(batched[0]) <= 14  # rank of 15 distinct rows, centred
    np.testing.assert_array_equal(batched[0], _linalg._host_product_spectrum(s1, s2))
    np.testing.assert_allclose(batched[1], np.sqrt(2.0) * batched[0], rtol=FLOAT64_REFERENCE)


def test_host_lapack_and_xla_paths_agree(rng, monkeypatch):
    """The CPU fast path (host BLAS/LAPACK, called eagerly or through callbacks) and the
    portable XLA path give one answer; 256-row chunks make the host Gram kernels loop."""
    from faceaudit.core import _linalg

    monkeypatch.setattr(_linalg, "SCATTER_CHUNK_ELEMENTS", 256 * 24)
    x, y = _sets(rng, 1500, 1000, 24)
    xs, ys = _sets(rng, 20, 30, 40)
    key = jax.random.key(4)

    # PRDC's CPU path screens distances in float32 and decides every pair within the
    # rounding bound in float64: duplicated rows (zero radii) and a large common offset
    # (|x|^2 >> distances, the bound's worst case) must still give the float64 answer.
    dup_real = np.concatenate([x[:300], x[:300], x[:100]])
    dup_fake = np.concatenate([y[:400], x[:100]])
    offset = 1000.0 + 30.0 * x[:500]

    def metrics():
        kid = fc.kid(x, y, key=key, num_subsets=4, subset_size=300)
        prdc = [fc.prdc(a, b, k=k, block_size=128) for a, b, k in
                ((x[:900], y[:700], 5), (dup_real, dup_fake, 3), (offset, offset[::-1] + y[:500], 5))]
        return [float(fc.frechet_distance(x, y)), float(fc.frechet_distance(xs, ys)), float(fc.vendi_score(x)),
                float(fc.vendi_score(x, q=float("inf"))), float(kid.mean), float(kid.std),
                float(jax.jit(fc.frechet_distance)(x, y))] + [float(v) for p in prdc for v in p]

    fast = metrics()
    with fc.xla_only():
        portable = metrics()
    np.testing.assert_allclose(fast, portable, rtol=FLOAT64_REFERENCE)


@pytest.mark.parametrize("n, block, duplicates", [(11, 64, False), (700, 128, False), (700, 100, True), (1000, 1000, True)])
def test_screened_knn_radii_are_the_float64_radii(rng, n, block, duplicates):
    """PRDC's CPU k-NN radii (float32 screening over the upper-triangle blocks, shared
    among threads, merged, then re-checked in float64) equal a brute-force float64 sort:
    rows fewer than the kept candidates, ragged last blocks, exact ties."""
    from faceaudit.core import _prdc

    x = rng.normal(size=(n, 40)) + 50.0  # a common offset: |x|^2 >> distances
    if duplicates:
        x[n // 2:] = x[: n - n // 2]
    screen = _prdc._Screen.of(x, _prdc._screening_error(x.shape[1]))
    sq = np.einsum("ij,ij->i", x, x)
    brute = np.maximum(sq[:, None] + sq[None] - 2.0 * x @ x.T, 0.0)
    for k in (1, 5):
        want = np.sort(brute, axis=1)[:, k]
        # Same pairs, summation orders differ (einsum against GEMM), so a duplicate's zero
        # distance comes out as ~eps |x|^2 here; a wrong neighbour would be off by a gap
        # between neighbours, far above both tolerances.
        np.testing.assert_allclose(_prdc._host_knn_radius2(screen, k, block), want, rtol=FLOAT64_REFERENCE,
                                   atol=64 * np.finfo(float).eps * sq.max())


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 13), (64, 300), (0, 4)])
@pytest.mark.parametrize("density", [0.0, 0.002, 0.3, 1.0])
def test_sparse_nonzero_is_numpy_nonzero(rng, shape, density):
    """PRDC's word-wise ``nonzero`` (8 mask bytes at a time) lists the same entries in the
    same row-major order as ``np.nonzero``, including a tail shorter than a word."""
    from faceaudit.core import _prdc

    mask = rng.random(shape) < density
    want = np.nonzero(mask)
    got = _prdc._sparse_nonzero(mask)
    assert len(got) == 2
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


def test_knn_row_blocks_are_shared_evenly():
    """Upper-triangle row blocks shrink down the matrix; each thread gets near half the columns."""
    from faceaudit.core import _prdc

    sizes = [10_000 - p for p in range(0, 10_000, 512)]
    shares = _prdc._balanced(sizes, 2)
    assert sorted(i for share in shares for i in share) == list(range(len(sizes)))
    loads = [sum(sizes[i] for i in share) for share in shares]
    assert max(loads) - min(loads) <= max(sizes)
    assert _prdc._balanced([5], 4) == [[0]]


def test_singular_values_skip_zero_rows_and_columns_exactly(rng):
    """Bootstrap weights zero whole rows/columns of the cross factor; the host SVD drops
    them (4x less work) and must return the full matrix's singular values."""
    from faceaudit.core._linalg import _host_svdvals

    m = rng.normal(size=(3, 60, 50))
    m[:, rng.choice(60, 22, replace=False)] = 0.0
    m[:, :, rng.choice(50, 17, replace=False)] = 0.0
    m[2] = 0.0  # an all-zero replicate
    want = np.stack([np.linalg.svd(a, compute_uv=False) for a in m])
    np.testing.assert_allclose(_host_svdvals(m), want, rtol=FLOAT64_REFERENCE, atol=1e-13)


def test_float32_input_gives_the_float64_answer(rng):
    x, y = _sets(rng, 400, 300, 24)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    got = fc.frechet_distance(x32, y32)
    assert got.dtype == np.float64
    want = ref.frechet_distance(x32.astype(np.float64), y32.astype(np.float64))
    assert float(got) == pytest.approx(want, rel=FLOAT64_REFERENCE)


def test_streaming_in_batches_equals_one_shot(rng):
    x, y = _sets(rng, 1000, 700, 16)
    stats = fc.gaussian_stats_init(16)
    for batch in np.array_split(x, 7):
        stats = fc.gaussian_stats_update(stats, batch)
    one_shot = fc.gaussian_stats(x)
    np.testing.assert_allclose(stats.mean, one_shot.mean, rtol=EXACT_ALGEBRA, atol=EXACT_ALGEBRA)
    np.testing.assert_allclose(stats.scatter, one_shot.scatter, rtol=1e-11)
    fd = fc.frechet_distance_from_stats(stats, fc.gaussian_stats(y))
    assert float(fd) == pytest.approx(ref.frechet_distance(x, y), rel=FLOAT64_REFERENCE)


def test_streaming_is_stable_far_from_the_origin(rng):
    """Centred (Chan) merging: a 1e6 offset must not cancel away the covariance."""
    x, y = _sets(rng, 2000, 2000, 8)
    offset = 1e6
    stats = fc.gaussian_stats_init(8)
    for batch in np.array_split(x + offset, 10):
        stats = fc.gaussian_stats_update(stats, batch)
    fd = fc.frechet_distance_from_stats(stats, fc.gaussian_stats(y + offset))
    assert float(fd) == pytest.approx(ref.frechet_distance(x, y), rel=1e-8)


@pytest.mark.parametrize("path", ["host", "xla"])
def test_kid_matches_reference_on_the_same_subsets(path, rng, monkeypatch):
    """KID = mean of per-subset unbiased MMD^2; reproduce the subsets from the key. The XLA
    path (a GPU's) runs in chunks of 2 subsets here, so the last chunk is a partial one."""
    import contextlib

    from faceaudit.core import _mmd

    monkeypatch.setattr(_mmd, "KID_CHUNK_BYTES", 2 * 3 * 8 * 50**2)
    x, y = _sets(rng, 120, 100, 8)
    key = jax.random.key(3)
    with fc.xla_only() if path == "xla" else contextlib.nullcontext():
        got = fc.kid(x, y, key=key, num_subsets=5, subset_size=50)
    values = []
    for k in jax.random.split(key, 5):
        kx, ky = jax.random.split(k)
        ix = np.asarray(jax.random.choice(kx, 120, (50,), replace=False))
        iy = np.asarray(jax.random.choice(ky, 100, (50,), replace=False))
        values.append(ref.mmd2_unbiased(x[ix], y[iy]))
    assert float(got.mean) == pytest.approx(np.mean(values), rel=FLOAT64_REFERENCE)
    assert float(got.std) == pytest.approx(np.std(values), rel=1e-8)


def test_weighted_mmd_equals_mmd_of_the_repeated_rows(rng):
    x, y = _sets(rng, 40, 30, 6)
    wx = rng.integers(0, 3, 40).astype(float)
    wy = rng.integers(1, 3, 30).astype(float)
    got = fc.mmd2_weighted(x, wx, y, wy, block_size=16)
    want = ref.mmd2_unbiased(np.repeat(x, wx.astype(int), 0), np.repeat(y, wy.astype(int), 0))
    assert float(got) == pytest.approx(want, rel=FLOAT64_REFERENCE)


def test_weighted_vendi_equals_vendi_of_the_repeated_rows(rng):
    x, _ = _sets(rng, 30, 2, 5)
    w = rng.integers(0, 4, 30).astype(float)
    got = fc.vendi_score_weighted(x, w)
    assert float(got) == pytest.approx(ref.vendi(np.repeat(x, w.astype(int), 0)), rel=FLOAT64_REFERENCE)


def test_cosine_metrics_against_numpy(rng):
    a, b, c, e = (rng.normal(size=(50, 12)) for _ in range(4))

    def cos(u, v):
        return np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)

    np.testing.assert_allclose(fc.clip_score(a, b), cos(a, b), rtol=EXACT_ALGEBRA)
    np.testing.assert_allclose(fc.clip_score(a, b, scale=100, clip_negative=True), 100 * np.maximum(cos(a, b), 0), rtol=EXACT_ALGEBRA)
    def unit(u):
        return u / np.linalg.norm(u, axis=1, keepdims=True)

    np.testing.assert_allclose(fc.directional_similarity(a, b, c, e), cos(unit(b) - unit(a), unit(e) - unit(c)),
                               rtol=EXACT_ALGEBRA)
    np.testing.assert_allclose(fc.image_similarity(a, c), cos(a, c), rtol=EXACT_ALGEBRA)


def _screening_bound_reference(d: int) -> float:
    """Rounding bound of a float32 squared distance |a|^2 + |b|^2 - 2 a.b from float64 rows,
    per unit of |a|^2 + |b|^2, derived independently of the code: inputs rounded to float32
    (relative u each, so |a'.b' - a.b| <= (2u + u^2)|a||b|), a float32 dot product
    (gamma_d |a'||b'|, Higham Thm 3.1), the -2 factor (exact), float64 norms rounded to
    float32 (u each) and two float32 additions (u times their operands' magnitudes), with
    2|a||b| <= |a|^2 + |b|^2."""
    u = 2.0**-24
    gamma = d * u / (1 - d * u)
    dot = (gamma * (1 + u) ** 2 + 2 * u + u * u)  # times 2|a||b|, i.e. times (|a|^2 + |b|^2)
    norms = u
    additions = 2 * u * (1 + dot + norms) * 2  # each sum's operands are bounded by 2(|a|^2 + |b|^2)
    return dot + norms + additions


@pytest.mark.parametrize("d", [1, 8, 64, 512, 2048, 8192])
def test_prdc_screening_bound_covers_the_worst_case_rounding(d):
    """The float32 screen decides a pair only outside +-c (|a|^2 + |b|^2); c must be at least
    the worst-case rounding (a smaller c silently mis-decides pairs near a radius) and not
    wastefully larger (every pair within c is recomputed in float64)."""
    from faceaudit.core import _prdc

    c = _prdc._screening_error(d)
    reference = _screening_bound_reference(d)
    assert reference <= c <= 4 * reference


def test_prdc_screening_bound_holds_on_adversarial_rows(rng):
    """Large common offsets (|x|^2 >> distances) maximise cancellation: every pair's float32
    screened distance stays within the bound of its float64 value."""
    from faceaudit.core import _prdc

    d = 512
    a = rng.normal(size=(300, d)) + 300.0
    b = rng.normal(size=(200, d)) * 1e-3 + 300.0
    c = _prdc._screening_error(d)
    sa, sb = _prdc._Screen.of(a, c), _prdc._Screen.of(b, c)
    d32 = _prdc._sq_dist32(sa, slice(None), sb, slice(None), np.empty(300 * 200, np.float32)).astype(np.float64)
    exact = np.maximum(sa.sq[:, None] + sb.sq[None, :] - 2.0 * a @ b.T, 0.0)
    err = np.abs(d32 - exact)
    assert np.all(err <= sa.err[:, None] + sb.err[None, :])
    assert err.max() > 0  # the screen really is inexact here


def test_prdc_decisions_at_radius_times_one_plus_minus_1e7(rng):
    """Generated points placed at distance r (1 +- 1e-7) from a real point, r its k-NN
    radius, far from the origin: each lies just inside or just outside that ball, below
    float32 resolution. The CPU path (float32 screen + float64 re-check) must decide every
    one as a float64 brute-force computation does."""
    k, d = 3, 64
    offset = 40.0
    real = rng.normal(size=(120, d)) + offset
    radius = np.sqrt(np.sort(ref_sq_dist(real, real), axis=1)[:, k])
    direction = rng.normal(size=(120, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    factor = np.where(np.arange(120) % 2 == 0, 1 - 1e-7, 1 + 1e-7)
    fake = real + direction * (radius * factor)[:, None]
    want = ref.prdc_membership(real, fake, k)
    got = fc.knn_membership(real, fake, k=k)
    np.testing.assert_array_equal(got.fake_in_real, want["fake_in_real"])
    np.testing.assert_array_equal(got.real_covered, want["real_covered"])
    np.testing.assert_array_equal(got.real_recalled, want["real_recalled"])
    # The construction works: the points alternate inside/outside their own real ball.
    own = np.sum((fake - real) ** 2, axis=1) < radius**2
    np.testing.assert_array_equal(own, factor < 1)


def ref_sq_dist(a, b):
    from scipy.spatial.distance import cdist

    return cdist(a, b, "sqeuclidean")


def test_knn_membership_is_the_per_sample_prdc(rng):
    real, fake = rng.normal(size=(150, 12)), rng.normal(size=(130, 12)) + 0.3
    want = ref.prdc_membership(real, fake, 5)
    for run in (lambda: fc.knn_membership(real, fake, k=5), ):
        got = run()
        np.testing.assert_array_equal(got.fake_in_real, want["fake_in_real"])
        np.testing.assert_array_equal(got.real_covered, want["real_covered"])
        np.testing.assert_array_equal(got.real_recalled, want["real_recalled"])
    with fc.xla_only():
        got = fc.knn_membership(real, fake, k=5)
    np.testing.assert_array_equal(got.fake_in_real, want["fake_in_real"])
    summary = fc.prdc(real, fake, k=5)
    assert float(summary.density) == pytest.approx(want["fake_in_real"].sum() / (5 * 130))


def test_directional_similarity_is_the_studys_definition(rng):
    """The study's ClipSimilarity (after InstructPix2Pix): each feature normalised, then
    F.cosine_similarity(I1 - I0, T1 - T0), written here in torch."""
    import torch
    import torch.nn.functional as F

    i0, i1, t0, t1 = (rng.normal(size=(20, 16)) * rng.uniform(0.5, 3.0, size=(20, 1)) + 0.3 for _ in range(4))

    def unit(a):
        a = torch.as_tensor(a)
        return a / a.norm(dim=1, keepdim=True)

    want = F.cosine_similarity(unit(i1) - unit(i0), unit(t1) - unit(t0)).numpy()
    got = fc.directional_similarity(i0, i1, t0, t1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=FLOAT64_REFERENCE)
    # The raw-vector difference is a different number on features of unequal length.
    raw = F.cosine_similarity(torch.as_tensor(i1 - i0), torch.as_tensor(t1 - t0)).numpy()
    assert np.max(np.abs(raw - want)) > 0.05
    np.testing.assert_allclose(np.asarray(fc.image_similarity(i0, i1)), F.cosine_similarity(torch.as_tensor(i0), torch.as_tensor(i1)).numpy(),
                               rtol=FLOAT64_REFERENCE)


def test_pixel_distances_are_magicbrushs_l1_and_mse(rng):
    import torch

    a, b = rng.random((3, 24, 24)), rng.random((3, 24, 24))
    l1, l2 = fc.pixel_distances(a, b)
    assert float(l1) == pytest.approx(torch.nn.L1Loss()(torch.as_tensor(a), torch.as_tensor(b)).item(), rel=EXACT_ALGEBRA)
    assert float(l2) == pytest.approx(torch.nn.MSELoss()(torch.as_tensor(a), torch.as_tensor(b)).item(), rel=EXACT_ALGEBRA)
    with pytest.raises(ValueError, match="one shape"):
        fc.pixel_distances(a, b[:, :5])
