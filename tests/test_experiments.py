"""The analytical-model experiments run end to end with tiny arguments (subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *args):
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], capture_output=True, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_training_mix_sweep(tmp_path):
    _run("training_mix_sweep.py", "--out", str(tmp_path), "--dim", "8", "--points", "2", "--replicates", "150")
    res = json.loads((tmp_path / "training_mix_sweep.json").read_text())
    fd = res["fd"][res["group"]]
    assert fd[0] > fd[-1]  # more training share, smaller FD
    assert res["max_abs_z_closed_form_vs_monte_carlo"] < 4
    assert (tmp_path / "training_mix_sweep.png").stat().st_size > 10_000


def test_celebrity_vs_invented(tmp_path):
    _run("celebrity_vs_invented.py", "--out", str(tmp_path), "--identities", "12", "--seeds", "3")
    res = json.loads((tmp_path / "celebrity_vs_invented.json").read_text())
    rare = min(res, key=lambda g: res[g]["share"])
    assert res[rare]["celebrity"]["closed_form"] > res[rare]["invented"]["closed_form"]
    assert (tmp_path / "celebrity_vs_invented.png").is_file()


@pytest.mark.slow  # ~90 s: random-weight ViT-B-32 over 40 images, measure, disparity, report
def test_audit_image_folder_end_to_end(tmp_path):
    _run("audit_image_folder.py", "--demo", "40", "--out", str(tmp_path), "--bootstrap", "10", "--draws", "60")
    res = json.loads((tmp_path / "audit_image_folder.json").read_text())
    assert {r["group"] for r in res["fd_unbiased"]} >= {"half-A x unlabelled", "half-B x unlabelled"}
    assert (tmp_path / "audit" / "report.html").is_file()
    manifest = __import__("pandas").read_parquet(tmp_path / "audit" / "manifest.parquet")
    assert (manifest.role == "reference").sum() == 20


@pytest.mark.slow  # ~4 min: 4 NUTS fits of the selection model
def test_selection_calibration_reduced_run(tmp_path):
    """Simulation-based calibration of `faceaudit explain`'s model, reduced to 4 prior draws
    (4 shares + 4 shifts + diversity + transfer + shrinkage = 44 intervals at nominal 0.9).

    The full run (24 fits, benchmarks/results/selection_calibration.json) covers at 0.81
    (MC SE 0.02): the fit's intervals are too narrow, an open finding of issue 5. This
    check guards the machinery and against a collapse: at a true rate of 0.81,
    P(coverage < 0.6) is below 1e-5.
    """
    _run("selection_calibration.py", "--fits", "4", "--samples", "100", "--warmup", "100", "--out", str(tmp_path))
    res = json.loads((tmp_path / "selection_calibration.json").read_text())
    assert res["intervals"] == 44
    assert res["coverage"] >= 0.6, res["families"]
    assert sum(len(r) for r in res["ranks"].values()) == 44
    assert (tmp_path / "selection_calibration.png").stat().st_size > 10_000
