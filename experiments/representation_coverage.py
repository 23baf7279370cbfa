"""Do the corrected shares of who gets drawn cover the truth, where raw shares do not?

    python experiments/representation_coverage.py --worlds 200 --out benchmarks/results

Each world draws a perceived-attribute classifier whose accuracy is 0.95 for the commonest
category and uniform in [0.6, 0.8] for the others, with half of every error going to the
commonest category (``design/representation.md``'s check), calibration counts from
``--calibration`` labelled faces per category, and prompts whose true depicted mixes lean
towards the commonest category (Dirichlet around a training mix that is itself drawn per
world). ``--prompts`` prompts have 50 images and as many have 200; two more share one true
mix at 50 and 200 images (the equal-truth pair). The perceived labels of every image are
drawn through the confusion, and the perceive stage's fit (``tables.representation``,
defaults) runs once per world.

Reported, per prompt size: how often the 90% HDI of each depicted share covers the true
share; how often the raw classifier share's own 90% interval (of the perceived mix) covers
the true depicted share, and the raw shares' error in units of their own sampling SE
(binomial in the true perceived mix ``C^T pi``; about 0.8 where there is no bias); for the
equal-truth pair, how often the 90% HDI of the difference in MAD and in KL (against
uniform) excludes 0 (nominal: 0.10). Every world's row is appended to
``representation_coverage.jsonl``; a rerun skips finished worlds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from faceaudit import runtime
from faceaudit.files.io import append_jsonl, read_jsonl

LEVEL = 0.9
SIZES = (50, 200)


def draw_world(rng: np.random.Generator, k: int, prompts: int, calibration: int, concentration: float = 4.0) -> dict:
    """One world's classifier, calibration counts, true mixes and perceived counts."""
    shares = rng.dirichlet(np.full(k, 2.0))
    major = int(np.argmax(shares))
    accuracy = rng.uniform(0.6, 0.8, size=k)
    accuracy[major] = 0.95
    confusion = np.zeros((k, k))
    for j in range(k):
        others = [i for i in range(k) if i != j]
        if j != major and k > 2:
            confusion[j, major] = (1 - accuracy[j]) / 2
            rest = [i for i in others if i != major]
            confusion[j, rest] = (1 - accuracy[j]) / 2 / len(rest)
        else:
            confusion[j, others] = (1 - accuracy[j]) / len(others)
        confusion[j, j] = accuracy[j]
    counts = np.stack([rng.multinomial(calibration, confusion[j]) for j in range(k)])
    sizes = [n for n in SIZES for _ in range(prompts)] + list(SIZES)  # ... and the equal-truth pair last
    mixes = rng.dirichlet(concentration * k * shares, size=prompts * len(SIZES) + 1)
    mixes = np.concatenate([mixes, mixes[-1:]])
    perceived = np.stack([rng.multinomial(n, mix @ confusion) for n, mix in zip(sizes, mixes)])
    return {"confusion": confusion, "calibration": counts, "mixes": mixes, "sizes": np.asarray(sizes),
            "perceived": perceived}


