"""The analytical-model experiments run end to end with tiny arguments (subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *args):
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], capture_output=True, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_training_mix_sweep(tmp_path):
    _run("training_mix_sweep.py", "--out", str(tmp_path), "--dim", "8", "--points", "3", "--replicates", "200")
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
