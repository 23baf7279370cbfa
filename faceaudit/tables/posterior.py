"""Running numpyro's samplers, and the diagnostics of any posterior fit, with what to do
about each problem.

Every fit faceaudit runs (disparity, explain) stores these beside its results and prints
the problems: a number from chains that disagree is not a result.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from faceaudit import runtime
from faceaudit.files.quiet import arviz

R_HAT_LIMIT = 1.01
ESS_MIN = 400

@dataclasses.dataclass(frozen=True)
class Sampling:
    """How a NUTS fit runs: ``draws`` kept per chain after as many warm-up steps, on
    ``chains`` chains from ``seed``."""

    draws: int
    chains: int
    seed: int
    progress: bool = False


# numpyro's extra fields under the names arviz gives them.
_STAT_NAMES = {"potential_energy": "lp", "adapt_state.step_size": "step_size", "num_steps": "n_steps",
               "accept_prob": "acceptance_rate"}


# Compiled chain programs of this process, by what fixes their trace (see ReusedParallelChains);
# the oldest goes when a new one would make more than _KEPT_PROGRAMS (compiled code stays in
# memory, and a long experiment may fit many shapes).
_CHAIN_PROGRAMS: dict = {}
_KEPT_PROGRAMS = 8


class ReusedParallelChains:
    """numpyro ``chain_method``: chains side by side on the host's devices, as ``"parallel"``,
    compiled once per process for every run of the same model and shapes.

    numpyro maps each run over a fresh closure of its data, so every run traces and compiles
    its whole sampler again, and where the model holds a host callback (the analytical
    model's LAPACK ``eigh`` on CPU) JAX's persistent cache never keeps it: ~20 s for each
    ``explain`` fit of a small audit, every time. Here the data are arguments of one
    ``pmap`` kept for the process, so a second run with other data but the same shapes
    reuses the program (~5 s). The MCMC must have ``jit_model_args=True`` (its sample
    function then takes the data as arguments too, instead of holding the first run's).
    ``key`` names everything the trace fixes beyond the data's structure and shapes: the
    model, and any value the kernel baked in (an ``init_to_value`` start, say).

    Falls back to a plain ``pmap`` of numpyro's closure if numpyro's internals change shape.
    """

    def __init__(self, key):
        self.key = key

    def __call__(self, partial_map_fn):
        try:
            mcmc, kw = partial_map_fn.func.__self__, partial_map_fn.keywords
            args, kwargs, fields, sites = kw["args"], kw["kwargs"], kw["collect_fields"], kw["remove_sites"]
            jit_args = mcmc._jit_model_args
        except (AttributeError, KeyError):
            return jax.pmap(partial_map_fn)
        if not jit_args:
            raise ValueError("ReusedParallelChains needs MCMC(..., jit_model_args=True): without it the program "
                             "would keep the first run's data")
        leaves, treedef = jax.tree.flatten((args, kwargs))
        key = (self.key, mcmc.num_warmup, mcmc.num_samples, mcmc.num_chains, mcmc.thinning, fields, sites, treedef,
               tuple((np.shape(leaf), str(getattr(leaf, "dtype", type(leaf).__name__))) for leaf in leaves))
        program = _CHAIN_PROGRAMS.get(key)
        if program is None:
            single = partial_map_fn.func

            def chain(map_args, args, kwargs):
                return single(map_args, args=args, kwargs=kwargs, collect_fields=fields, remove_sites=sites)

            while len(_CHAIN_PROGRAMS) >= _KEPT_PROGRAMS:
                _CHAIN_PROGRAMS.pop(next(iter(_CHAIN_PROGRAMS)))
            program = _CHAIN_PROGRAMS[key] = jax.pmap(chain, in_axes=(0, None, None))
        return lambda map_args: program(map_args, args, kwargs)


def chain_method(num_chains: int, key, progress: bool):
    """The ``chain_method`` of a fit with ``jit_model_args=True``: ``ReusedParallelChains(key)``
    where chains run side by side and no progress bar is asked for (numpyro shows none for a
    callable method), else ``runtime.chain_method``'s choice."""
    method = runtime.chain_method(num_chains)
    return ReusedParallelChains(key) if method == "parallel" and not progress else method


def inference_data(mcmc, *, observed: dict, coords=None, dims=None, prior=None, posterior_predictive=None):
    """arviz InferenceData of a finished numpyro run, from its draws and the data it was given.

    Not ``arviz.from_numpyro``: that runs the model once more with values drawn from the
    prior, only to find the observed sites the caller already holds, and drawing compiles
    numpyro's Gamma and Dirichlet samplers (4-7 s per fit here, in every process). The
    groups and names are from_numpyro's: ``prior`` (a ``Predictive`` output) is split into
    the prior of the model's parameters and the prior predictive of the rest;
    ``posterior_predictive`` (``Predictive`` on the posterior draws) gets their chains back.
    There is no pointwise log-likelihood group: nothing faceaudit reports uses one, and it
    would mean evaluating the model at every draw.
    """
    az = arviz()
    posterior = jax.device_get(mcmc.get_samples(group_by_chain=True))
    chains, draws = next(iter(posterior.values())).shape[:2]
    stats = {}
    for name, value in jax.device_get(mcmc.get_extra_fields(group_by_chain=True)).items():
        if isinstance(value, (dict, tuple)):
            continue
        renamed = _STAT_NAMES.get(name, name)
        stats[renamed] = -value if name == "potential_energy" else value
        if name == "num_steps":
            stats["tree_depth"] = np.log2(value).astype(int) + 1

    groups = {}
    if prior is not None:
        prior = {k: np.asarray(v)[None] for k, v in jax.device_get(prior).items()}  # one chain
        groups["prior"] = {k: v for k, v in prior.items() if k in posterior}
        groups["prior_predictive"] = {k: v for k, v in prior.items() if k not in posterior}
    if posterior_predictive is not None:
        groups["posterior_predictive"] = {k: np.asarray(v).reshape(chains, draws, *np.shape(v)[1:])
                                          for k, v in jax.device_get(posterior_predictive).items()}
    return az.from_dict(posterior=posterior, sample_stats=stats, observed_data=jax.device_get(observed),
                        coords=coords, dims=dims, **groups)


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
