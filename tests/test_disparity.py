"""Disparity models: conjugate closed forms, calibration, summaries, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from numpyro.infer import MCMC, NUTS
from scipy import stats
from typer.testing import CliRunner

from faceaudit.tables import disparity
from faceaudit.cli import app
from faceaudit.models.disparity import beta_binomial_model
from tests.tolerances import monte_carlo

ROOT = Path(__file__).resolve().parents[1]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sampler_matches_the_beta_binomial_closed_form():
    successes, trials = np.array([37, 55, 12]), np.array([40, 70, 30])
    mcmc = MCMC(NUTS(beta_binomial_model), num_warmup=500, num_samples=4000, num_chains=1, progress_bar=False)
    mcmc.run(jax.random.key(0), successes, trials, a=2.0, b=2.0)
    p = np.asarray(mcmc.get_samples()["p"])
    post = stats.beta(2.0 + successes, 2.0 + trials - successes)
    ess = np.asarray([200.0] * 3)  # conservative lower bound on the effective sample size
    se = post.std() / np.sqrt(ess)
    np.testing.assert_array_less(np.abs(p.mean(0) - post.mean()), monte_carlo(se))
    for q in (0.05, 0.95):
        np.testing.assert_array_less(np.abs(np.quantile(p, q, axis=0) - post.ppf(q)), monte_carlo(se) * 1.5)


def test_inference_data_equals_arviz_from_numpyro():
    """faceaudit builds InferenceData from the draws (arviz's converter re-runs the model
    with prior draws); every group, variable, dim and value is arviz's own."""
    from numpyro.infer import Predictive

    from faceaudit.files.quiet import arviz
    from faceaudit.tables.posterior import inference_data

    successes, trials = np.array([7, 5, 2]), np.array([10, 9, 8])
    mcmc = MCMC(NUTS(beta_binomial_model), num_warmup=50, num_samples=40, num_chains=2, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.key(1), successes, trials, a=2.0, b=2.0)
    prior = Predictive(beta_binomial_model, num_samples=30)(jax.random.key(2), successes, trials, a=2.0, b=2.0)
    predictive = Predictive(beta_binomial_model, mcmc.get_samples())(jax.random.key(3), successes, trials, a=2.0,
                                                                     b=2.0)
    options = dict(coords={"cell": ["a", "b", "c"]}, dims={"p": ["cell"]}, prior=prior, posterior_predictive=predictive)
    ours = inference_data(mcmc, observed={"y": successes}, **options)
    theirs = arviz().from_numpyro(mcmc, log_likelihood=False, **options)
    assert set(ours.groups()) == set(theirs.groups()) >= {"posterior", "sample_stats", "observed_data", "prior",
                                                          "prior_predictive", "posterior_predictive"}
    for group in theirs.groups():
        a, b = ours[group], theirs[group]
        assert set(a.data_vars) == set(b.data_vars), group
        for name in b.data_vars:
            assert a[name].dims == b[name].dims, (group, name)
            np.testing.assert_array_equal(a[name].values, b[name].values)


def _frame(rng, n_per=80, rates=(0.92, 0.6, 0.85)):
    groups = np.repeat(["A", "B", "C"], n_per)
    y = np.concatenate([rng.random(n_per) < r for r in rates])
    return pd.DataFrame(
        {"outcome": np.where(y, "Yes", "No"), "group": groups, "sex": rng.choice(["F", "M"], groups.size),
         "attribute": rng.choice(["smile", "old"], groups.size), "item": rng.integers(0, 30, groups.size).astype(str),
         "score": rng.normal(size=groups.size) + (groups == "B") * 0.8, "rating": rng.integers(1, 6, groups.size)}
    )


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(1)
    frame = _frame(rng)
    spec = disparity.DisparitySpec(outcome="outcome", group=("group",), success="Yes", reference="A", draws=300, chains=2)
    data = disparity.PreparedData(frame, spec)
    idata = disparity.fit(data)
    return frame, data, idata, disparity.summarise(idata, data)


