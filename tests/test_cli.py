"""The command line, through typer's runner (same code path as the console script)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import faceaudit.core as fc
from faceaudit.cli import app

runner = CliRunner()


def test_help_tells_the_story():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for word in ("metrics", "demo", "faces", "groups"):
        assert word in result.output
    sub = runner.invoke(app, ["metrics", "--help"])
    assert sub.exit_code == 0 and "--reference-groups" in sub.output and "interval" in sub.output
    assert "--groups-real" not in sub.output  # the deprecated name still works, unlisted
    # Help text is printed verbatim: bracketed words survive (no markup parsing).
    audit = runner.invoke(app, ["audit", "--help"])
    assert "[simulate]" in audit.output and "--dry-run" in audit.output


@pytest.fixture
def files(tmp_path, rng):
    real = rng.normal(size=(120, 6))
    fake = rng.normal(size=(100, 6)) + 0.4
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    lr = np.array(["a", "b"] * 60)
    lf = np.array(["a"] * 50 + ["b"] * 50)
    (tmp_path / "real.txt").write_text("\n".join(lr) + "\n")
    np.save(tmp_path / "fake_groups.npy", lf)
    return tmp_path, real, fake, lr, lf


def test_metrics_writes_overall_and_per_group_json(files):
    tmp, real, fake, lr, lf = files
    out = tmp / "report.json"
    result = runner.invoke(
        app,
        [
            "metrics", str(tmp / "real.npy"), str(tmp / "fake.npy"),
            "--reference-groups", str(tmp / "real.txt"), "--generated-groups", str(tmp / "fake_groups.npy"),
            "--metrics", "mmd2,fd,fd_unbiased,precision,vendi", "--seed", "3", "--json", str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {(r["group"], r["metric"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows[("all", "fd")]["value"] == pytest.approx(float(fc.frechet_distance(real, fake)), rel=1e-12)
    assert rows[("all", "mmd2")]["value"] == pytest.approx(float(fc.mmd2(real, fake)), rel=1e-10)
    a = rows[("a", "fd_unbiased")]
    assert a["value"] == pytest.approx(float(fc.frechet_distance(real[lr == "a"], fake[lf == "a"], unbiased=True)), rel=1e-10)
    assert a["low"] < a["value"] < a["high"] and a["n_reference"] == 60 and a["n_generated"] == 50
    assert a["estimand"] and a["interval"] == "jackknife"
    # Size-dependent metrics are compared at the smallest group's sizes (here 60 / 50).
    assert rows[("a", "precision")]["size_generated"] == 50 and rows[("b", "vendi")]["size_generated"] == 50
    assert "biased" in rows[("a", "fd")]["warning"]
    assert "mmd2" in result.output and "interval of" in result.output


def test_deprecated_group_options_still_work_and_say_so(files):
    """--groups-real/--groups-fake (the names before reference/generated) give the same rows."""
    tmp = files[0]
    common = ["metrics", str(tmp / "real.npy"), str(tmp / "fake.npy"), "--metrics", "mmd2", "--seed", "1"]
    outputs = []
    for i, flags in enumerate((["--reference-groups", "--generated-groups"], ["--groups-real", "--groups-fake"])):
        out = tmp / f"rows{i}.json"
        result = runner.invoke(app, [*common, flags[0], str(tmp / "real.txt"), flags[1], str(tmp / "fake_groups.npy"),
                                     "--json", str(out)])
        assert result.exit_code == 0, result.output
        outputs.append((result.output, json.loads(out.read_text())["rows"]))
    assert outputs[0][1] == outputs[1][1]
    assert "is deprecated" not in outputs[0][0]
    assert "--groups-real is deprecated: use --reference-groups" in outputs[1][0]
    both = runner.invoke(app, [*common, "--groups-real", str(tmp / "real.txt"), "--reference-groups", str(tmp / "real.txt"),
                               "--generated-groups", str(tmp / "fake_groups.npy")])
    assert both.exit_code == 2 and "pass --reference-groups only" in both.output


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: (t / "real.npy").unlink(), "embeddings file not found"),
        (lambda t: np.save(t / "real.npy", np.where(np.arange(120)[:, None] == 9, np.nan, 1.0) * np.ones((120, 6))), "NaN or inf in row 9"),
        (lambda t: (t / "real.txt").write_text("a\nb\n"), "has 2 labels but"),
        (lambda t: np.save(t / "real.npy", np.ones((120, 6), dtype=np.int64)), "must be floating point"),
    ],
)
def test_metrics_errors_name_the_file(files, mutate, message):
    tmp = files[0]
    mutate(tmp)
    result = runner.invoke(
        app,
        ["metrics", str(tmp / "real.npy"), str(tmp / "fake.npy"), "--reference-groups", str(tmp / "real.txt"), "--generated-groups", str(tmp / "fake_groups.npy")],
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_metric_is_refused(files):
    tmp = files[0]
    result = runner.invoke(app, ["metrics", str(tmp / "real.npy"), str(tmp / "fake.npy"), "--metrics", "fid"])
    assert result.exit_code == 2 and "unknown metric(s) ['fid']" in result.output
    result = runner.invoke(app, ["metrics", str(tmp / "real.npy"), str(tmp / "fake.npy"), "--interval", "basic"])
    assert result.exit_code == 2 and "needs at least 20 replicates" in result.output


def test_demo_finds_the_least_trained_groups(tmp_path):
    out = tmp_path / "demo.json"
    result = runner.invoke(app, ["demo", "--per-group", "150", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    kid = {r["group"]: r["value"] for r in rows if r["metric"] == "mmd2" and r["group"] != "all"}
    # The simulated generator saw White faces 6-15x more often than the others.
    assert max(kid["White x man"], kid["White x woman"]) < min(v for g, v in kid.items() if not g.startswith("White"))
    assert "worst-served group" in result.output


def test_help_keeps_its_overview_lines_as_lines():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "100"})
    lines = result.output.splitlines()
    assert any(line.strip().startswith("faceaudit audit SPEC --out DIR") for line in lines)
    assert any(line.strip().startswith("faceaudit audit --images DIR") for line in lines)


SNAPSHOT = __import__("pathlib").Path(__file__).parent / "snapshots" / "demo_80_columns.txt"


def test_metrics_table_at_80_columns_cuts_no_number(tmp_path):
    """An 80-column terminal gets one block per metric: every table line fits, and every
    value and interval bound appears whole (snapshot: tests/snapshots/demo_80_columns.txt;
    rewrite it with FACEAUDIT_UPDATE_SNAPSHOTS=1 after a deliberate change)."""
    import os

    result = runner.invoke(app, ["demo", "--per-group", "60", "--json", str(tmp_path / "d.json")],
                           env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    table_lines = [line for line in result.output.splitlines() if line[:1] in "┏┃┡│└"]
    assert table_lines and max(len(line) for line in table_lines) <= 80
    from faceaudit.tables import catalogue

    for row in json.loads((tmp_path / "d.json").read_text())["rows"]:
        scale = catalogue.info(row["metric"]).scale
        for key in ("value", "low", "high"):
            assert f"{row[key] * scale:.4g}" in result.output, (row["metric"], row["group"], key)
    shown = "\n".join(line for line in result.output.splitlines() if not line.startswith("wrote"))
    if os.environ.get("FACEAUDIT_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(shown)
    assert shown == SNAPSHOT.read_text()


def test_plan_mix_and_selection_are_the_old_names_of_plan_and_posterior(tmp_path):
    """`plan-mix --selection` runs `plan --posterior` (here on a missing file, named), says it
    is deprecated, and is not listed."""
    missing = tmp_path / "training_mix.nc"
    old = runner.invoke(app, ["plan-mix", "--selection", str(missing), "--budget", "10", "--out", str(tmp_path)])
    new = runner.invoke(app, ["plan", "--posterior", str(missing), "--budget", "10", "--out", str(tmp_path)])
    assert old.exit_code == new.exit_code == 2
    assert "--selection is deprecated: use --posterior" in old.output
    assert str(missing) in new.output.replace("\n", "") and str(missing) in old.output.replace("\n", "")
    assert "plan-mix" not in runner.invoke(app, ["--help"]).output


def test_the_audit_command_is_generated_from_its_settings(monkeypatch, tmp_path):
    """Every AuditSettings field is an option of `faceaudit audit`, and the command line
    reaches the settings unchanged (the metric list and repeated --force read back)."""
    import dataclasses

    from faceaudit import pipeline

    shown = runner.invoke(app, ["audit", "--help"]).output
    for field in dataclasses.fields(pipeline.AuditSettings):
        flag = field.metadata["flag"] or "--" + field.name.replace("_", "-")
        assert (field.metadata["metavar"] if field.metadata["argument"] else flag) in shown, field.name
    seen = []

    def capture(settings, **_):
        seen.append(settings)
        raise ValueError("stop here")

    monkeypatch.setattr(pipeline, "preflight", capture)
    result = runner.invoke(app, ["audit", "--dry-run", "--out", str(tmp_path), "--seed", "3", "--chains", "3",
                                 "--draws", "50", "--interval", "bca", "--bootstrap", "40", "--metrics", "mmd2, vendi",
                                 "--force", "measure", "--force", "report", "--training-size", "900"])
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen == [pipeline.AuditSettings(out=tmp_path, seed=3, chains=3, draws=50, interval="bca", bootstrap=40,
                                           metrics=("mmd2", "vendi"), force=("measure", "report"), training_size=900.0)]
    bad = runner.invoke(app, ["audit", "--images", str(tmp_path)])
    assert bad.exit_code == 2 and "--images and --manifest go together" in bad.output
