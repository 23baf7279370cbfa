"""faceaudit.core must stay a pure JAX + numpy layer."""

import subprocess
import sys


def test_core_imports_no_heavy_frameworks():
    code = (
        "import sys, faceaudit.core; "
        "bad = [m for m in ('torch', 'xarray', 'pandas', 'numpyro', 'diffusers', 'open_clip') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_models_install_inside_the_package():
    result = subprocess.run(
        [sys.executable, "-c", "import faceaudit.models; import importlib.util as u; print(u.find_spec('models'))"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"
