"""simulate -> measure -> explain -> plan on a small simulated world, against its truth."""

import json

import numpy as np
import pandas as pd
import pytest

import faceaudit.core as fc
from faceaudit.files.folder import AuditFolder
from faceaudit.files.io import read_netcdf
from faceaudit.files.manifest import read_manifest
from faceaudit.files.store import EmbeddingStore
from faceaudit.pipeline import run_stage
from faceaudit.stages import explain, measure, plan, simulate
from faceaudit.tables import training_mix as tables
from faceaudit.tables.metrics import DistributionSettings
from faceaudit.tables.simulation import SimulationConfig, World

SMALL = SimulationConfig(races=("Asian", "White"), genders=("man", "woman"), race_shares=(0.15, 0.85), dim=8,
                         training_size=3000, reference_per_group=160, group_images=150, invented_identities=6,
                         celebrity_identities=2, seeds_per_identity=3, labelled_identities=20)


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    truth = run_stage(out, simulate, simulate.Settings(5, SMALL)).summary["truth"]
    return out, truth


def test_simulate_is_reproducible_and_writes_the_pipeline_files(audit, tmp_path):
    out, truth = audit
    again = run_stage(tmp_path, simulate, simulate.Settings(5, SMALL)).summary["truth"]
    assert again == truth
    first, meta = read_manifest(out / "manifest.parquet")
    second, _ = read_manifest(tmp_path / "manifest.parquet")
    pd.testing.assert_frame_equal(first, second)
    assert meta["group_columns"] == ["race", "gender"]
    store = EmbeddingStore(out, "simulated", "none")
    ds = store.load(first["image_id"])
    assert ds.sizes["image"] == len(first) == len(store.done())
    # 4 groups x (160 reference + 150 group images + 8 identities x 3 seeds), plus the neutral prompts' images
    assert len(first) == 4 * (160 + 150 + 8 * 3) + SMALL.neutral_prompts * SMALL.neutral_images
    world = World.from_npz(out / "world.npz")
    np.testing.assert_allclose(np.asarray(world.mix.shares), [0.075, 0.075, 0.425, 0.425])
    assert set(truth["groups"]) == set(world.labels)
    # What a real audit with labelled reference photos has: estimated identity spreads,
    # close to the truth (20 identities x 4 photos per group in 8 dimensions).
    spreads = json.loads((out / "identity_spreads.json").read_text())
    assert spreads["within"] == pytest.approx(SMALL.within_var, rel=0.15)
    assert "labelled reference sample" in spreads["source"]


def test_measured_numbers_agree_with_the_truth(audit):
    out, truth = audit
    with_raw = DistributionSettings(metrics=(*DistributionSettings().metrics, "fd"))  # the raw FD only on request
    run_stage(out, measure, measure.Settings(distribution=with_raw))
    frame = pd.read_parquet(out / "metrics.parquet")
    fd = frame[(frame.metric == "fd_audit") & (frame.group != "all")].set_index("group")
    # d = 8, 80 measured reference rows per group (the other 80 span the audit space) and
    # 150 generated: the audit space is the whole space (k = min(8, 8)).
    z = [(fd.loc[g, "value"] - v["fd_true"]) / fd.loc[g, "se"] for g, v in truth["groups"].items()]
    assert np.all(np.abs(z) < 4), z
    raw = frame[(frame.metric == "fd") & (frame.group != "all")].set_index("group")
    assert np.all(raw["value"] > fd["value"])  # the raw FD carries the finite-sample bias
    same = frame[frame.metric == "verification_same_group"].set_index("group")
    for g, v in truth["groups"].items():
        assert abs(same.loc[g, "value"] - v["verification_same_group"]) < 4 * same.loc[g, "se"] + 0.02
    worst_true = max(truth["groups"], key=lambda g: truth["groups"][g]["fd_true"])
    assert worst_true.startswith("Asian")
    contrasts = pd.read_parquet(out / "contrasts.parquet")
    assert set(contrasts.metric) >= {"mmd2", "fd_audit"} and (contrasts.low <= contrasts.difference).all()