def evaluate(world: dict, fit_settings=None) -> dict:
    """Fit one world with the perceive stage's fit and score it against the truth."""
    from faceaudit import core
    from faceaudit.tables import representation as tables

    settings = fit_settings or tables.FitSettings()
    k = world["calibration"].shape[0]
    names = [str(i) for i in range(k)]
    sets = [str(s) for s in range(len(world["sizes"]))]
    fit = tables.fit_attribute(world["calibration"], world["perceived"], names, sets, settings)
    _, low, high, _ = tables.summarise_draws(fit.mix, LEVEL)
    truth, sizes = world["mixes"], world["sizes"]
    covered = (truth >= low) & (truth <= high)
    raw = tables.raw_shares(world["perceived"])
    raw_draws = np.random.default_rng(0).dirichlet  # the raw shares' own interval: Dirichlet(1 + counts)
    raw_low, raw_high = zip(*(core.hdi(raw_draws(1.0 + row, size=4000), LEVEL) for row in world["perceived"]))
    raw_covered = (truth >= np.asarray(raw_low)) & (truth <= np.asarray(raw_high))
    perceived_mix = truth @ world["confusion"]  # what raw shares estimate; their sampling SE is binomial in it
    raw_se = np.sqrt(perceived_mix * (1 - perceived_mix) / sizes[:, None])
    uniform = np.full(k, 1.0 / k)
    div = tables.divergence_draws(fit.mix[:, -2:], uniform)
    out = {"diagnostics_ok": bool(fit.diagnostics["ok"])}
    for n in SIZES:
        rows = sizes[:-2] == n
        out[f"coverage_{n}"] = float(covered[:-2][rows].mean())
        out[f"raw_coverage_{n}"] = float(raw_covered[:-2][rows].mean())
        out[f"raw_error_in_se_{n}"] = float((np.abs(raw - truth)[:-2][rows] / raw_se[:-2][rows]).mean())
        out[f"corrected_error_{n}"] = float(np.abs(fit.mix.mean(0) - truth)[:-2][rows].mean())
        out[f"raw_error_{n}"] = float(np.abs(raw - truth)[:-2][rows].mean())
    for measure in ("mad", "kl"):
        lo, hi = core.hdi(div[measure][:, 0] - div[measure][:, 1], LEVEL)
        out[f"equal_truth_{measure}_excludes_0"] = bool(lo > 0 or hi < 0)
    return out


def summarise(rows: list[dict]) -> str:
    n = len(rows)

    def share(key):
        values = np.asarray([r[key] for r in rows], dtype=float)
        return values.mean(), values.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")

    lines = [f"# Corrected vs raw shares of who gets drawn ({n} worlds, nominal {LEVEL:.0%} intervals)", "",
             "| images per prompt | corrected HDI covers truth | raw interval covers truth | raw error / raw SE | "
             "mean abs error corrected | mean abs error raw |", "|---|---|---|---|---|---|"]
    for size in SIZES:
        cells = [share(f"{key}_{size}") for key in ("coverage", "raw_coverage", "raw_error_in_se", "corrected_error",
                                                    "raw_error")]
        lines.append(f"| {size} | " + " | ".join(f"{m:.3f} ({se:.3f})" for m, se in cells) + " |")
    lines += ["", "Equal truth, 50 vs 200 images: share of worlds whose 90% HDI of the difference excludes 0 "
              "(nominal at most 0.10)", "", "| measure | excludes 0 |", "|---|---|"]
    for measure in ("mad", "kl"):
        m, se = share(f"equal_truth_{measure}_excludes_0")
        lines.append(f"| {measure} | {m:.3f} ({se:.3f}) |")
    ok = np.mean([r["diagnostics_ok"] for r in rows])
    lines += ["", f"Fits with R-hat <= 1.01, ESS >= 400 and no divergence at the defaults: {ok:.3f}. "
              "Monte Carlo SE in brackets."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=200)
    parser.add_argument("--categories", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per size (50 and 200 images)")
    parser.add_argument("--calibration", type=int, default=200, help="labelled faces per category")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    runtime.configure()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "representation_coverage.jsonl"
    rows = read_jsonl(log)
    done = {r["world"] for r in rows if r.get("categories") == args.categories}
    for world in range(args.worlds):
        if world in done:
            continue
        rng = np.random.default_rng([world, args.categories])
        row = dict(evaluate(draw_world(rng, args.categories, args.prompts, args.calibration)), world=world,
                   categories=args.categories)
        append_jsonl(log, row)
        rows.append(row)
        if (world + 1) % 20 == 0:
            print(f"{world + 1} worlds", flush=True)
    mine = [r for r in rows if r.get("categories") == args.categories and r["world"] < args.worlds]
    text = summarise(mine)
    (args.out / f"representation_coverage_k{args.categories}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
