"""`faceaudit audit` end to end on a small simulated world: stage records, skipping and
rerunning by record, both ways to run a stage, a stop at every stage and a real SIGKILL,
the report in headless chromium.

Commands run in this process (tests/cli.py), so the audit's kernels are compiled once for
the module; only the SIGKILL test starts a process of its own."""

import html
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from faceaudit.files import io
from faceaudit.tables.catalogue import CATALOGUE, info
from tests import kill_hooks
from tests.cli import run as _cli

SMALL = """[simulate]
races = ["Asian", "White"]
race_shares = [0.15, 0.85]
dim = 8
reference_per_group = 100
group_images = 100
invented_identities = 5
celebrity_identities = 2
seeds_per_identity = 3
training_size = 3000
labelled_identities = 20
"""
DRAWS = ["--draws", "40"]
STAGES = ["simulate", "perceive", "measure", "disparity", "explain", "plan", "report"]
# Every file a stage writes, compared between runs (records hold timestamps of nothing).
COMPARED = ["manifest.parquet", "embeddings/index.json", "identity_spreads.json", "metrics.parquet",
            "image_metrics.parquet", "contrasts.parquet", "audit_space.npz", "disparity.json", "posterior.nc",
            "training_mix.nc", "training_mix_summary.parquet", "share_curves.parquet", "plan.parquet", "plan.json",
            "classifier_labels.parquet", "perceived.parquet", "faithfulness.parquet", "representation.parquet",
            "perceive.json", "representation.nc"]


def _audit(out, config, *extra):
    return _cli("audit", "--out", out, "--simulate-config", config, *DRAWS, *extra)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    (root / "small.toml").write_text(SMALL)
    out = root / "out"
    result = _audit(out, root / "small.toml")
    assert result.returncode == 0, result.stderr[-3000:]
    return root, out, result.stdout


def same_file(a: Path, b: Path) -> bool:
    """Equal content; netCDF compared as data (arviz stamps a creation time)."""
    if a.suffix == ".nc":
        import xarray as xr

        for group in (None, "posterior", "constant_data", "observed_data"):
            try:
                with xr.open_dataset(a, group=group, engine="h5netcdf") as x, xr.open_dataset(b, group=group, engine="h5netcdf") as y:
                    if not x.drop_attrs().identical(y.drop_attrs()):
                        return False
            except OSError:  # a group the file does not have
                continue
        return True
    if a.suffix == ".npz":
        with np.load(a) as x, np.load(b) as y:
            return x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)
    return a.read_bytes() == b.read_bytes()


def assert_same_outputs(a: Path, b: Path, names=COMPARED):
    for name in names:
        assert (a / name).is_file() == (b / name).is_file(), name
        if (a / name).is_file():
            assert same_file(a / name, b / name), f"{name} differs"


