"""Identity preservation by pictured group in the study's survey, with Bayesian context.

Reproduces the study's figure (share of "Yes, same person" to Q1 after an edit, by the
pictured person's race and gender) from the survey file, then fits faceaudit's
hierarchical model to put each share in context: posterior means with 95% HDIs and the
probability that each group is the worst preserved.

    python experiments/survey_identity.py --survey ../shared/data/limitations-survey/survey_metrics_SDv2.1_Celeb_demog_df.csv --out experiments/out
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from faceaudit.files import survey
from faceaudit.tables import disparity  # noqa: E402
from faceaudit.files.io import atomic_write_text  # noqa: E402

DEFAULT_SURVEY = Path(__file__).resolve().parents[2] / "shared/data/limitations-survey/survey_metrics_SDv2.1_Celeb_demog_df.csv"


def main(args: argparse.Namespace) -> dict:
    tidy = survey.read_survey(args.survey)
    out = Path(args.out)
    results = {"n_responses": len(tidy), "observed": {}, "bayes": {}}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True, gridspec_kw={"width_ratios": [4, 2]})
    for ax, factor in zip(axes, ("race", "gender")):
        share = (tidy["Q1"] == "Yes").groupby(tidy[factor]).mean()
        results["observed"][factor] = {g: round(float(v), 3) for g, v in share.items()}
        spec = disparity.DisparitySpec(
            outcome="Q1", group=(factor,), success="Yes", warmup=args.warmup,
            draws=args.samples, chains=args.chains, seed=args.seed,
        )
        data = disparity.PreparedData(tidy, spec, source=str(args.survey))
        idata = disparity.fit(data)
        summary = disparity.summarise(idata, data)
        summary["diagnostics"] = disparity.diagnostics(idata, ["cell_mean"])
        results["bayes"][factor] = summary
        names = [g["group"] for g in summary["groups"]]
        means = [g["mean"] for g in summary["groups"]]
        err = [[g["mean"] - g["hdi_low"] for g in summary["groups"]], [g["hdi_high"] - g["mean"] for g in summary["groups"]]]
        ax.bar(names, [share[n] for n in names], color="#9bb7d4", label='observed share of "Yes"')
        ax.errorbar(names, means, yerr=err, fmt="o", color="#1f3b5c", capsize=4, label="posterior mean, 95% HDI")
        for i, g in enumerate(summary["groups"]):
            ax.annotate(f"P(worst)={g['p_worst']:.2f}", (i, g["hdi_low"] - 0.012), ha="center", va="top", fontsize=8)
        ax.set_title(f"by pictured {factor}")
        ax.set_ylim(0.8, 1.0)
    axes[0].set_ylabel("same person after the edit (Q1)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Identity preservation after SEGA edits, SD 2.1 celebrities ({len(tidy)} responses)")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "identity_preservation.png", dpi=130)
    atomic_write_text(out / "identity_preservation.json", json.dumps(results, indent=2))
    print(json.dumps(results["observed"]))
    for factor, summary in results["bayes"].items():
        worst = max(summary["groups"], key=lambda g: g["p_worst"])
        print(f"{factor}: worst preserved = {worst['group']} (P = {worst['p_worst']:.3f})")
    return results


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--survey", type=Path, default=DEFAULT_SURVEY)
    p.add_argument("--out", type=Path, default=Path("experiments/out"))
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
