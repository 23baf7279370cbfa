"""simulate -> measure -> explain -> plan-mix on a small simulated world, against its truth."""

import json

import numpy as np
import pandas as pd
import pytest

from faceaudit import explain as ex
from faceaudit.measure_audit import MeasureSettings, measure_audit
from faceaudit.simulate import SimulationConfig, World, simulate
from faceaudit.store import EmbeddingStore, read_manifest

SMALL = SimulationConfig(races=("Asian", "White"), genders=("man", "woman"), race_shares=(0.15, 0.85), dim=8,
                         training_size=3000, reference_per_group=150, group_images=150, invented_identities=6,
                         celebrity_identities=2, seeds_per_identity=3)


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    truth = simulate(out, seed=5, config=SMALL)
    return out, truth


def test_simulate_is_reproducible_and_writes_the_pipeline_files(audit, tmp_path):
    out, truth = audit
    again = simulate(tmp_path, seed=5, config=SMALL)
    assert again == truth
    first, meta = read_manifest(out / "manifest.parquet")
    second, _ = read_manifest(tmp_path / "manifest.parquet")
    pd.testing.assert_frame_equal(first, second)
    assert meta["group_columns"] == ["race", "gender"]
    store = EmbeddingStore(out, "simulated", "none")
    ds = store.load(first["image_id"])
    assert ds.sizes["image"] == len(first) == store.done().__len__()
    # 4 groups x (150 reference + 150 group images + 8 identities x 3 seeds)
    assert len(first) == 4 * (150 + 150 + 8 * 3)
    world = World.from_npz(out / "world.npz")
    np.testing.assert_allclose(np.asarray(world.mix.shares), [0.075, 0.075, 0.425, 0.425])
    assert set(truth["groups"]) == set(world.labels)


def test_measured_fd_and_verification_agree_with_the_truth(audit):
    out, truth = audit
    frame = measure_audit(out, MeasureSettings(num_bootstrap=30))
    fd = frame[(frame.metric == "fd_unbiased") & (frame.group != "all")].set_index("group")
    z = [(fd.loc[g, "value"] - v["fd_true"]) / fd.loc[g, "se"] for g, v in truth["groups"].items()]
    assert np.all(np.abs(z) < 4), z  # bias-corrected FD is unbiased for the true FD
    raw = frame[(frame.metric == "fd") & (frame.group != "all")].set_index("group")
    assert np.all(raw["value"] > fd["value"])  # the raw FD carries the finite-sample bias
    same = frame[frame.metric == "verification_same_group"].set_index("group")
    for g, v in truth["groups"].items():
        assert abs(same.loc[g, "value"] - v["verification_same_group"]) < 4 * same.loc[g, "se"] + 0.02
    # The under-trained groups have the higher true FD, and the audit sees it.
    worst_true = max(truth["groups"], key=lambda g: truth["groups"][g]["fd_true"])
    assert worst_true.startswith("Asian")
    assert (out / "metrics.parquet").is_file()


@pytest.mark.slow
def test_explain_flags_the_under_represented_groups_and_plan_beats_alternatives(audit):
    out, truth = audit
    if not (out / "metrics.parquet").is_file():
        measure_audit(out, MeasureSettings(num_bootstrap=30))
    idata = ex.explain(out, ex.ExplainSettings(num_warmup=150, num_samples=150, num_chains=2, seed=1))
    summary = ex.summarise_selection(idata).set_index("group")
    true_share = {g: v["share"] for g, v in truth["groups"].items()}
    # The rare groups get a lower posterior share than the common ones.
    assert summary.loc[[g for g in true_share if g.startswith("Asian")], "share_mean"].max() < \
        summary.loc[[g for g in true_share if g.startswith("White")], "share_mean"].min()
    assert float(idata.sample_stats["diverging"].sum()) <= 0.02 * idata.posterior.sizes["draw"] * 2
    assert (out / "selection.nc").is_file()
    labels, world, mix = ex.posterior_world(idata)
    table, plan = ex.plan_table(labels, world, mix, 1000.0)
    assert table["quality_planned"].max() < min(table["quality_uniform"].max(), table["quality_proportional"].max())
    assert np.all(table.set_index("group").loc[[g for g in labels if g.startswith("Asian")], "extra_images"] > 250)
    # Same-group verification of named identities is in the likelihood (the world's spreads
    # are known), which pins the shrinkage: its 90% interval covers the simulated 400.
    assert "world.npz" in idata.constant_data.attrs["verification"]
    assert "verification" in idata.observed_data
    low, high = np.quantile(idata.posterior["shrinkage"].values, [0.05, 0.95])
    assert low < SMALL.shrinkage < high
    identity = ex.posterior_identity(idata)
    table, _ = ex.plan_table(labels, world, mix, 1000.0, objective="verification", identity=identity)
    assert table["quality_planned"].min() > table["quality_now"].min()


def test_simulation_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[simulate]\ndim = 16\nshares = [0.5, 0.5]\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['shares'\]"):
        SimulationConfig.from_toml(bad)
    with pytest.raises(ValueError, match="race_shares must be positive and sum to 1"):
        SimulationConfig(race_shares=(0.5, 0.5, 0.5, -0.5))


def test_truth_file_is_json(audit):
    out, _ = audit
    truth = json.loads((out / "truth.json").read_text())
    assert truth["training"]["size"] == SMALL.training_size
