"""The bad-input catalogue: every way a user was seen to get a traceback, silent garbage or a
late failure, each asserting the exit code, that the message names the culprit, and that
nothing half-written is left behind. (Core-level bad inputs: tests/core/test_bad_input.py.)"""

from __future__ import annotations

import json

import jax
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import faceaudit.core as fc
from faceaudit.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def arrays(tmp_path, rng):
    np.save(tmp_path / "real.npy", rng.normal(size=(60, 6)))
    np.save(tmp_path / "fake.npy", rng.normal(size=(60, 6)) + 0.3)
    return tmp_path


@pytest.mark.parametrize("change, culprit", [
    (lambda t: np.save(t / "real.npy", np.zeros((0, 6))), "is empty"),
    (lambda t: (t / "real.npy").write_bytes(b"\x93NUMPY garbage"), "is not a readable .npy array"),
    (lambda t: np.save(t / "real.npy", np.ones((60, 6), dtype=np.int64)), "must be floating point"),
    (lambda t: np.save(t / "real.npy", np.ones(60)), "must hold an (n, d) array"),
    (lambda t: np.save(t / "fake.npy", np.ones((60, 7))), "both must come from one encoder"),
])
def test_metrics_input_files(arrays, change, culprit):
    change(arrays)
    result = invoke("metrics", arrays / "real.npy", arrays / "fake.npy")
    assert result.exit_code == 2 and culprit in result.output


def test_output_paths_that_cannot_be_written_are_refused_before_the_work(arrays):
    folder_as_json = arrays / "out"
    folder_as_json.mkdir()
    result = invoke("metrics", arrays / "real.npy", arrays / "fake.npy", "--json", folder_as_json)
    assert result.exit_code == 2 and "is a folder" in result.output
    (arrays / "file").write_text("x")
    result = invoke("audit", "--out", arrays / "file" / "audit", "--dry-run")
    assert result.exit_code == 2 and "is not a writable folder" in result.output


def test_square_brackets_in_names_are_printed_verbatim(arrays):
    """rich markup would swallow "[v2]"; paths and messages are printed as they are."""
    weird = arrays / "faces [v2].npy"
    (arrays / "real.npy").rename(weird)
    result = invoke("metrics", weird, arrays / "missing [x].npy")
    assert result.exit_code == 2 and "missing [x].npy" in result.output


def test_spec_errors_keep_their_section_names(tmp_path):
    from faceaudit.files.spec import EXAMPLE

    spec = tmp_path / "spec.toml"
    spec.write_text(EXAMPLE.replace("guidance = 7.5", 'guidance = "high"'))
    result = invoke("spec", "check", spec)
    assert result.exit_code == 2 and "[[generators]][0].guidance must be float" in result.output


@pytest.mark.parametrize("edit, culprit", [
    ({'architecture = "ViT-B-32"': 'architecture = "ViT-B-99"'}, "no architecture 'ViT-B-99'"),
    ({'pretrained = "laion2b_s34b_b79k"': 'pretrained = "{t}/missing.bin"'}, "does not exist"),
    ({'model = "stabilityai/stable-diffusion-2-1"': 'model = "{t}/no-model"'}, "no model_index.json"),
    ({'pretrained = "laion2b_s34b_b79k"': 'pretrained = "random"'}, "[reference] names no images"),
])
def test_spec_check_finds_what_would_fail_after_generation(tmp_path, edit, culprit):
    """spec check runs the audit's own pre-flight: model paths, encoder architectures and
    weights, the reference images; each refused by name before any image is generated."""
    from faceaudit.files.spec import EXAMPLE

    text = EXAMPLE
    for old, new in edit.items():
        text = text.replace(old, new.format(t=tmp_path))
    (tmp_path / "spec.toml").write_text(text)
    result = invoke("spec", "check", tmp_path / "spec.toml")
    assert result.exit_code == 2 and culprit in result.output, result.output


