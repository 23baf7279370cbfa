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
