"""The audit's stages, one module each.

Every stage module exposes the same small surface, so the pipeline, its stage records and
the CLI treat them alike:

* ``NAME`` and ``DESCRIBE``;
* ``Settings``: a frozen dataclass of everything that changes the stage's output;
* ``inputs(folder, settings)``: the files it reads (relative to the folder, or absolute),
  whose content hashes go into its stage record;
* ``run(folder, settings) -> StageResult``: do the work, write the outputs atomically,
  return their paths and a summary for the terminal.

A CLI command (``faceaudit measure DIR``) and ``faceaudit audit`` both run a stage through
``faceaudit.pipeline.run_stage``, which writes the stage record last: the same function,
the same files.
"""

from __future__ import annotations

from typing import NamedTuple

# Draws per chain (and as many warm-up steps) of the audit's disparity and explain fits: 2
# chains x 200 left the default world's explain fit at R-hat 1.02-1.04 and ESS ~100. At 800
# the disparity fit reaches R-hat <= 1.01 and bulk and tail ESS >= 400 on 11 simulated
# worlds; explain's tail ESS (the ends of its 90% intervals) stayed at 220-420 there, and
# reaches 724 on the default world at 1,400 (benchmarks/results/fit_convergence.md).
FIT_DRAWS = 800
EXPLAIN_DRAWS = 1500
FIT_CHAINS = 2  # chains of every audit fit (R-hat needs at least 2)


class StageResult(NamedTuple):
    outputs: tuple[str, ...]  # paths written, relative to the audit folder
    summary: dict  # what the command line prints
