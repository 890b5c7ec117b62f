"""The per-observable AUC at given conditions finds a wrong condition dependence that pooled distributions hide."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.validation.attribution import per_observable_auc
from emulator.validation.separation import separation_power_with_floor


def _samples(n: int, flip: bool, rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(0, 1, n)
    a = (1 - c if flip else c) + rng.normal(0, 0.05, n)  # same pooled distribution either way
    b = rng.normal(0, 1, n)
    return np.column_stack([c, a, b])


def test_a_flipped_condition_dependence_is_found_while_the_pooled_distributions_agree():
    rng = np.random.default_rng(0)
    gen, ref = _samples(4000, True, rng), _samples(4000, False, rng)
    pooled = separation_power_with_floor(gen[:, 1], ref[:, 1], 30, seed=0)
    assert pooled["separation_power"] < 0.02  # the pooled view sees nothing
    aucs = per_observable_auc(gen, ref, 1, ["a", "b"], seed=0)
    assert list(aucs) == ["a", "b"]
    assert aucs["a"] > 0.9
    assert aucs["b"] == pytest.approx(0.5, abs=0.04)


def test_bad_input_is_an_error_that_says_what_is_wrong():
    x = np.zeros((200, 3))
    with pytest.raises(ValueError, match="1 condition columns plus 3 observables"):
        per_observable_auc(x, x, 1, ["a", "b", "c"])
    with pytest.raises(ValueError, match="at least 50 samples per class, got 40"):
        per_observable_auc(x[:40], x, 1, ["a", "b"])