def _image_folder(tmp_path, per_group: int):
    from PIL import Image
    from skimage import data

    faces = data.lfw_subset()[: 4 * per_group]
    rows = []
    for i, face in enumerate(faces):
        Image.fromarray((255 * face).astype(np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(dict(path=f"{i}.png", role=("reference", "generated")[i % 2], race="AB"[i // (2 * per_group)],
                         gender="x"))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    return tmp_path, tmp_path / "m.csv"


def test_image_audit_with_default_weights_is_refused_before_any_work(tmp_path):
    """Offline, the default encoder's pretrained weights cannot be had: refused before the
    images are read or embedded, saying how to pass a checkpoint (no random weights)."""
    folder, manifest = _image_folder(tmp_path, 20)
    out = tmp_path / "out"
    result = invoke("audit", "--images", folder, "--manifest", manifest, "--out", out)
    assert result.exit_code == 2 and "pass a local checkpoint" in result.output
    assert not (out / "manifest.parquet").exists()


def test_image_audit_with_too_few_images_per_group_is_refused_before_embedding(tmp_path):
    folder, manifest = _image_folder(tmp_path, 5)
    out = tmp_path / "out"
    result = invoke("audit", "--images", folder, "--manifest", manifest, "--out", out, "--clip", "ViT-B-32:random")
    assert result.exit_code == 2 and "group 'A x x' has" in result.output and "need at least" in result.output
    assert not (out / "embeddings").exists()


def test_broken_stage_files_are_named_with_what_to_do(tmp_path, rng):
    from faceaudit.files.folder import AuditFolder
    from faceaudit.files.store import EmbeddingStore
    from faceaudit.pipeline import run_stage
    from faceaudit.stages import simulate

    config = simulate.SimulationConfig(races=("A", "B"), genders=("x",), race_shares=(0.5, 0.5), dim=4,
                                       reference_per_group=30, group_images=30, invented_identities=2,
                                       celebrity_identities=0, seeds_per_identity=2, labelled_identities=4)
    run_stage(tmp_path, simulate, simulate.Settings(0, config))
    part = EmbeddingStore(tmp_path, "simulated", "none").parts()[0]
    whole = part.read_bytes()
    part.write_bytes(whole[:100])  # a truncated netCDF part
    result = invoke("measure", tmp_path)
    assert result.exit_code == 2 and part.name in result.output and "faceaudit embed" in result.output
    assert not (tmp_path / "metrics.parquet").exists()
    result = invoke("report", tmp_path)  # a folder whose stages disagree is never reported from
    assert result.exit_code == 2 and "disagree" in result.output and part.parent.name in result.output
    part.write_bytes(whole)
    (tmp_path / "metrics.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(Exception, match="metrics.parquet is not a readable Parquet file.*--force measure"):
        AuditFolder(tmp_path).read_parquet("metrics.parquet", stage="measure")
    result = invoke("report", tmp_path)
    assert result.exit_code == 2 and "metrics.parquet" in result.output


def test_bootstrap_intervals_need_replicates_and_memory_stays_bounded(rng, key):
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    with pytest.raises(ValueError, match="needs num_bootstrap >= 20"):
        fc.by_group("fd", x, np.zeros(40), y, np.zeros(40), key=key, interval="basic", num_bootstrap=1)
    with pytest.raises(ValueError, match="at most"):
        fc.by_group("fd", x, np.zeros(40), y, np.zeros(40), key=key, interval="basic", num_bootstrap=10**8)
    # Replicates are drawn and evaluated in chunks: 20,000 of them on a small group is fine.
    many = fc.by_group("mmd2", x, np.zeros(40), y, np.zeros(40), key=key, interval="percentile", num_bootstrap=20_000)
    assert many.replicates.shape == (1, 20_000) and np.isfinite(many.replicates).all()


def test_single_chain_fits_say_rhat_cannot_check_convergence(tmp_path, rng):
    groups = np.repeat(["A", "B"], 60)
    frame = pd.DataFrame({"y": np.where(rng.random(120) < np.where(groups == "A", 0.8, 0.5), "yes", "no"), "g": groups})
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = invoke("disparity", tmp_path / "t.csv", "--outcome", "y", "--success", "yes", "--group", "g",
                    "--attribute", "", "--item", "", "--samples", "100", "--chains", "1", "--json", tmp_path / "d.json")
    assert result.exit_code == 0, result.output
    assert "one chain: R-hat cannot check convergence" in result.output
    assert json.loads((tmp_path / "d.json").read_text())["diagnostics"]["max_r_hat"] is None


def test_gradients_of_the_public_metrics_go_through_xla(rng):
    """jax.grad of FD works (the host LAPACK kernels defer their derivative to XLA's)."""
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(40, 3)) + 0.2
    g = np.asarray(jax.grad(lambda a: fc.frechet_distance(a, y))(jax.numpy.asarray(x)))
    e = np.zeros_like(x)
    e[5, 2] = 1e-6
    numeric = (float(fc.frechet_distance(x + e, y)) - float(fc.frechet_distance(x - e, y))) / 2e-6
    assert g[5, 2] == pytest.approx(numeric, rel=1e-5, abs=1e-9)