def test_audit_writes_every_stage_file_with_its_record(audited):
    _, out, stdout = audited
    for name in [*COMPARED, "report.html", "plan.png"]:
        assert (out / name).is_file(), name
    for stage in STAGES:
        record = json.loads((out / "stage-records" / f"{stage}.json").read_text())
        assert record["stage"] == stage and record["outputs"] and all(v != "missing" for v in record["outputs"].values())
    assert "report:" in stdout and "1. " in stdout
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert {"mmd2", "fd_audit", "verification_same_group", "vendi", "coverage"} <= set(metrics.metric)
    # Each jackknife interval is the t interval of its row's estimate and standard error (an
    # interval from other numbers, or at another confidence, would fail), unless its
    # metric's range clipped it.
    t_rows = metrics[(metrics.interval == "jackknife") & (metrics.se > 0)]
    half = stats.t.ppf(0.5 + t_rows.confidence / 2, t_rows.df) * t_rows.se
    bounds = np.array([info(m).bounds for m in t_rows.metric])
    unclipped = (t_rows.value - half > bounds[:, 0]) & (t_rows.value + half < bounds[:, 1])
    assert unclipped.sum() >= 0.5 * len(t_rows)
    assert (t_rows.low[~unclipped] >= bounds[~unclipped.to_numpy(), 0]).all()
    np.testing.assert_allclose(t_rows.low[unclipped], (t_rows.value - half)[unclipped], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(t_rows.high[unclipped], (t_rows.value + half)[unclipped], rtol=1e-9, atol=1e-12)
    # The explain stage sees the simulated skew (15% Asian, 85% White).
    shares = pd.read_parquet(out / "training_mix_summary.parquet").set_index("group")["share_mean"]
    assert shares.filter(like="Asian").sum() < shares.filter(like="White").sum()
    # Inference never reads the answer key: explain's record lists what it read.
    explain = json.loads((out / "stage-records" / "explain.json").read_text())
    assert not any("truth" in p or "world.npz" in p for p in explain["inputs"])


def test_rerun_is_up_to_date_and_a_changed_input_reruns_downstream(audited, tmp_path):
    root, out, _ = audited
    dry = _cli("audit", "--out", str(out), "--simulate-config", str(root / "small.toml"), *DRAWS, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("[skip]") == len(STAGES), dry.stdout
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    # Re-measure with other settings: metrics.parquet changes under explain and report.
    assert _cli("measure", str(copy), "--interval", "basic", "--bootstrap", "30").returncode == 0
    dry = _cli("audit", "--out", str(copy), "--simulate-config", str(root / "small.toml"), *DRAWS, "--dry-run")
    lines = {line.split("]")[1].split(":")[0].strip(): line for line in dry.stdout.splitlines() if line.startswith("[")}
    assert lines["simulate"].startswith("[skip]")
    assert "settings changed" in lines["measure"] and "interval" in lines["measure"]
    assert "input metrics.parquet changed" in lines["explain"]
    assert lines["report"].startswith("[run ]")
    # The report refuses a folder whose stages disagree.
    refused = _cli("report", str(copy))
    assert refused.returncode == 2 and "disagree" in refused.stderr and "Traceback" not in refused.stderr
    again = _audit(copy, root / "small.toml")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[run ] measure" in again.stdout and "[skip] explain" in again.stdout  # same metrics again
    assert_same_outputs(out, copy)


def test_each_stage_command_writes_what_the_audit_writes(audited, tmp_path):
    """simulate, perceive, measure, disparity, explain, plan and report one by one, with the
    audit's settings, give the audit's files; the audit then finds every stage up to date
    (those whose settings match) or reruns it to the same files."""
    root, out, _ = audited
    b = tmp_path / "b"
    steps = [
        ["simulate", "--out", str(b), "--config", str(root / "small.toml")],
        ["perceive", str(b)],
        ["measure", str(b)],
        ["disparity", str(b), "--draws", "40", "--chains", "2"],
        ["explain", str(b), "--training-size", "3000", *DRAWS],
        ["plan", "--posterior", str(b / "training_mix.nc"), "--budget", "750", "--out", str(b)],
        ["report", str(b)],
    ]
    for args in steps:
        result = _cli(*args)
        assert result.returncode == 0, (args, result.stderr[-2000:])
    assert_same_outputs(out, b)
    ours = (b / "report.html").read_text().replace(str(b.resolve()), "DIR")
    theirs = (out / "report.html").read_text().replace(str(out.resolve()), "DIR")
    assert ours.split("<h2>Settings and versions</h2>")[0] == theirs.split("<h2>Settings and versions</h2>")[0]
    dry = _cli("audit", "--out", str(b), "--simulate-config", str(root / "small.toml"), *DRAWS, "--dry-run")
    assert "[skip] simulate" in dry.stdout and "[skip] measure" in dry.stdout and "[skip] explain" in dry.stdout


class Killed(BaseException):
    """Stands for SIGKILL in this process: no handler of faceaudit's catches it, and the
    files written before it stay as they are (each write is atomic)."""


# The first file each stage writes; the stop lands before the stage's other files and record.
FIRST_WRITE = {"simulate": "index.json", "perceive": "perceived.parquet", "measure": "audit_space.npz", "disparity": "posterior.nc",
               "explain": "training_mix.nc", "plan": "plan.parquet", "report": "report.html"}


def test_a_stop_at_every_stage_resumes_to_the_same_files(audited, tmp_path, monkeypatch):
    """Stopped right after each stage's first file, one stage after the other, then a plain
    rerun: every stage file equals the uninterrupted run's, and no stage was skipped on a
    half-written result."""
    root, out, _ = audited
    target = tmp_path / "stopped"
    write = io.atomic_write
    for stage in STAGES:
        def stop_after(path, writer, name=FIRST_WRITE[stage]):
            write(path, writer)
            if Path(path).name == name:
                raise Killed(name)

        monkeypatch.setattr(io, "atomic_write", stop_after)
        with pytest.raises(Killed):
            _audit(target, root / "small.toml")
        monkeypatch.setattr(io, "atomic_write", write)
        assert next(target.rglob(FIRST_WRITE[stage]), None) is not None, stage
        assert not (target / "stage-records" / f"{stage}.json").exists(), stage  # no record: it will be redone
    done = _audit(target, root / "small.toml")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[run ] report" in done.stdout
    assert_same_outputs(out, target)




@pytest.mark.parametrize("when", ["after", "during"])
def test_a_sigkilled_stage_command_is_redone_to_the_same_files(audited, tmp_path, when):
    """A real SIGKILL of `faceaudit simulate` between two files (``after`` the first one's
    rename) or inside a write (``during``: its bytes in the temporary file, not yet renamed):
    no record and no half-written file; the command run again removes the dead writer's
    temporary file and writes the uninterrupted run's files. (The stop test above covers
    every stage through the audit; this one the process boundary.)"""
    root, out, _ = audited
    target = tmp_path / "killed"
    first = FIRST_WRITE["simulate"]
    command = ["simulate", "--out", target, "--config", root / "small.toml"]
    env = {**kill_hooks.install(tmp_path / "hook"), f"FACEAUDIT_TEST_KILL_{when.upper()}": first}
    killed = subprocess.run([sys.executable, "-m", "faceaudit", *map(str, command)], capture_output=True, text=True,
                            env=env)
    assert killed.returncode == -9, killed.stderr[-1500:]
    assert not (target / "stage-records" / "simulate.json").exists()
    temporaries = [p for p in target.rglob("*") if p.name.endswith(".tmp")]
    if when == "after":
        assert (target / "embeddings" / first).is_file() and not temporaries
    else:
        assert not (target / "embeddings" / first).exists()  # never a half-written file under its name
        assert [p.name.startswith(f".{first}.") for p in temporaries] == [True]
    again = _cli(*command)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (target / "stage-records" / "simulate.json").is_file()
    assert not [p for p in target.rglob("*") if p.name.endswith(".tmp")], "a dead writer's temporary file was kept"
    assert_same_outputs(out, target, ["manifest.parquet", "embeddings/index.json", "identity_spreads.json"])


def test_bad_simulation_config_fails_early_naming_the_file(tmp_path):
    result = _cli("audit", "--out", str(tmp_path / "o"), "--simulate-config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "missing.toml" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(audited, tmp_path):
    _, out, _ = audited
    shot = tmp_path / "report.png"
    common = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
              "--disable-background-networking", "--disable-component-update", "--no-first-run",
              f"--user-data-dir={tmp_path / 'profile'}"]
    result = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,2000", (out / "report.html").as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "rror" in line]
    assert not console_errors, console_errors
    dom = subprocess.run([*common, "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert "Headline findings" in dom.stdout and dom.stdout.count("<svg") >= 4  # figures are inline SVG
    assert "interval of" in dom.stdout  # every metric says what its interval is of
    from PIL import Image

    pixels = Image.open(shot).convert("L")
    assert pixels.getextrema()[0] < 100  # text and figures drawn, not a blank page


def test_two_audits_on_one_folder_one_runs_the_other_is_refused_at_once(audited, tmp_path):
    """A second `faceaudit audit` on a folder whose audit is running is refused at once,
    naming the lock and its holder; the first finishes to the files of a single run."""
    from faceaudit.files.lock import LOCK

    root, out, _ = audited
    target = tmp_path / "shared"
    first = subprocess.Popen([sys.executable, "-m", "faceaudit", "audit", "--out", str(target), "--simulate-config",
                              str(root / "small.toml"), *DRAWS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (target / LOCK).exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (target / LOCK).exists(), first.communicate()[1][-2000:]
        start = time.perf_counter()
        second = _audit(target, root / "small.toml")
        assert time.perf_counter() - start < 10
        assert second.returncode == 2 and f"in use by process {first.pid}" in second.stderr and LOCK in second.stderr
    finally:
        stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-2000:]
    assert not (target / LOCK).exists()
    assert_same_outputs(out, target)


def test_a_finding_whose_fit_did_not_converge_says_so_in_its_own_sentence(audited):
    """The module's audit runs 40 draws per chain: its training-mix fit does not converge,
    and the finding resting on it says so; a converged fit's finding does not."""
    from faceaudit.stages import report

    _, out, stdout = audited
    training_mix = pd.read_parquet(out / "training_mix_summary.parquet")
    assert training_mix["fit_problems"].iloc[0]  # 40 draws: R-hat / ESS problems
    metrics = pd.read_parquet(out / "metrics.parquet")
    lines = report.findings(metrics, None, None, training_mix)
    assert "The fit behind this finding did not converge" in lines[-1].plain
    assert "did not converge" in stdout
    assert "<b>The fit behind this finding did not converge</b>" in (out / "report.html").read_text()
    converged = training_mix.assign(fit_problems="")
    assert "did not converge" not in report.findings(metrics, None, None, converged)[-1].plain


BROWSER_PROBE = """<script>window.__alerts = 0; window.alert = function () { window.__alerts += 1; };</script>"""
BROWSER_MEASURE = """<script>
window.addEventListener('load', function () {
  var t = document.querySelector('table.overview'), r = t ? t.getBoundingClientRect() : {width: -1, height: -1};
  var text = document.body.innerText;
  document.title = 'MEASURED' + JSON.stringify({width: r.width, height: r.height,
    scroll: document.documentElement.scrollWidth, escaped: text.includes('&lt;') || text.includes('&amp;'),
    alerts: window.__alerts, scripts: document.scripts.length, onerror: document.querySelectorAll('[onerror]').length,
    text: text});
});
</script>"""


def _measure_in_chromium(report: Path, tmp_path: Path) -> dict:
    """Load a copy of ``report`` at 1280 px with a probe (alert counter, layout and text
    read-out, added by this test, not by the report) and return what it measured."""
    page = report.read_text()
    page = page.replace("<head>", "<head>" + BROWSER_PROBE, 1).replace("</body>", BROWSER_MEASURE + "</body>", 1)
    probe = tmp_path / "probed.html"
    probe.write_text(page)
    result = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--window-size=1280,900",
                             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                             probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    title = result.stdout.split("<title>MEASURED", 1)[1].split("</title>", 1)[0]
    return json.loads(html.unescape(title))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_overview_fits_one_screen_and_no_escaped_text_shows(audited, tmp_path):
    """The default world's overview (8 groups, every ranking metric) fits 1280 x 900, the
    page never scrolls sideways at 1280 px, and no '&lt;' or '&amp;' reaches the reader."""
    _, out, _ = audited
    seen = _measure_in_chromium(out / "report.html", tmp_path)
    assert 0 < seen["width"] <= 1280 and 0 < seen["height"] <= 900, seen
    assert seen["scroll"] <= 1280 and not seen["escaped"], seen


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_hostile_labels_and_file_names_are_shown_as_text_and_run_nothing(tmp_path):
    from faceaudit.pipeline import run_stage
    from faceaudit.stages import measure, perceive, report, simulate
    from faceaudit.tables import simulation

    hostile = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
    folder = tmp_path / '"><img src=x onerror=alert(2)>&'
    config = simulation.SimulationConfig(races=hostile, genders=("&", "b"), race_shares=(0.3, 0.7), dim=6,
                                       reference_per_group=40, group_images=40, invented_identities=2,
                                       celebrity_identities=0, seeds_per_identity=2, labelled_identities=6,
                                       neutral_prompts=2, neutral_images=30, generator="<b>gen</b>")
    run_stage(folder, simulate, simulate.Settings(0, config))
    run_stage(folder, perceive, perceive.Settings(classifiers=("simulated",),
                                                  fit=perceive.FitSettings(draws=200)))
    run_stage(folder, measure, measure.Settings())
    run_stage(folder, report, report.Settings())
    seen = _measure_in_chromium(folder / "report.html", tmp_path)
    assert seen["alerts"] == 0 and seen["onerror"] == 0, seen
    assert seen["scripts"] == 3  # the probe's two and the report's own sort script: no injected one
    for label in (*hostile, "<b>gen</b>", '"><img src=x onerror=alert(2)>&'):
        assert label in seen["text"], label  # shown as the text it is
    assert not seen["escaped"]


def test_the_reports_overview_shows_the_numbers_of_metrics_parquet(audited):
    """Every cell of the report's overview (read back from the HTML) is the value and the
    interval of its row in metrics.parquet, at the catalogue's display scale."""
    from html.parser import HTMLParser

    _, out, _ = audited

    class Overview(HTMLParser):
        def __init__(self):
            super().__init__()
            self.inside, self.headers, self.rows, self.cell = False, [], [], None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "table" and attrs.get("class") == "overview":
                self.inside = True
            elif self.inside and tag == "tr":
                self.rows.append([])
            elif self.inside and tag in ("td", "th"):
                self.cell = {"sort": attrs.get("data-value"), "text": ""}

        def handle_endtag(self, tag):
            if tag == "table":
                self.inside = False
            elif self.inside and tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell["text"] += data

    parser = Overview()
    parser.feed((out / "report.html").read_text())
    header, *body = parser.rows
    by_label = {f"{info(m).shown_label} {info(m).arrow}": m for m in CATALOGUE}
    columns = [by_label[c["text"]] for c in header[1:]]
    metrics = pd.read_parquet(out / "metrics.parquet")
    metrics = metrics[metrics.edit == ""].set_index(["group", "metric"])
    groups = set(metrics.index.get_level_values("group")) - {"all"}
    assert {"mmd2", "fd_audit", "vendi"} <= set(columns) and {row[0]["text"] for row in body} == groups
    for row in body:
        group = row[0]["text"]
        for name, cell in zip(columns, row[1:]):
            want, scale = metrics.loc[(group, name)], info(name).scale
            assert float(cell["sort"]) == pytest.approx(want.value * scale, rel=1e-12), (group, name)
            shown = f"{want.value * scale:.3g}"
            assert cell["text"].startswith(shown) and f"[{want.low * scale:.3g}, {want.high * scale:.3g}]" in cell["text"]


def test_a_registered_metric_reaches_the_cli_table_metrics_parquet_and_the_report(audited, tmp_path):
    """``cmmd_median`` (the Gaussian-kernel MMD^2 at the median distance of the audit's rows)
    is one entry of ``core.metrics.REGISTRY`` with its catalogue entry on ``MMD2``: asked
    for, it is in ``faceaudit metrics``' table, in ``metrics.parquet`` and in the report, with
    one bandwidth for every group (its median over all rows, checked here)."""
    root, out, _ = audited
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    audit = _cli("audit", "--out", str(copy), "--simulate-config", str(root / "small.toml"), *DRAWS,
                 "--metrics", "mmd2,fd_audit,cmmd_median")
    assert audit.returncode == 0, audit.stderr[-2000:]
    metrics = pd.read_parquet(copy / "metrics.parquet")
    rows = metrics[metrics.metric == "cmmd_median"]
    assert len(rows) >= 4 and np.isfinite(rows.value).all() and (rows.low < rows.high).all()
    assert info("cmmd_median").label in (copy / "report.html").read_text()

    import faceaudit.core as fc

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 6)), rng.normal(size=(120, 6)) + 0.3
    labels = np.repeat(["a", "b"], 60)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "g.txt").write_text("\n".join(labels))
    shown = _cli("metrics", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--reference-groups", str(tmp_path / "g.txt"),
                 "--generated-groups", str(tmp_path / "g.txt"), "--metrics", "cmmd_median", "--json", str(tmp_path / "m.json"))
    assert shown.returncode == 0 and "cmmd_median" in shown.stdout, shown.stderr[-2000:]
    by_group = {r["group"]: r["value"] for r in json.loads((tmp_path / "m.json").read_text())["rows"]}
    sigma = fc.median_bandwidth(x, y)
    direct = 1000 * float(fc.mmd2(x[labels == "a"], y[labels == "a"], kernel="gaussian", bandwidth=sigma))
    assert by_group["a"] == pytest.approx(direct, rel=1e-10)


def test_every_stage_file_is_named_once_with_its_writer(audited):
    """Each file a stage's record lists (less the embedding stores) is in
    ``files.outputs.FILES`` under the stage that wrote it, so errors about a file name the
    stage to redo, and the report reads the same table."""
    from faceaudit.files import outputs

    _, out, _ = audited
    shared = {outputs.MANIFEST, outputs.INDEX}  # written by simulate, generate or ingest, and embed or simulate
    for record in sorted((out / "stage-records").glob("*.json")):
        content = json.loads(record.read_text())
        for name in content["outputs"]:
            if name.startswith("embeddings/") and name != outputs.INDEX:
                continue
            assert name in outputs.FILES, f"{content['stage']} writes {name}, which files/outputs.py does not name"
            if name not in shared:
                assert outputs.FILES[name].stage == content["stage"], name
