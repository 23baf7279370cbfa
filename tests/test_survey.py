"""Survey import on the study's real file, and refusal of ambiguous or broken tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from faceaudit.files import survey
from faceaudit.cli import app

SURVEY = Path(__file__).resolve().parents[2] / "shared/data/limitations-survey/survey_metrics_SDv2.1_Celeb_demog_df.csv"
needs_survey = pytest.mark.skipif(not SURVEY.is_file(), reason="../shared survey data not present")

# The study's reported shares of "Yes" to Q1 (shared/data/limitations-survey/README.md).
STUDY = {"Asian": 0.884, "Black": 0.962, "Indian": 0.949, "White": 0.940, "Female": 0.919, "Male": 0.946}


@pytest.fixture(scope="module")
def tidy():
    if not SURVEY.is_file():
        pytest.skip("../shared survey data not present")
    return survey.read_survey(SURVEY)


def test_one_row_per_response(tidy):
    raw = pd.read_csv(SURVEY)
    assert len(tidy) == len(raw) // 2 == 1701
    assert tidy["response"].is_unique
    # race and gender come from the image path, never from the duplicated column
    parsed = tidy["img"].str.split("/").str[1]
    assert (parsed == tidy["race"].str.lower() + "_" + tidy["gender"].map({"Male": "man", "Female": "woman"})).all()


def test_identity_preservation_shares_equal_the_study_to_the_last_digit(tidy):
    yes = tidy["Q1"] == "Yes"
    for factor in ("race", "gender"):
        for group, share in yes.groupby(tidy[factor]).mean().items():
            assert round(share, 3) == STUDY[group], group


@needs_survey
def test_cli_import_writes_parquet(tmp_path):
    out = tmp_path / "tidy.parquet"
    result = CliRunner().invoke(app, ["survey", "import", "--format", "limitations-2024", str(SURVEY), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 1701 and "1701 responses" in result.output


def synthetic_survey(rows: int = 8) -> pd.DataFrame:
    """A small table in the study's format: each response twice, under race and gender."""
    spec = survey.LIMITATIONS_2024
    out = []
    for i in range(rows):
        race, gender = ("asian", "man") if i % 2 else ("white", "woman")
        base = {c: "x" for c in spec.respondent}
        base.update({a: str(i % 5 + 1) for a in spec.answers}, Q1="Yes", Q3="No")
        base.update({m: str(0.1 * i) for m in spec.metrics})
        base.update(img=f"smile/{race}_{gender}/{i}", attribute="smile")
        out.append({**base, "Demographic": spec.races[race]})
        out.append({**base, "Demographic": spec.genders[gender]})
    return pd.DataFrame(out)


def test_synthetic_survey_imports(tmp_path):
    tidy = survey.read_survey(_write(tmp_path, synthetic_survey()))
    assert len(tidy) == 8 and set(tidy["race"]) == {"Asian", "White"} and set(tidy["gender"]) == {"Male", "Female"}


def _write(tmp_path, frame):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def test_unpaired_duplicate_is_refused(tmp_path):
    raw = synthetic_survey()
    bad = pd.concat([raw, raw.iloc[[0]]])  # one response now appears three times
    with pytest.raises(ValueError, match="ambiguous duplicates"):
        survey.read_survey(_write(tmp_path, bad))


def test_contradicting_demographic_is_refused(tmp_path):
    raw = synthetic_survey()
    row = raw.index[raw["Demographic"] == "Male"][0]
    raw.loc[row, "Demographic"] = "Female"
    with pytest.raises(ValueError, match="pictures a"):
        survey.read_survey(_write(tmp_path, raw))


def test_missing_column_and_unknown_format(tmp_path):
    raw = synthetic_survey()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['Q2'\]"):
        survey.read_survey(_write(tmp_path, raw.drop(columns=["Q2"])))
    with pytest.raises(ValueError, match="unknown survey format"):
        survey.read_survey(_write(tmp_path, raw), "limitations-2023")
    with pytest.raises(FileNotFoundError, match="survey file not found"):
        survey.read_survey(tmp_path / "nope.csv")
