"""`faceaudit audit` end to end on a small simulated world; the report in headless chromium."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SMALL = """[simulate]
races = ["Asian", "White"]
race_shares = [0.15, 0.85]
dim = 8
reference_per_group = 100
group_images = 100
invented_identities = 5
celebrity_identities = 2
seeds_per_identity = 3
"""


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "faceaudit", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    (root / "small.toml").write_text(SMALL)
    out = root / "out"
    result = _cli("audit", "--out", str(out), "--simulate-config", str(root / "small.toml"), "--bootstrap", "10",
                  "--draws", "50")
    assert result.returncode == 0, result.stderr[-3000:]
    return root, out, result.stdout


def test_audit_writes_every_stage_file_and_prints_findings(audited):
    _, out, stdout = audited
    for name in ("manifest.parquet", "metrics.parquet", "posterior.nc", "selection.nc", "report.html",
                 "image_metrics.parquet", "disparity.json", "selection_summary.parquet", "share_curves.parquet"):
        assert (out / name).is_file(), name
    assert "report:" in stdout and "1. " in stdout and "3. " in stdout
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert {"fd_unbiased", "verification_same_group", "vendi", "coverage"} <= set(metrics.metric)
    bounded = metrics[metrics.metric.isin(["coverage", "precision", "verification_same_group"])]
    assert bounded.low.min() >= 0 and bounded.high.max() <= 1
    import arviz as az

    assert "cell_mean" in az.from_netcdf(out / "posterior.nc").posterior
    # The explain stage sees the simulated skew (15% Asian, 85% White): the rare race gets the
    # smaller total share. (Recovery at the nominal rate is tested in test_selection_pipeline.)
    shares = pd.read_parquet(out / "selection_summary.parquet").set_index("group")["share_mean"]
    assert shares.filter(like="Asian").sum() < shares.filter(like="White").sum()


def test_rerun_skips_finished_stages_and_dry_run_says_so(audited):
    root, out, _ = audited
    dry = _cli("audit", "--out", str(out), "--dry-run")
    assert dry.returncode == 0
    assert dry.stdout.count("[skip]") == 5
    (out / "report.html").unlink()
    again = _cli("audit", "--out", str(out), "--simulate-config", str(root / "small.toml"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("[skip]") == 4 and "[run ] report" in again.stdout
    assert (out / "report.html").is_file()


def test_bad_simulation_config_fails_early_naming_the_file(tmp_path):
    result = _cli("audit", "--out", str(tmp_path / "o"), "--simulate-config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "missing.toml" in result.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(audited, tmp_path):
    _, out, _ = audited
    shot = tmp_path / "report.png"
    common = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    result = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,2000", (out / "report.html").as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "rror" in line]
    assert not console_errors, console_errors
    dom = subprocess.run([*common, "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert "Headline findings" in dom.stdout and dom.stdout.count("<img") >= 4
    from PIL import Image

    pixels = Image.open(shot).convert("L")
    assert pixels.getextrema()[0] < 100  # text and figures drawn, not a blank page
    Path(shot).replace(out / "report-screenshot.png")