def test_explain_flags_the_rare_groups_and_plan_beats_alternatives(audit):
    """A reduced posterior-recovery check (the full calibration is experiments/
    training_mix_calibration.py): on the small world the rare race gets the smaller shares,
    the fitted shrinkage's 90% interval covers the simulated 400, and the plan beats the
    uniform and proportional allocations for the worst group on the simulated truth."""
    out, truth = audit
    if not (out / "metrics.parquet").is_file():
        run_stage(out, measure, measure.Settings())
    result = run_stage(out, explain, explain.Settings(float(SMALL.training_size), draws=100, chains=2, seed=1))
    summary = result.summary["table"].set_index("group")
    asian = [g for g in truth["groups"] if g.startswith("Asian")]
    white = [g for g in truth["groups"] if g.startswith("White")]
    assert summary.loc[asian, "share_mean"].max() < summary.loc[white, "share_mean"].min()
    post = read_netcdf(AuditFolder(out).file("training_mix.nc"), inference_data=True)
    assert "labelled reference sample" in post.constant_data.attrs["verification"]
    low, high = np.quantile(post.posterior["shrinkage"].values, [0.05, 0.95])
    assert low < SMALL.shrinkage < high
    labels, world, mix = tables.posterior_world(post)
    table, _ = tables.plan_table(labels, world, mix, 1000.0)
    assert np.all(table.set_index("group").loc[asian, "extra_images"] > 250)
    # Scored on the simulated truth, not under the posterior the plan was optimised for:
    # the worst group's true expected FD after the planned images is below its value after
    # the uniform and the (estimated-share) proportional allocations of the same budget.
    true = World.from_npz(out / "world.npz")
    order = [list(true.labels).index(g) for g in table.group]
    shares = np.asarray(mix.shares).reshape(-1, len(labels)).mean(axis=0)
    extras = {"planned": table.extra_images.to_numpy(), "uniform": np.full(len(labels), 1000.0 / len(labels)),
              "proportional": 1000.0 * shares}
    worst = {name: float(np.max(np.asarray(fc.evaluate_allocation(true.world, true.mix, extra[np.argsort(order)]))))
             for name, extra in extras.items()}
    assert worst["planned"] < min(worst["uniform"], worst["proportional"]), worst
    planned = run_stage(out, plan, plan.Settings(budget=1000.0, objective="verification"))
    t = planned.summary["table"]
    assert t["quality_planned"].min() > t["quality_now"].min()


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


def test_a_second_fit_in_the_process_reuses_the_sampler_with_its_own_data(audit, tmp_path):
    """The compiled sampler is kept for the process (tables/posterior.ReusedParallelChains):
    explain on another world with the same shapes runs the program the test above compiled,
    and draws exactly what a program traced on that world draws (nothing of the first
    world's data or start stays in it)."""
    from faceaudit import runtime
    from faceaudit.tables import posterior

    if runtime.chain_method(2) != "parallel":
        pytest.skip("one device: chains run vectorised and nothing is reused")
    out, _ = audit
    settings = explain.Settings(float(SMALL.training_size), draws=100, chains=2, seed=1)
    if not (out / "training_mix.nc").is_file():  # this test alone: compile on the first world here
        if not (out / "metrics.parquet").is_file():
            run_stage(out, measure, measure.Settings())
        run_stage(out, explain, settings)
    other = tmp_path / "other"
    run_stage(other, simulate, simulate.Settings(6, SMALL))
    run_stage(other, measure, measure.Settings())
    programs = set(posterior._CHAIN_PROGRAMS)
    run_stage(other, explain, settings)
    assert set(posterior._CHAIN_PROGRAMS) == programs  # no new program for the second world
    reused = read_netcdf(AuditFolder(other).file("training_mix.nc"), inference_data=True).posterior
    first = read_netcdf(AuditFolder(out).file("training_mix.nc"), inference_data=True).posterior
    assert not np.allclose(reused["shares"].values, first["shares"].values)

    posterior._CHAIN_PROGRAMS.clear()  # trace afresh, on the second world
    run_stage(other, explain, settings)
    fresh = read_netcdf(AuditFolder(other).file("training_mix.nc"), inference_data=True).posterior
    for name in ("shares", "shift", "transfer", "log_shrinkage", "diversity", "fd_expected"):
        np.testing.assert_array_equal(reused[name].values, fresh[name].values, err_msg=name)
