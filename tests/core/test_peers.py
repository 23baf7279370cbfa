"""Cross-checks against the peer libraries' own functions, on the same float64 inputs."""

from __future__ import annotations

import numpy as np
import pytest

import faceaudit.core as fc
from tests.tolerances import PEER_FLOAT64, PEER_SQRTM

torch = pytest.importorskip("torch")


@pytest.fixture
def sets(rng):
    d = 48
    spectrum = np.linspace(0.1, 3.0, d)
    x = rng.normal(size=(600, d)) * np.sqrt(spectrum)
    y = rng.normal(size=(500, d)) * np.sqrt(spectrum[::-1]) + 0.1
    return x, y


def _moments(a):
    return a.mean(0), np.cov(a, rowvar=False)


def test_fd_vs_torchmetrics(sets):
    from torchmetrics.image.fid import _compute_fid

    x, y = sets
    (m1, s1), (m2, s2) = _moments(x), _moments(y)
    theirs = float(_compute_fid(*(torch.from_numpy(v) for v in (m1, s1, m2, s2))))
    assert float(fc.frechet_distance(x, y)) == pytest.approx(theirs, rel=PEER_FLOAT64)


def test_fd_vs_torch_fidelity(sets):
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    x, y = sets
    (m1, s1), (m2, s2) = _moments(x), _moments(y)
    theirs = fid_statistics_to_metric({"mu": m1, "sigma": s1}, {"mu": m2, "sigma": s2}, verbose=False)
    assert float(fc.frechet_distance(x, y)) == pytest.approx(theirs["frechet_inception_distance"], rel=PEER_FLOAT64)


def test_fd_vs_clean_fid(sets):
    from cleanfid.fid import frechet_distance

    x, y = sets
    theirs = frechet_distance(*_moments(x), *_moments(y))
    assert float(fc.frechet_distance(x, y)) == pytest.approx(theirs, rel=PEER_SQRTM)


def test_mmd_vs_torchmetrics_and_torch_fidelity(sets):
    from torch_fidelity.metric_kid import kernel_mmd
    from torchmetrics.image.kid import poly_mmd

    x, y = sets
    x, y = x[:500], y[:500]  # both peers need equal set sizes
    ours = float(fc.mmd2(x, y))
    tm = float(poly_mmd(torch.from_numpy(x), torch.from_numpy(y)))
    tf = float(
        kernel_mmd(x, y, kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    )
    assert ours == pytest.approx(tm, rel=PEER_FLOAT64)
    assert ours == pytest.approx(tf, rel=PEER_FLOAT64)


def test_prdc_vs_prdc_package(sets):
    from prdc import compute_prdc

    x, y = sets
    theirs = compute_prdc(real_features=x, fake_features=y, nearest_k=5)
    ours = fc.prdc(x, y, k=5, block_size=128)
    for field in ("precision", "recall", "density", "coverage"):
        assert float(getattr(ours, field)) == pytest.approx(theirs[field], rel=PEER_FLOAT64)


@pytest.mark.parametrize("q", [1.0, 2.0, 0.5])
def test_vendi_vs_vendi_score(sets, q):
    from vendi_score import vendi

    x, _ = sets
    assert float(fc.vendi_score(x, q=q)) == pytest.approx(vendi.score_dual(x, q=q), rel=PEER_FLOAT64)
    # vendi-score 0.0.3's score_X drops its q argument (it calls score_K with q=1), so the
    # primal route is compared at q = 1 only.
    assert float(fc.vendi_score(x[:200])) == pytest.approx(vendi.score_X(x[:200]), rel=PEER_FLOAT64)
