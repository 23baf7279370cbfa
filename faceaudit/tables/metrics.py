"""Per-group distribution and diversity metrics of one reference/generated pair of embedding
sets, as tidy rows: the one path behind ``faceaudit metrics`` and the measure stage.

Every row carries its estimand, the size it is defined at, an interval of that estimand
and, where the number should not be used to rank groups, a warning that says why (the
catalogue's words). The audit space (FD in the reference's top principal directions) is
built once per audit from a held-out half of every group's reference rows
(``core.space_rows``) and shared by every group and generator, so their numbers compare;
the audit-space FD is measured on the other half.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from faceaudit import core
from faceaudit.files.io import progress_bar
from faceaudit.tables.catalogue import ALL, DEFAULT_EMBEDDING_METRICS, EMBEDDING_METRICS, info


@dataclasses.dataclass(frozen=True)
class DistributionSettings:
    """How the distribution metrics are computed (validated when built)."""

    metrics: tuple[str, ...] | None = None  # None: DEFAULT_EMBEDDING_METRICS (those that rank groups fairly)
    confidence: float = 0.95
    k: int = 5  # PRDC neighbourhood
    interval: str = "jackknife"  # or basic / percentile / bca for size-independent metrics
    bootstrap: int = 0  # replicates, for bootstrap intervals only
    subsamples: int = 8  # random subsets averaged per group at the common size
    common_size: int | None = None  # None: the smallest group's size (per set)
    audit_ratio: int = 10  # the audit space keeps n >= ratio * k in every group
    audit_max_dim: int = 64

    def __post_init__(self):
        if self.metrics is None:
            object.__setattr__(self, "metrics", DEFAULT_EMBEDDING_METRICS)
        unknown = [m for m in self.metrics if m not in EMBEDDING_METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {list(EMBEDDING_METRICS)}")
        if not self.metrics:
            raise ValueError("no metrics requested")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")
        if self.interval not in ("jackknife", "basic", "percentile", "bca"):
            raise ValueError(f"interval must be jackknife, basic, percentile or bca, got {self.interval!r}")
        if self.interval != "jackknife" and self.bootstrap < 20:
            raise ValueError(f"a {self.interval} bootstrap interval needs at least 20 replicates (--bootstrap), "
                             f"got {self.bootstrap}; the default jackknife interval needs none")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")

    def evaluations(self) -> list:
        """The metric objects to evaluate (``core.metrics.REGISTRY`` with these settings and
        the requested outputs), in the order the metrics were asked for."""
        chosen = []
        for metric in core.metrics.REGISTRY:
            asked = tuple(o for o in metric.outputs if o in self.metrics)
            if asked:
                chosen.append(metric.with_settings(self).select(asked))
        return sorted(chosen, key=lambda m: min(self.metrics.index(o) for o in m.outputs))

    def scheme(self, metric, common_size) -> core.Scheme:
        """The interval scheme of ``metric``: a size-dependent metric at ``common_size`` (the
        delete-d jackknife its object chooses), the others by the chosen interval."""
        if metric.size_dependent:
            return core.chain(core.CommonSize(common_size, self.subsamples), confidence=self.confidence)
        part = core.Jackknife() if self.interval == "jackknife" else core.Bootstrap(self.interval, self.bootstrap)
        return core.chain(part, confidence=self.confidence)

    def no_effect(self) -> list[str]:
        """Options given that do nothing with the others (said before any work)."""
        return unused_bootstrap(self.interval, self.bootstrap)

    def min_group_size(self, reference: bool = False) -> int:
        """Rows every group needs in the reference (``reference=True``) or generated set for
        every requested metric."""
        return max(2, *(m.min_group_size(reference) for m in self.evaluations()))


def unused_bootstrap(interval: str, bootstrap: int) -> list[str]:
    """The note for ``--bootstrap`` given with the jackknife interval (``faceaudit metrics``
    and ``faceaudit audit`` say it before any work)."""
    if bootstrap and interval == "jackknife":
        return [f"--bootstrap {bootstrap} has no effect with --interval jackknife (the default); pick basic, "
                "percentile or bca to use bootstrap replicates"]
    return []


def check_group_sizes(counts: dict[str, tuple[int, int]], settings: DistributionSettings, where: str) -> None:
    """Refuse, before any work, a group too small for a requested metric (naming it)."""
    for group, (n_ref, n_gen) in sorted(counts.items()):
        for set_name, n in (("reference", n_ref), ("generated", n_gen)):
            need = settings.min_group_size(reference=set_name == "reference")
            if n < need:
                raise ValueError(f"{where}: group {group!r} has {n} {set_name} embedding(s); "
                                 f"{', '.join(settings.metrics)} need at least {need} per group and set")


def audit_space(reference: np.ndarray, reference_groups, generated_sizes, settings: DistributionSettings,
                seed: int = 0):
    """The audit space of an audit and the reference rows its FD is measured on.

    The space is spanned by the top ``k`` principal directions of a random half of each
    group's reference rows (``core.space_rows``), rows the FD never sees: directions found
    in the measured rows would select their noise into the space and bias every FD upward.
    ``k = smallest group // ratio`` over the measured reference halves and ``generated_sizes``.

    Returns:
        ``(space, measured)``: the ``core.AuditSpace`` and a mask of the reference rows to
        measure on.
    """
    labels = np.asarray(reference_groups)
    measured = ~core.space_rows(labels, seed)
    sizes = [int(np.sum(labels[measured] == g)) for g in sorted(set(labels.tolist()))] + [int(n) for n in generated_sizes]
    k = core.audit_dimension(sizes, reference.shape[1], ratio=settings.audit_ratio, max_dim=settings.audit_max_dim)
    return core.audit_space(reference[~measured], k), measured


def _rows(est: core.GroupEstimates, metric, dim: int) -> list[dict]:
    one_sample = not metric.two_sample
    meta = info(est.metric)
    rows = []
    for i, group in enumerate(est.groups):
        low, high = meta.clip(float(est.low[i]), float(est.high[i]))
        rows.append(dict(
            group=group, metric=est.metric, value=float(est.estimate[i]), low=low, high=high, se=float(est.se[i]),
            df=float(est.df[i]), interval=est.interval, confidence=est.confidence,
            n_reference=0 if one_sample else int(est.n_x[i]),
            n_generated=int(est.n_x[i]) if one_sample else int(est.n_y[i]),
            size_reference=0 if one_sample else int(est.size_x[i]),
            size_generated=int(est.size_x[i]) if one_sample else int(est.size_y[i]),
            estimand=meta.estimand, warning=metric.warning(est.metric, est, i, dim),
        ))
    return rows


def distribution_rows(key, reference, reference_groups, generated, generated_groups,
                      settings: DistributionSettings, audit=None, *, overall: bool = True) -> list[dict]:
    """Rows of every requested metric for every group, and with ``overall`` for all rows
    together as group ``"all"`` (size-independent metrics only: a size-dependent one is
    defined at the groups' common size, which says little about the pooled set).

    Args:
        key: PRNG key (subsets, resampling).
        reference, generated: ``(n, d)`` embeddings; *_groups: their labels.
        settings: what to compute.
        audit: ``(space, measured)``, the audit space for ``fd_audit`` and the mask of the
            reference rows it is measured on (default: ``audit_space`` of these sets).
    """
    space, measured = audit if audit is not None else (None, None)
    reference = np.asarray(reference, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    ref_groups, gen_groups = np.asarray(reference_groups), np.asarray(generated_groups)
    names = sorted(set(ref_groups))
    counts = {g: (int(np.sum(ref_groups == g)), int(np.sum(gen_groups == g))) for g in names}
    ref_common = settings.common_size or min(c[0] for c in counts.values())
    gen_common = settings.common_size or min(c[1] for c in counts.values())
    evaluations = settings.evaluations()
    in_audit_space = any(m.source == "audit" for m in evaluations)
    if in_audit_space and space is None:
        seed = int(np.asarray(jax.random.key_data(key)).ravel()[-1])
        space, measured = audit_space(reference, ref_groups, [c[1] for c in counts.values()], settings, seed)
    # (embeddings of the reference, its labels, embeddings of the generated set) per source
    data = {"embedding": (reference, ref_groups, generated), "generated": (generated, gen_groups, None)}
    if in_audit_space:
        if measured is None:
            raise ValueError("distribution_rows: an audit space needs the mask of the reference rows it is measured on")
        data["audit"] = (space.project(reference[measured]), ref_groups[measured], space.project(generated))
    rows: list[dict] = []
    bar = progress_bar(range(len(evaluations)), "metrics")
    for index, metric in enumerate(evaluations):
        x, x_groups, y = data[metric.source]
        metric = metric.bind(x, y if y is not None else x)  # what depends on all rows: one value for every group
        bar.set_postfix_str(f"{'/'.join(metric.outputs)} ({len(names)} groups"
                            f"{' + all' if overall and not metric.size_dependent else ''})")
        source = metric.source
        dim = space.dim if source == "audit" else reference.shape[1]
        scheme = settings.scheme(metric, gen_common if source == "generated" else (ref_common, gen_common))
        step_key = jax.random.fold_in(key, index)
        results_of_metric = [core.by_group(metric, x, x_groups, y, gen_groups, key=step_key, scheme=scheme)]
        if overall and not metric.size_dependent:
            results_of_metric.append(core.pooled(metric, x, y, name=ALL, key=step_key, scheme=scheme))
        for result in results_of_metric:
            results = result if isinstance(result, dict) else {metric.outputs[0]: result}
            for est in results.values():
                rows += _rows(est, metric, dim)
        bar.update()
    bar.close()
    return rows
