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
    assert sub.exit_code == 0 and "--groups-real" in sub.output and "bias-corrected" in sub.output


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
            "--groups-real", str(tmp / "real.txt"), "--groups-fake", str(tmp / "fake_groups.npy"),
            "--metrics", "fd,fd_unbiased,precision,vendi", "--bootstrap", "50", "--seed", "3", "--json", str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["overall"]["fd"] == pytest.approx(float(fc.frechet_distance(real, fake)), rel=1e-12)
    assert report["overall"]["precision"] == pytest.approx(float(fc.prdc(real, fake).precision))
    rows = {r["group"]: r for r in report["groups"]["fd_unbiased"]}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["value"] == pytest.approx(float(fc.frechet_distance(real[lr == "a"], fake[lf == "a"], unbiased=True)), rel=1e-10)
    assert rows["a"]["low"] < rows["a"]["high"] and rows["a"]["n_real"] == 60 and rows["a"]["n_fake"] == 50
    assert "fd_unbiased" in result.output and "a" in result.output


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
        ["metrics", str(tmp / "real.npy"), str(tmp / "fake.npy"), "--groups-real", str(tmp / "real.txt"), "--groups-fake", str(tmp / "fake_groups.npy")],
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_metric_is_refused(files):
    tmp = files[0]
    result = runner.invoke(app, ["metrics", str(tmp / "real.npy"), str(tmp / "fake.npy"), "--metrics", "fid"])
    assert result.exit_code == 2 and "unknown metric(s) ['fid']" in result.output


def test_demo_finds_the_least_trained_groups(tmp_path):
    out = tmp_path / "demo.json"
    result = runner.invoke(app, ["demo", "--per-group", "120", "--bootstrap", "20", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    fd = {r["group"]: r["value"] for r in report["groups"]["fd_unbiased"]}
    # The simulated generator saw White faces 7-12x more often than the others.
    assert max(fd["White man"], fd["White woman"]) < min(v for g, v in fd.items() if not g.startswith("White"))
    assert "worst-served group" in result.output