def test_summaries_find_the_worst_group(fitted):
    frame, data, idata, summary = fitted
    groups = {g["group"]: g for g in summary["groups"]}
    assert groups["B"]["p_worst"] > 0.9
    for g in summary["groups"]:
        assert g["hdi_low"] < g["mean"] < g["hdi_high"]
        assert g["observed"] == pytest.approx((frame.loc[frame.group == g["group"], "outcome"] == "Yes").mean())
    # P(worst) of each group is the share of joint posterior draws in which its success
    # rate is the lowest of all groups, read here from the draws themselves.
    rates = idata.posterior["cell_mean"].stack(sample=("chain", "draw")).transpose("sample", "cell").values
    for j, cell in enumerate(data.cells):
        lowest = (rates[:, j][:, None] <= rates).all(axis=1).mean()
        assert groups[cell]["p_worst"] == pytest.approx(lowest, abs=1e-12), cell
    assert {(p["group"], p["versus"]) for p in summary["pairwise"]} == {("A", "B"), ("A", "C"), ("B", "C")}
    ref = {r["group"]: r for r in summary["versus_reference"]}
    assert ref["B"]["p_worse"] > 0.9 and ref["B"]["difference"] < 0
    assert 0 < summary["gap"]["hdi_low"] < summary["gap"]["mean"]


def test_predictive_checks_bracket_the_data(fitted):
    _, data, idata, _ = fitted
    checks = disparity.predictive_checks(idata, data)
    assert [c["group"] for c in checks] == data.cells
    for c in checks:
        lo, hi = c["posterior_predictive_95"]
        assert lo <= c["observed"] <= hi
        assert 0.01 < c["ppc_p_value"] < 0.99
        plo, phi = c["prior_predictive_95"]
        assert 0.0 <= plo < phi <= 1.0 and phi - plo > hi - lo  # the prior is wider


def test_posterior_roundtrips_through_netcdf(fitted, tmp_path):
    import arviz as az

    _, data, idata, _ = fitted
    from faceaudit.files.io import write_netcdf

    write_netcdf(tmp_path / "posterior.nc", idata)
    back = az.from_netcdf(tmp_path / "posterior.nc")
    assert (tmp_path / "posterior.nc").stat().st_mode & 0o777 == 0o644 & ~_umask()  # as every other output
    assert list(back.posterior["cell_mean"].coords["cell"].values) == data.cells


@pytest.mark.parametrize("kind, outcome, extra", [("ordinal", "rating", {}), ("continuous", "score", {})])
def test_ordinal_and_continuous_models_recover_group_means(kind, outcome, extra):
    rng = np.random.default_rng(2)
    frame = _frame(rng)
    spec = disparity.DisparitySpec(outcome=outcome, group=("group",), kind=kind, draws=300, chains=2)
    data = disparity.PreparedData(frame, spec)
    summary = disparity.summarise(disparity.fit(data), data)
    for g in summary["groups"]:
        assert g["hdi_low"] - 0.1 < g["observed"] < g["hdi_high"] + 0.1
    if kind == "continuous":
        assert max(summary["groups"], key=lambda g: g["mean"])["group"] == "B"


def test_intersections_are_cells(fitted):
    frame = fitted[0]
    spec = disparity.DisparitySpec(outcome="outcome", group=("group", "sex"), success="Yes", draws=200, chains=2)
    data = disparity.PreparedData(frame, spec)
    assert data.cells == ["A x F", "A x M", "B x F", "B x M", "C x F", "C x M"]
    summary = disparity.summarise(disparity.fit(data), data)
    assert len(summary["groups"]) == 6


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        (lambda f: f, {"group": ("race",)}, r"no column\(s\) \['race'\]"),
        (lambda f: f.assign(outcome=f.outcome.where(f.index != 5, None)), {}, "has 1 missing value"),
        (lambda f: f.assign(outcome="Yes"), {}, "takes one value only"),
        (lambda f: f, {"success": "Maybe"}, "never equals 'Maybe'"),
        (lambda f: f, {"reference": "Z"}, "reference group 'Z' is not one of"),
    ],
)
def test_bad_input_is_named(change, kwargs, message):
    frame = change(_frame(np.random.default_rng(3)))
    base = dict(outcome="outcome", group=("group",), success="Yes")
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        disparity.PreparedData(frame, disparity.DisparitySpec(**base))


def test_constant_continuous_outcome_is_refused():
    frame = _frame(np.random.default_rng(3)).assign(score=1.0)
    with pytest.raises(ValueError, match="is constant"):
        disparity.PreparedData(frame, disparity.DisparitySpec(outcome="score", group=("group",), kind="continuous"))


