"""Time the disparity model on the study's full survey: wall time and effective samples/s.

    python benchmarks/disparity.py --out benchmarks/results/disparity.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import arviz as az

from faceaudit.files import survey
from faceaudit.tables import disparity
from faceaudit.files.io import atomic_write_text

SURVEY = Path(__file__).resolve().parents[2] / "shared/data/limitations-survey/survey_metrics_SDv2.1_Celeb_demog_df.csv"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--survey", type=Path, default=SURVEY)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/disparity.json"))
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--warmup", type=int, default=500)
    args = p.parse_args(argv)
    tidy = survey.read_survey(args.survey)
    cases = []
    for group, kind, outcome, success in (
        (("race",), "binary", "Q1", "Yes"),
        (("race", "gender"), "binary", "Q1", "Yes"),
        (("race",), "ordinal", "Q2", None),
        (("race",), "continuous", "clip_direction", None),
    ):
        spec = disparity.DisparitySpec(
            outcome=outcome, group=group, kind=kind, success=success,
            chains=args.chains, draws=args.samples, warmup=args.warmup,
        )
        data = disparity.PreparedData(tidy, spec)
        t0 = time.perf_counter()
        idata = disparity.fit(data)
        seconds = time.perf_counter() - t0
        ess = az.ess(idata, var_names=["cell_mean"])["cell_mean"].values
        diag = disparity.diagnostics(idata, ["cell_mean"])
        case = {
            "outcome": outcome, "kind": kind, "group": list(group), "rows": len(tidy), "items": int(tidy["item"].nunique()),
            "chains": args.chains, "draws_per_chain": args.samples, "warmup": args.warmup,
            "seconds_including_compile": seconds, "min_ess_bulk": float(ess.min()),
            "min_ess_per_second": float(ess.min() / seconds), "max_r_hat": diag["max_r_hat"], "divergences": diag["divergences"],
        }
        cases.append(case)
        print(json.dumps(case), flush=True)
    atomic_write_text(args.out, json.dumps({"cases": cases}, indent=2))


if __name__ == "__main__":
    main()
