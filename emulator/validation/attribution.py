"""Which observables give the generator away: a classifier AUC per observable, at given conditions.

The separation power compares one observable's distributions pooled over all conditions, and the
high-level classifier sees every observable at once. Neither says where a model is wrong when
each observable's pooled distribution is close but the classifier still wins: the dependence on
the condition may be off (calo: lit-cell counts too low at low energy and too high at high energy
average out), or only the combination of observables. Here a gradient-boosted tree classifier
(scikit-learn's ``HistGradientBoostingClassifier``: fast on a few tabular features, no tuning)
sees the condition features plus one observable at a time; its AUC on a held-out half says how
well that observable, at a fixed condition, tells generated from reference (0.5: not at all).
An observable whose AUC is near the full high-level AUC is where the model fails; if every one
is far below it, the failure is in the correlations between observables.

A diagnostic for the report: no threshold reads it.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

__all__ = ["per_observable_auc"]


def per_observable_auc(
    generated: np.ndarray,
    reference: np.ndarray,
    n_conditions: int,
    names: list[str],
    max_per_class: int = 100_000,
    seed: int = 0,
) -> dict[str, float]:
    """AUC of [conditions, observable j] per observable; the two halves of each class train and test.

    Args:
        generated, reference: (N, n_conditions + F) high-level matrices, condition columns first
            (``features.high_level_matrix``).
        n_conditions: number of leading condition columns.
        names: the F observable names, in column order.
        max_per_class: each class is subsampled to at most this many rows (equal numbers).
        seed: subsampling, the split and the trees.

    Returns:
        ``{name: auc}`` in the order of ``names``.
    """
    if generated.shape[1] != n_conditions + len(names) or reference.shape[1] != generated.shape[1]:
        raise ValueError(
            f"expected {n_conditions} condition columns plus {len(names)} observables, got "
            f"{generated.shape[1]} (generated) and {reference.shape[1]} (reference) columns"
        )
    rng = np.random.default_rng(seed)
    n = min(len(generated), len(reference), max_per_class)
    if n < 50:  # as the classifier test
        raise ValueError(f"per-observable AUCs need at least 50 samples per class, got {n}")
    x = np.concatenate([generated[rng.permutation(len(generated))[:n]], reference[rng.permutation(len(reference))[:n]]])
    y = np.r_[np.zeros(n), np.ones(n)]
    order = rng.permutation(2 * n)
    x_train, y_train, x_test, y_test = x[order[:n]], y[order[:n]], x[order[n:]], y[order[n:]]
    conditions = list(range(n_conditions))
    aucs = {}
    # one OpenMP thread: on a few columns more threads barely help, and beside another busy process
    # (a training run on the 2-core machine) two threads took 164 s for the 21 calo observables at
    # 15k showers per class, one thread 3 s
    with threadpool_limits(1):
        for j, name in enumerate(names):
            cols = [*conditions, n_conditions + j]
            model = HistGradientBoostingClassifier(max_iter=200, random_state=seed)
            model.fit(x_train[:, cols], y_train)
            aucs[name] = float(roc_auc_score(y_test, model.predict_proba(x_test[:, cols])[:, 1]))
    return aucs
