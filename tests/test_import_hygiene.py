"""The layers of ../shared/design/ARCHITECTURE.md import only downwards, and each layer
pulls in only what it needs."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(imports: str, banned: tuple[str, ...]) -> list[str]:
    code = (f"import sys; {imports}; "
            f"print([m for m in {banned!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip())


def test_import_layers_contract():
    """import-linter: cli > pipeline > stages > tables | torch_layer > models | files > core,
    each importing only below it; files/ and torch_layer/ never import jax; the core never
    imports torch, xarray, pandas or numpyro."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is not installed (the test extra installs it)"
    result = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_core_imports_no_heavy_frameworks():
    assert _modules_after("import faceaudit.core", ("torch", "xarray", "pandas", "numpyro", "diffusers", "open_clip")) == []


@pytest.mark.parametrize("module", ["faceaudit.files.folder", "faceaudit.files.records", "faceaudit.files.spec",
                                    "faceaudit.files.images", "faceaudit.files.survey", "faceaudit.files.arrays"])
def test_files_layer_needs_no_jax(module):
    assert _modules_after(f"import {module}", ("jax", "torch", "numpyro")) == []


def test_the_report_reads_files_without_statistics_or_plotting_at_import():
    """report.html is made from stage files: importing its stage pulls in no jax, no numpyro
    and does not pick a matplotlib backend (figures choose Agg when they are drawn)."""
    assert _modules_after("import faceaudit.stages.report", ("jax", "numpyro", "torch", "matplotlib.pyplot")) == []


def test_generation_and_embedding_import_ray_only_when_sharded():
    """Ray is an optional extra: the torch layer and its stages import it inside --ray runs only."""
    modules = "faceaudit.torch_layer.generate, faceaudit.torch_layer.embed, faceaudit.stages.generate, faceaudit.stages.embed"
    assert _modules_after(f"import {modules}", ("ray",)) == []


def test_cli_help_is_light():
    """`faceaudit --help` imports no jax, torch or numpyro (commands import what they need)."""
    assert _modules_after("import faceaudit.cli", ("jax", "torch", "numpyro", "arviz")) == []


def test_models_install_inside_the_package():
    result = subprocess.run(
        [sys.executable, "-c", "import faceaudit.models; import importlib.util as u; print(u.find_spec('models'))"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"
