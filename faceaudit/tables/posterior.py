"""Sampler diagnostics of any posterior fit, with what to do about each problem.

Every fit faceaudit runs (disparity, explain) stores these beside its results and prints
the problems: a number from chains that disagree is not a result.
"""

from __future__ import annotations

import numpy as np

from faceaudit.files.quiet import arviz

R_HAT_LIMIT = 1.01
ESS_MIN = 400


def diagnostics(idata, var_names) -> dict:
    """R-hat, bulk/tail ESS and divergences of ``var_names``; ``problems`` says what to do."""
    chains = int(idata.posterior.sizes["chain"])
    summary = arviz().summary(idata, var_names=list(var_names), kind="diagnostics")
    divergences = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    r_hat = summary["r_hat"].to_numpy(dtype=float)
    out = {
        "chains": chains,
        "draws": int(idata.posterior.sizes["draw"]),
        "max_r_hat": float(np.nanmax(r_hat)) if chains > 1 and np.isfinite(r_hat).any() else None,
        "min_ess_bulk": float(summary["ess_bulk"].min()),
        "min_ess_tail": float(summary["ess_tail"].min()),
        "divergences": divergences,
    }
    problems = []
    if chains < 2:
        problems.append("one chain: R-hat cannot check convergence; run 2 or more chains (--chains)")
    elif out["max_r_hat"] is None or out["max_r_hat"] > R_HAT_LIMIT:
        shown = "nan" if out["max_r_hat"] is None else f"{out['max_r_hat']:.3f}"
        problems.append(f"R-hat {shown} > {R_HAT_LIMIT}: chains disagree; draw more (--draws / --samples, --warmup)")
    if min(out["min_ess_bulk"], out["min_ess_tail"]) < ESS_MIN:
        problems.append(f"effective sample size {min(out['min_ess_bulk'], out['min_ess_tail']):.0f} < {ESS_MIN}: "
                        "intervals are imprecise; draw more samples")
    if divergences:
        problems.append(f"{divergences} divergent transitions: intervals may be biased; raise the warm-up "
                        "or simplify the model")
    out["ok"] = not problems
    out["problems"] = problems
    return out
