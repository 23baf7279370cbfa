"""Survey tables of human judgements: import, de-duplicate, validate, write tidy Parquet.

A *format* is a schema: which columns are answers, which are per-image metrics, how the
pictured person's groups are read off the item, and how duplicated rows collapse. The
study's files (``limitations-2024``) repeat every response twice, once with
``Demographic`` set to the pictured person's race and once to their gender; the tidy table
has one row per response, with ``race`` and ``gender`` parsed from ``img``
(``attribute/race_gender/index``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd



@dataclasses.dataclass(frozen=True)
class SurveyFormat:
    name: str
    item: str
    duplicate_marker: str
    respondent: tuple[str, ...]
    answers: tuple[str, ...]
    metrics: tuple[str, ...]
    races: dict[str, str]
    genders: dict[str, str]


LIMITATIONS_2024 = SurveyFormat(
    name="limitations-2024",
    item="img",
    duplicate_marker="Demographic",
    respondent=("age", "education", "sex", "race", "race_input"),
    answers=("Q1", "Q2", "Q3", "Q4.a", "Q4.b", "d_quality", "Q1_int", "Q3_int"),
    metrics=(
        "src_clip_similarity", "tgt_clip_similarity", "clip_direction", "clip_image",
        "l1loss", "l2loss", "dino_image_similarity", "clip_edit_image_similarity",
    ),
    races={"asian": "Asian", "black": "Black", "indian": "Indian", "white": "White"},
    genders={"man": "Male", "woman": "Female"},
)
FORMATS = {LIMITATIONS_2024.name: LIMITATIONS_2024}


def read_survey(path: str | Path, fmt: str = "limitations-2024") -> pd.DataFrame:
    """Read a survey file of format ``fmt`` into a tidy frame, one row per response.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: unknown format, missing columns, an unparseable item, a ``Demographic``
            that contradicts the item, or duplicates that do not pair up (ambiguous).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown survey format {fmt!r}; known: {sorted(FORMATS)}")
    spec = FORMATS[fmt]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"survey file not found: {path}")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    needed = {spec.item, spec.duplicate_marker, "attribute", *spec.respondent, *spec.answers, *spec.metrics}
    missing = sorted(needed - set(raw.columns))
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} for format {fmt!r}")
    race, gender = _pictured(raw, spec, path)
    is_race = _race_copies(raw, spec, race, gender, path)
    _check_copies_pair_up(raw, spec, is_race, path)
    tidy = raw[is_race].drop(columns=[spec.duplicate_marker]).reset_index(drop=True)
    tidy.insert(0, "response", np.arange(len(tidy)))
    tidy = tidy.rename(columns={c: f"respondent_{c}" for c in spec.respondent})
    tidy["race"] = race[is_race].to_numpy()
    tidy["gender"] = gender[is_race].to_numpy()
    tidy["item"] = tidy[spec.item]
    for col in spec.metrics + ("Q2", "Q4.a", "Q4.b", "d_quality", "Q1_int", "Q3_int"):
        values = pd.to_numeric(tidy[col], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna())[0])
            raise ValueError(f"{path}: column {col!r} has a non-numeric value {tidy[col].iloc[row]!r} in response {row}")
        tidy[col] = values
    return tidy


def _pictured(raw: pd.DataFrame, spec: SurveyFormat, path: Path) -> tuple[pd.Series, pd.Series]:
    """The race and gender each row's item pictures (item ``attribute/race_gender/index``)."""
    parts = raw[spec.item].str.split("/", expand=True)
    if parts.shape[1] != 3:
        raise ValueError(f"{path}: column {spec.item!r} must read attribute/race_gender/index")
    pictured = parts[1].str.split("_", expand=True)
    race = pictured[0].map(spec.races)
    gender = pictured[1].map(spec.genders) if pictured.shape[1] > 1 else pd.Series(np.nan, index=raw.index)
    bad = race.isna() | gender.isna() | (parts[0] != raw["attribute"])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: row {row + 2} has item {raw[spec.item].iloc[row]!r}, which does not name a known race_gender and its attribute")
    return race, gender


def _race_copies(raw: pd.DataFrame, spec: SurveyFormat, race: pd.Series, gender: pd.Series, path: Path) -> pd.Series:
    """Which rows are a response's copy under race (the others are its copy under gender)."""
    marker = raw[spec.duplicate_marker]
    is_race = marker.isin(spec.races.values())
    is_gender = marker.isin(spec.genders.values())
    unknown = ~(is_race | is_gender)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise ValueError(f"{path}: row {row + 2}: unknown {spec.duplicate_marker} {marker.iloc[row]!r}")
    contradicts = (is_race & (marker != race)) | (is_gender & (marker != gender))
    if contradicts.any():
        row = int(np.flatnonzero(contradicts)[0])
        raise ValueError(
            f"{path}: row {row + 2}: {spec.duplicate_marker} is {marker.iloc[row]!r} but the item "
            f"{raw[spec.item].iloc[row]!r} pictures a {race.iloc[row]} {gender.iloc[row]} person"
        )
    return is_race


def _check_copies_pair_up(raw: pd.DataFrame, spec: SurveyFormat, is_race: pd.Series, path: Path) -> None:
    """Every response appears once under race and once under gender.

    Rows equal in every other column are copies of one response, or of several identical
    responses: the race copies and the gender copies must then be equally many.
    """
    content = [c for c in raw.columns if c != spec.duplicate_marker]
    keyed = raw.assign(_kind=np.where(is_race, "race", "gender"))
    counts = keyed.groupby(content, sort=False)["_kind"].value_counts().unstack(fill_value=0)
    for col in ("race", "gender"):
        if col not in counts:
            counts[col] = 0
    unpaired = counts[counts["race"] != counts["gender"]]
    if len(unpaired):
        item = unpaired.index[0][content.index(spec.item)]
        raise ValueError(
            f"{path}: ambiguous duplicates: a response about {item!r} appears "
            f"{unpaired['race'].iloc[0]} time(s) under race and {unpaired['gender'].iloc[0]} under gender; "
            "each response must appear once under each"
        )
