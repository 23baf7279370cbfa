"""The classical tests across groups that the study reports beside the Bayesian model.

``group_tests`` runs one-way ANOVA (F), Kruskal-Wallis (H, on ranks, for outcomes that
are not normal) and, for a binary outcome, Pearson's chi-square test of the groups x
(success, failure) table (scipy's, with Yates' continuity correction when the table is
2 x 2). They test "all groups equal"; the Bayesian model says by how much and how sure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def group_tests(samples: Sequence, *, binary: bool = False) -> dict:
    """Tests of equal groups, JSON-ready: ``anova`` (F, p), ``kruskal_wallis`` (H, p) and,
    with ``binary`` 0/1 outcomes, ``chi2`` (statistic, dof, p).

    Raises:
        ValueError: fewer than two groups, an empty group, or a binary sample with values
            other than 0 and 1.
    """
    values = [np.asarray(s, dtype=float).ravel() for s in samples]
    if len(values) < 2:
        raise ValueError(f"the tests compare groups: got {len(values)} group(s), need at least 2")
    empty = [i for i, v in enumerate(values) if v.size == 0]
    if empty:
        raise ValueError(f"group {empty[0]} has no values")
    out = {}
    if binary:
        if any(not np.isin(v, (0.0, 1.0)).all() for v in values):
            raise ValueError("a binary outcome takes the values 0 and 1 only")
        table = np.array([[v.sum(), v.size - v.sum()] for v in values])
        if (table.sum(axis=0) == 0).any():  # every outcome the same: no evidence either way
            out["chi2"] = {"statistic": 0.0, "dof": len(values) - 1, "p_value": 1.0, "note": "every outcome the same"}
        else:
            chi2, p, dof, _ = stats.chi2_contingency(table)
            out["chi2"] = {"statistic": float(chi2), "dof": int(dof), "p_value": float(p)}
    if np.ptp(np.concatenate(values)) == 0.0:  # F and H are 0/0: the groups are identical
        out["anova"] = {"F": 0.0, "p_value": 1.0, "note": "every value the same"}
        out["kruskal_wallis"] = {"H": 0.0, "p_value": 1.0, "note": "every value the same"}
        return out
    f, p = stats.f_oneway(*values)
    h, pk = stats.kruskal(*values)
    out["anova"] = {"F": float(f), "p_value": float(p)}
    out["kruskal_wallis"] = {"H": float(h), "p_value": float(pk)}
    return out
