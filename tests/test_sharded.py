"""Generation and embedding sharded over a local Ray instance (2 workers, CPU, the tiny
pipeline) against the single-process run: the same bytes and the same manifest, also when
a worker or the driver is killed mid-run."""

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceaudit.files.manifest import read_manifest
from faceaudit.files.spec import RaySpec, load_spec
from faceaudit.files.store import EmbeddingStore, read_index
from faceaudit.torch_layer.generate import generate
from tests import kill_hooks
from tests.cli import run as cli
from tests.test_torch_layer import SPEC
from tests.tiny_models import tiny_stable_diffusion

pytest.importorskip("ray")

# One image per call and three group images: 10 batches, so a kill lands mid-run. One torch
# thread everywhere: a CPU convolution's rounding depends on the thread count.
SHARDED_SPEC = SPEC.replace("group_images = 1", "group_images = 3") + '\n[ray]\nworkers = 2\ncpus_per_worker = 1.0\n'
IMAGES = 10


def _parts(out: Path) -> int:
    return len(list((out / "generate-parts").glob("*.parquet")))


def _manifest(out: Path):
    """The manifest less the render times, and each image's bytes."""
    manifest, meta = read_manifest(out / "manifest.parquet")
    manifest = manifest.drop(columns="seconds").sort_values("image_id").reset_index(drop=True)
    return manifest, {r.image_id: (out / r.path).read_bytes() for r in manifest.itertuples()}


def _ray_workers() -> list[int]:
    """PIDs of this machine's Ray actors holding a pipeline (their process title names the class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if entry.name.isdigit() and title.startswith(b"ray::ShardWorker"):
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sharded")
    model = tiny_stable_diffusion(tmp / "models")
    path = tmp / "spec.toml"
    path.write_text(SHARDED_SPEC.format(model=model, batch=1).replace("dtype = \"float32\"", "dtype = \"float32\"\nthreads = 1"))
    return path


@pytest.fixture(scope="module")
def single(spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "out"
    generate(load_spec(spec), out)
    return out


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module's in-process runs (``--ray auto`` joins it)."""
    import ray

    from faceaudit.torch_layer.sharded import connect

    connect(RaySpec(address="local"))
    yield
    ray.shutdown()


def test_two_ray_workers_match_the_single_process_run_when_one_is_killed(spec, single, tmp_path):
    """A Ray worker SIGKILLs itself right after writing its first part (a hook in every
    worker; the marker file makes it one kill in all); Ray restarts it, the batch is
    retried, and the run equals the single-process one byte for byte."""
    out, marker = tmp_path / "ray", tmp_path / "worker-killed"
    env = {**kill_hooks.install(tmp_path / "hook"), "FACEAUDIT_TEST_KILL_AT_PARTS": f"generate-parts:1:{marker}"}
    result = subprocess.run([sys.executable, "-m", "faceaudit", "generate", str(spec), "--out", str(out), "--ray", "local"],
                            capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker.exists(), "no worker was killed"
    sharded, images = _manifest(out)
    reference, reference_images = _manifest(single)
    assert len(sharded) == IMAGES and sharded.equals(reference)
    assert images == reference_images
    assert len(list((out / "images").rglob("*.png"))) == IMAGES  # the retried batch wrote the same files again


def test_embedding_on_ray_workers_equals_embedding_here(spec, single, local_ray, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    for target in (here, there):
        subprocess.run(["cp", "-r", str(single), str(target)], check=True)
    assert cli("embed", spec, "--out", here).returncode == 0
    result = cli("embed", spec, "--out", there, "--ray", "auto")
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_index(here) == read_index(there)
    manifest, _ = read_manifest(single / "manifest.parquet")
    for entry in read_index(here).values():
        if entry["preprocessing"] == "open_clip-tokenizer":
            continue
        a = EmbeddingStore(here, entry["encoder"], entry["preprocessing"]).load(manifest.image_id)
        b = EmbeddingStore(there, entry["encoder"], entry["preprocessing"]).load(manifest.image_id)
        np.testing.assert_array_equal(a["found"].values, b["found"].values)
        np.testing.assert_allclose(a["embedding"].values, b["embedding"].values, rtol=0, atol=1e-5)


def test_a_killed_ray_driver_resumes_with_nothing_lost_or_duplicated(spec, single, tmp_path):
    out = tmp_path / "driver"
    # The driver in its own session; the worker that writes the second part kills the whole
    # group: the driver, the local Ray instance it started and both workers.
    env = {**kill_hooks.install(tmp_path / "hook"), "JAX_PLATFORMS": "cpu", "FACEAUDIT_TEST_KILL_GROUP": "1",
           "FACEAUDIT_TEST_KILL_AT_PARTS": f"generate-parts:2:{tmp_path / 'group-killed'}"}
    proc = subprocess.Popen([sys.executable, "-m", "faceaudit", "generate", str(spec), "--out", str(out), "--ray", "local"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    assert proc.wait(timeout=600) == -signal.SIGKILL
    # Both workers may finish a part in the same instant: 2, or 3 when the other's rename
    # landed before the kill.
    assert _parts(out) in (2, 3)
    assert not (out / "manifest.parquet").exists()
    result = cli("generate", spec, "--out", out, "--ray", "local")
    assert result.returncode == 0, result.stderr[-3000:]
    resumed, images = _manifest(out)
    reference, reference_images = _manifest(single)
    assert resumed.equals(reference) and images == reference_images
    assert len(list((out / "images").rglob("*.png"))) == IMAGES
