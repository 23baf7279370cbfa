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
from faceaudit.core import _groups

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
    assert result.exit_code == 2 and "[[generators]][0].guidance: input should be a valid number, got 'high'" in result.output


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
    from faceaudit.tables import simulation

    config = simulation.SimulationConfig(races=("A", "B"), genders=("x",), race_shares=(0.5, 0.5), dim=4,
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


def test_bootstrap_intervals_need_replicates_and_memory_stays_bounded(rng, key, monkeypatch):
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    with pytest.raises(ValueError, match="needs num_bootstrap >= 20"):
        fc.by_group("fd", x, np.zeros(40), y, np.zeros(40), key=key, interval="basic", num_bootstrap=1)
    with pytest.raises(ValueError, match="at most"):
        fc.by_group("fd", x, np.zeros(40), y, np.zeros(40), key=key, interval="basic", num_bootstrap=10**8)
    # Replicates are drawn and evaluated in chunks: the compiled program's working memory
    # (XLA's own accounting) is the same for 2,000 and 20,000 of them, and far below the
    # 128 MB that 20,000 replicates' count vectors on 400 + 400 rows would take at once.
    working = {}
    evaluate = _groups._evaluate

    def measured(*args, **static):
        working[static["num_bootstrap"]] = evaluate.lower(*args, **static).compile().memory_analysis().temp_size_in_bytes
        return evaluate(*args, **static)

    monkeypatch.setattr(_groups, "_evaluate", measured)
    x, y = rng.normal(size=(400, 3)), rng.normal(size=(400, 3))
    for count in (2_000, 20_000):
        many = fc.by_group("mmd2", x, np.zeros(400), y, np.zeros(400), key=key, interval="percentile",
                           num_bootstrap=count)
        assert many.replicates.shape == (1, count) and np.isfinite(many.replicates).all()
    assert working[20_000] < 1.1 * working[2_000] and working[20_000] < 32e6, working


def test_single_chain_fits_say_rhat_cannot_check_convergence(tmp_path, rng):
    groups = np.repeat(["A", "B"], 60)
    frame = pd.DataFrame({"y": np.where(rng.random(120) < np.where(groups == "A", 0.8, 0.5), "yes", "no"), "g": groups})
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = invoke("disparity", tmp_path / "t.csv", "--outcome", "y", "--success", "yes", "--group", "g",
                    "--attribute", "", "--item", "", "--draws", "100", "--chains", "1", "--json", tmp_path / "d.json")
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


# --- trust: nothing read that was not asked for, nothing stale, nothing merged or dropped ----


def _faces(folder, rows):
    """Write real faces (LFW, 25 x 25 grey) named by ``rows`` (dicts with path, role, race, gender)."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    faces = data.lfw_subset()
    for i, row in enumerate(rows):
        target = folder / row["path"]
        if not target.exists() and ".." not in row["path"] and not row["path"].startswith("/"):
            Image.fromarray((255 * faces[i]).astype(np.uint8)).save(target)
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)
    return folder / "m.csv"


def _pairs(n=4):
    return [dict(path=f"{i}.png", role=("reference", "generated")[i % 2], race="AB"[(i // 2) % 2], gender="x")
            for i in range(n)]


@pytest.mark.parametrize("escape", ["../outside/secret.png", "ABSOLUTE", "link.png"])
def test_manifest_paths_outside_the_images_folder_are_refused(tmp_path, escape):
    from PIL import Image

    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(outside / "secret.png")
    images = tmp_path / "images"
    rows = _pairs()
    images.mkdir()
    if escape == "link.png":
        (images / "link.png").symlink_to(outside / "secret.png")
    rows[2]["path"] = str(outside / "secret.png") if escape == "ABSOLUTE" else escape
    manifest = _faces(images, rows)
    out = tmp_path / "out"
    result = invoke("audit", "--images", images, "--manifest", manifest, "--out", out, "--clip", "ViT-B-32:random")
    assert result.exit_code == 2, result.output
    assert "line 4: path" in result.output and "outside the images folder" in result.output
    assert "--allow-outside-images" in result.output
    assert not (out / "manifest.parquet").exists()
    from faceaudit.files.images import ingest

    rows_read, _ = ingest(images, manifest, allow_outside=True)  # the explicit option reads it
    assert len(rows_read) == 4


def test_report_thumbnails_are_small_jpegs_whatever_the_original(tmp_path):
    import base64
    import io as _io

    from PIL import Image

    from faceaudit.stages.report import THUMBNAIL_BYTES, _thumbnail

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (2000, 2000, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    alt, uri = _thumbnail(tmp_path / "big.png", "<b>group</b>")
    assert alt == "<b>group</b>" and uri.startswith("data:image/jpeg;base64,")  # the template escapes alt text
    data = base64.b64decode(uri.split("base64,")[1])
    assert len(data) <= THUMBNAIL_BYTES and max(Image.open(_io.BytesIO(data)).size) <= 128


def test_one_image_listed_twice_is_refused_naming_both_lines(tmp_path):
    from faceaudit.files.images import ingest

    rows = _pairs(6)
    manifest = _faces(tmp_path, rows)
    (tmp_path / "copy.png").write_bytes((tmp_path / "2.png").read_bytes())
    pd.DataFrame(rows + [dict(rows[2], path="copy.png")]).to_csv(manifest, index=False)
    with pytest.raises(ValueError, match=r"line 4 \(reference, .*2.png\) and line 8 \(reference, .*copy.png\) are the same"):
        ingest(tmp_path, manifest)
    pd.DataFrame(rows + [dict(rows[2], role="generated")]).to_csv(manifest, index=False)  # one file, two roles
    with pytest.raises(ValueError, match=r"line 4 \(reference, .*\) and line 8 \(generated, .*\) are the same image"):
        ingest(tmp_path, manifest)


def test_group_labels_that_would_print_alike_are_refused_and_whitespace_is_stripped(tmp_path):
    from faceaudit.files.images import ingest

    rows = _pairs(4)
    rows[0].update(race="A x", gender="y")
    manifest = _faces(tmp_path, rows)
    with pytest.raises(ValueError, match=r"line 2: race 'A x' contains the word 'x'"):
        ingest(tmp_path, manifest)
    rows = _pairs(4)
    rows[1]["race"] = "A "  # a trailing space made a second group before
    pd.DataFrame(rows).to_csv(manifest, index=False)
    notes = []
    frame, _ = ingest(tmp_path, manifest, warn=notes.append)
    assert sorted(frame.group.unique()) == ["A x x", "B x x"]
    assert "line 3: race 'A ' has surrounding whitespace; read as 'A'" in notes[0]


def test_a_missing_label_in_a_parquet_manifest_names_line_and_column(tmp_path):
    from faceaudit.files.images import ingest

    rows = _pairs(4)
    _faces(tmp_path, rows)  # the image files (and a CSV this test replaces by Parquet)
    table = pd.DataFrame(rows)
    table.loc[1, "race"] = None
    table.to_parquet(tmp_path / "m.parquet")
    with pytest.raises(ValueError, match=r"m.parquet, line 3: column 'race' is empty"):
        ingest(tmp_path, tmp_path / "m.parquet")


@pytest.mark.parametrize("old, new, message", [
    ('race = ["Asian", "Black", "Indian", "White"]', 'race = ["A", "A", "B"]', r"\[groups\].race lists \['A'\] more than once"),
    ("identity_list = []", 'identity_list = "Barack Obama"', r"\[audit\].identity_list: input should be a valid list"),
    ("group_images = 8 ", 'group_images = "8" ', r"\[audit\].group_images: input should be a valid integer, got '8'"),
    ('templates = ["a photo of {name}, {group}"]', 'templates = "a photo of {name}"', r"\[audit\].templates: input should be a valid list"),
    ("guidance = 7.5", "guidance = -3", r"\[\[generators\]\]\[0\].guidance: input should be greater than or equal to 0"),
    ("steps = 30", "steps = 0", r"\[\[generators\]\]\[0\].steps: input should be greater than or equal to 1"),
])
def test_spec_schema_names_the_key(tmp_path, old, new, message):
    from faceaudit.files.spec import EXAMPLE, SpecError, load_spec

    assert old in EXAMPLE
    (tmp_path / "spec.toml").write_text(EXAMPLE.replace(old, new, 1))
    with pytest.raises(SpecError, match=message):
        load_spec(tmp_path / "spec.toml")


@pytest.mark.parametrize("option, message", [
    (["--draws", "0"], "--draws must be an integer >= 1, got 0"),
    (["--chains", "0"], "--chains must be an integer >= 1, got 0"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
])
def test_audit_options_are_refused_in_the_dry_run(tmp_path, option, message):
    result = invoke("audit", "--out", tmp_path / "out", "--dry-run", *option)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_options_without_effect_say_so_and_unwritable_outputs_are_refused_first(arrays):
    result = invoke("audit", "--out", arrays / "out", "--dry-run", "--bootstrap", "500")
    assert result.exit_code == 0 and "--bootstrap 500 has no effect with --interval jackknife" in result.output
    result = invoke("metrics", arrays / "real.npy", arrays / "fake.npy", "--json", "/proc/faceaudit.json")
    assert result.exit_code == 2 and "cannot write --json /proc/faceaudit.json" in result.output
    assert "fd_audit" not in result.output  # refused before any metric ran


def test_a_held_folder_is_refused_at_once_naming_the_holder_and_a_stale_lock_is_taken_over(tmp_path):
    import subprocess
    import sys
    import time

    from faceaudit.files.lock import LOCK
    from faceaudit.pipeline import run_stage
    from faceaudit.stages import simulate
    from faceaudit.tables import simulation

    config = simulation.SimulationConfig(races=("A", "B"), genders=("x", "y"), race_shares=(0.5, 0.5), dim=4,
                                       reference_per_group=30, group_images=30, invented_identities=2,
                                       celebrity_identities=0, seeds_per_identity=2, labelled_identities=4,
                                       neutral_prompts=1, neutral_images=10)
    run_stage(tmp_path, simulate, simulate.Settings(0, config))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from faceaudit.files.lock import folder_lock\n"
        f"with folder_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        result = invoke("measure", tmp_path)
        assert time.perf_counter() - start < 5  # at once, not after the work
        assert result.exit_code == 2 and f"in use by process {holder.pid}" in result.output and LOCK in result.output
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != LOCK} == before
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipe
    assert (tmp_path / LOCK).exists()  # SIGKILL left it behind: stale, its process is gone
    result = invoke("perceive", tmp_path, "--draws", "100")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / LOCK).exists()


def test_an_image_edited_in_place_reruns_what_depends_on_it(tmp_path):
    """The ingest record covers every listed image's content: after one image changes, the
    dry run names it, the stages from ingest on rerun, and the numbers change; without a
    change every stage is skipped."""
    from PIL import Image

    from faceaudit import pipeline
    from faceaudit.files.folder import AuditFolder

    rows = [dict(path=f"{i}.png", role=("reference", "generated")[i % 2], race="AB"[(i // 2) % 2], gender="x")
            for i in range(80)]
    manifest = _faces(tmp_path / "images", rows)
    settings = pipeline.AuditSettings(out=tmp_path / "out", images=tmp_path / "images", manifest=manifest,
                                      clip="ViT-B-32:random")
    plan = [s for s in pipeline.steps(settings) if s.name in ("ingest", "embed", "measure")]
    for step in plan:
        pipeline.run_stage(AuditFolder(settings.out), step.module, step.settings)
    first = pd.read_parquet(settings.out / "metrics.parquet")
    assert all(pipeline.why_run(AuditFolder(settings.out), s, False) is None for s in plan)
    Image.fromarray(np.full((25, 25), 200, dtype=np.uint8)).save(tmp_path / "images" / "5.png")
    why = pipeline.why_run(AuditFolder(settings.out), plan[0], False)
    assert why == "input 5.png changed", why
    for step in plan:
        pipeline.run_stage(AuditFolder(settings.out), step.module, step.settings)
    second = pd.read_parquet(settings.out / "metrics.parquet")
    assert not np.allclose(first.value, second.value)
    assert all(pipeline.why_run(AuditFolder(settings.out), s, False) is None for s in plan)


def test_intersections_that_would_print_alike_never_merge(tmp_path):
    """The core's intersections and every table's group column refuse two value combinations
    that print as one name (they merged in silence before)."""
    from faceaudit.files.manifest import group_label

    race, gender = np.array(["A x", "A"]), np.array(["y", "x y"])
    with pytest.raises(ValueError, match=r"\('A x', 'y'\) and \('A', 'x y'\) would both be named 'A x x y'"):
        fc.group_labels((race, gender))
    frame = pd.DataFrame({"race": race, "gender": gender})
    with pytest.raises(ValueError, match=r"survey.csv: the groups \[\('A x', 'y'\), \('A', 'x y'\)\] would all print"):
        group_label(frame, ["race", "gender"], where="survey.csv")
    assert list(fc.group_labels((np.array(["A", "B"]), np.array(["x", "x"])))) == ["A x x", "B x x"]


def test_metrics_refuses_one_embedding_twice_naming_the_rows(arrays):
    real = np.load(arrays / "real.npy")
    np.save(arrays / "fake.npy", np.concatenate([np.load(arrays / "fake.npy")[:-1], real[7:8]]))
    result = invoke("metrics", arrays / "real.npy", arrays / "fake.npy")
    assert result.exit_code == 2 and "real.npy row 7 and" in result.output and "fake.npy row 59" in result.output
    np.save(arrays / "real.npy", np.concatenate([real[:-1], real[3:4]]))  # twice within one set
    np.save(arrays / "fake.npy", real + 1.0)
    result = invoke("metrics", arrays / "real.npy", arrays / "fake.npy")
    assert result.exit_code == 2 and "real.npy row 3 and" in result.output and "real.npy row 59" in result.output


def test_an_experiment_log_drops_a_row_torn_by_a_kill(tmp_path):
    """A resumable experiment's JSON-lines log: rows appended are read back; a last line cut
    short by a kill mid-append is dropped (the resumed run redoes that row), not a crash."""
    from faceaudit.files.io import append_jsonl, read_jsonl

    log = tmp_path / "runs.jsonl"
    assert read_jsonl(log) == []
    append_jsonl(log, {"seed": 0, "value": 1.5})
    append_jsonl(log, {"seed": 1, "value": 2.5})
    with log.open("a") as f:
        f.write('{"seed": 2, "val')
    assert read_jsonl(log) == [{"seed": 0, "value": 1.5}, {"seed": 1, "value": 2.5}]
