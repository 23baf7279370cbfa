"""Do the audit's posterior fits converge at their defaults, and do explain's shares cover?

    python experiments/fit_convergence.py --seeds 11 --out benchmarks/results

For the default simulated world (seed 0) and further seeds, runs the audit's stages with
their default settings (simulate -> measure -> disparity -> explain, 2 chains x FIT_DRAWS and
EXPLAIN_DRAWS)
and records each fit's R-hat, bulk and tail ESS and divergences, and how many of the 8
true training shares explain's 90% intervals cover. Rows are appended to
``fit_convergence.jsonl`` (a rerun skips finished seeds); the summary goes to
``fit_convergence.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from faceaudit import runtime
from faceaudit.files.io import append_jsonl, read_jsonl


def one_world(seed: int) -> dict:
    import pandas as pd

    from faceaudit import pipeline
    from faceaudit.pipeline import run_stage
    from faceaudit.stages import disparity, explain, measure, simulate

    settings = pipeline.AuditSettings(seed=seed)
    steps = {s.name: s for s in pipeline.steps(settings)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        truth = run_stage(out, simulate, steps["simulate"].settings).summary["truth"]
        run_stage(out, measure, steps["measure"].settings)
        start = time.perf_counter()
        dis = run_stage(out, disparity, steps["disparity"].settings).summary["diagnostics"]
        mid = time.perf_counter()
        exp = run_stage(out, explain, steps["explain"].settings).summary
        end = time.perf_counter()
        table = pd.read_parquet(out / "training_mix_summary.parquet").set_index("group")
    shares = {g: v["share"] for g, v in truth["groups"].items()}
    covered = [bool(table.loc[g, "share_low"] <= s <= table.loc[g, "share_high"]) for g, s in shares.items()]
    ed = exp["diagnostics"]
    return {"seed": seed, "disparity_r_hat": dis["max_r_hat"], "disparity_ess_bulk": dis["min_ess_bulk"],
            "disparity_ess_tail": dis["min_ess_tail"], "disparity_divergences": dis["divergences"],
            "explain_r_hat": ed["max_r_hat"], "explain_ess_bulk": ed["min_ess_bulk"], "explain_ess_tail": ed["min_ess_tail"],
            "explain_divergences": ed["divergences"], "shares_covered": int(sum(covered)), "shares": len(covered),
            "disparity_seconds": mid - start, "explain_seconds": end - mid}


def summarise(rows: list[dict]) -> str:
    lines = [f"# Posterior fits at their defaults ({len(rows)} simulated worlds, 2 chains)", "",
             "| seed | disparity R-hat | ESS bulk / tail | explain R-hat | ESS bulk / tail | divergences | "
             "shares covered (90%) | seconds (disparity, explain) |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["seed"]):
        lines.append(f"| {r['seed']} | {r['disparity_r_hat']:.3f} | {r['disparity_ess_bulk']:.0f} / "
                     f"{r['disparity_ess_tail']:.0f} | {r['explain_r_hat']:.3f} | {r['explain_ess_bulk']:.0f} / "
                     f"{r['explain_ess_tail']:.0f} | {r['disparity_divergences'] + r['explain_divergences']} | "
                     f"{r['shares_covered']} / {r['shares']} | {r['disparity_seconds']:.0f}, {r['explain_seconds']:.0f} |")
    ok = [r for r in rows if max(r["disparity_r_hat"], r["explain_r_hat"]) <= 1.01
          and min(r["disparity_ess_bulk"], r["explain_ess_bulk"]) >= 400]
    tails = [r for r in ok if min(r["disparity_ess_tail"], r["explain_ess_tail"]) >= 400]
    covered = sum(r["shares_covered"] for r in rows) / max(1, sum(r["shares"] for r in rows))
    lines += ["", f"Worlds where both fits reach R-hat <= 1.01 and bulk ESS >= 400: {len(ok)} of {len(rows)}; "
              f"with tail ESS >= 400 too (the audit's own check, behind the 90% intervals' ends): {len(tails)} of "
              f"{len(rows)}. Share of true training shares inside explain's 90% intervals: {covered:.3f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=11)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    runtime.configure()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "fit_convergence.jsonl"
    rows = read_jsonl(log)
    done = {r["seed"] for r in rows}
    for seed in range(args.seeds):
        if seed in done:
            continue
        row = one_world(seed)
        append_jsonl(log, row)
        rows.append(row)
        print(json.dumps(row), flush=True)
    text = summarise([r for r in rows if r["seed"] < args.seeds])
    (args.out / "fit_convergence.md").write_text(text)
    print(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