def test_cli_writes_the_promised_json(fitted, tmp_path):
    """(The fixture's draws and shapes: the CLI's fit reuses its compiled sampler.)"""
    frame = _frame(np.random.default_rng(4))
    table = tmp_path / "t.parquet"
    frame.to_parquet(table)
    out = tmp_path / "d.json"
    result = CliRunner().invoke(
        app,
        ["disparity", str(table), "--outcome", "outcome", "--success", "Yes", "--group", "group",
         "--draws", "300", "--warmup", "300", "--chains", "2", "--json", str(out), "--posterior", str(tmp_path / "p.nc")],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for row in report["groups"]:
        assert {"group", "n", "observed", "mean", "hdi_low", "hdi_high", "p_worst"} <= set(row)
    assert "chi2" in report["frequentist"] and (tmp_path / "p.nc").is_file()
    assert len(report["predictive_checks"]) == 3
    bad = CliRunner().invoke(app, ["disparity", str(table), "--outcome", "nope", "--success", "Yes"])
    assert bad.exit_code == 2 and "no column(s) ['nope', 'race']" in bad.output


def test_reduced_calibration_run():
    """A reduced simulation-based calibration: 90% intervals over 8 prior draws x 4
    groups. The full run (experiments/disparity_calibration.py) uses 100 fits."""
    sys.path.insert(0, str(ROOT))
    from experiments.disparity_calibration import coverage

    result = coverage(fits=8, level=0.9, samples=200, warmup=200)
    # 32 intervals at nominal 0.9: P(coverage < 0.72) < 0.5% under correct calibration.
    assert result["coverage"] >= 0.72


@pytest.mark.slow
def test_experiment_smoke(tmp_path):
    survey = ROOT.parent / "shared/data/limitations-survey/survey_metrics_SDv2.1_Celeb_demog_df.csv"
    if not survey.is_file():
        pytest.skip("../shared survey data not present")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments/survey_identity.py"), "--survey", str(survey), "--out", str(tmp_path),
         "--samples", "100", "--warmup", "100", "--chains", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"Asian": 0.884' in proc.stdout and (tmp_path / "identity_preservation.png").is_file()


def test_per_image_metrics_are_modelled_per_image():
    """A continuous outcome constant within each image (a CLIP score) is fitted on one row
    per image without an item effect, which would otherwise absorb all variation."""
    frame = _frame(np.random.default_rng(5))
    frame["score"] = frame.groupby("item")["score"].transform("first")
    data = disparity.PreparedData(frame, disparity.DisparitySpec(outcome="score", group=("group",), kind="continuous"))
    assert len(data.y) == frame.drop_duplicates("item").shape[0]
    assert data.design.n_items == 1


def test_sampler_options_say_draws_warmup_chains_and_the_old_names_still_work(tmp_path):
    """The spec and the command use the audit's words (draws, warmup, chains); numpyro's
    names (num_samples, ...) and --samples are deprecated aliases that say so."""
    spec = disparity.DisparitySpec(outcome="o", group=("g",), success="Yes", draws=120)
    assert (spec.draws, spec.warmup, spec.chains) == (120, 120, 4)
    with pytest.warns(DeprecationWarning, match=r"\(num_\w+=...\) is deprecated: use \w+="):
        old = disparity.DisparitySpec(outcome="o", group=("g",), success="Yes", num_samples=80, num_chains=2)
    assert (old.draws, old.warmup, old.chains) == (80, 80, 2)
    with pytest.raises(ValueError, match="chains must be a positive integer"):
        disparity.DisparitySpec(outcome="o", group=("g",), success="Yes", chains=0)
    table = tmp_path / "t.csv"
    table.write_text("g,o\na,Yes\nb,No\n")
    both = CliRunner().invoke(app, ["disparity", str(table), "--outcome", "o", "--success", "Yes",
                                    "--samples", "10", "--draws", "10"])
    assert both.exit_code == 2 and "pass --draws only (--samples is its deprecated name)" in both.output
    old_flag = CliRunner().invoke(app, ["disparity", str(table), "--outcome", "nope", "--success", "Yes",
                                        "--samples", "10"])
    assert "--samples is deprecated: use --draws" in old_flag.output and old_flag.exit_code == 2
