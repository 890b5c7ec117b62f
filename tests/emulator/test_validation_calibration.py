"""Calibration of the validator on the reference simulator: no false alarms, no missed distortions.

Two e+ samples from ``physics_data.calo.simulate`` (uniform 1-100 GeV, different seeds) must
pass with classifier AUCs within 0.5 +- 0.03 and every W1 consistent with zero; each
distortion of ``emulator.validation.distortions`` applied to one of them must fail, and
fail the check that is meant to catch it (with the response checks staying quiet where the
distortion leaves the response alone, so the checks are specific, not just noisy).

Statistical settings are reduced from the report defaults for CI speed (fewer FPD/KPD
batches, 10 classifier epochs); metric definitions and thresholds are the shipped ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emulator.validation import ClassifierConfig, ValidationConfig, validate
from emulator.validation.calo_inputs import calo_spec, showers_to_sampleset
from emulator.validation.distortions import DISTORTIONS
from physics_data.calo.simulate import simulate

N_SHOWERS = 15_000  # per sample: 1,500 per energy bin, validation-split AUC error ~0.0075
FAST = ValidationConfig(
    seed=0,
    fpd_num_batches=5,
    kpd_batch_size=5000,
    kpd_num_batches=5,
    emd_repeats=2,
    classifier=ClassifierConfig(epochs=10),
)

# the distortions are caught by the per-bin and per-observable checks; the classifier, FPD/KPD
# and distances only need to run (passed needs the AUC), so they run with fewer draws here
DISTORTION_CONFIG = dataclasses.replace(
    FAST,
    classifier_low_level=False,
    classifier_per_observable=False,
    classifier=ClassifierConfig(epochs=5),
    fpd_num_batches=3,
    kpd_num_batches=3,
    kpd_batch_size=3000,
    emd_repeats=1,
    sliced_null_draws=1,
    w1_null_draws=10,
)


@pytest.fixture(scope="module")
def samples():
    first = simulate("e+", N_SHOWERS, "1:100", seed=101)
    second = simulate("e+", N_SHOWERS, "1:100", seed=202)
    return first, showers_to_sampleset(second)


def _max_pull(stat: dict) -> float:
    """Largest |gen - ref| / error of a binned statistic over its bins with >= 0.05 reference entries per sample."""
    filled = np.asarray(stat["mean_ref"]) > 0.05
    return float((np.abs(np.asarray(stat["dev"])[filled]) / np.asarray(stat["dev_err"])[filled]).max())


def _check(metrics: dict, name: str) -> dict:
    return next(c for c in metrics["checks"] if c["name"] == name)


def test_reference_vs_reference_passes(samples):
    first, reference = samples
    m = validate(showers_to_sampleset(first), reference, calo_spec("e+"), config=FAST)
    failing = [(c["name"], c["value"], c["where"]) for c in m["checks"] if not c["passed"]]
    assert m["passed"], failing
    assert m["auc_high_level"] == pytest.approx(0.5, abs=0.03)
    assert m["auc_low_level"] == pytest.approx(0.5, abs=0.03)
    for name, obs in m["observables"].items():
        assert obs["w1"] < 4 * obs["w1_err"], name
        assert obs["separation_power"] < 0.02, name
        assert obs["auc_given_conditions"] == pytest.approx(0.5, abs=0.03), name
    swd = m["distances"]["sliced_wasserstein"]
    assert swd["value"] < 4 * swd["err"]
    assert set(m["statistics"]) == {f"cell_spectrum_{d}" for d in range(3)}
    for name, stat in m["statistics"].items():  # every well-filled bin agrees within its error
        assert (np.asarray(stat["mean_ref"]) > 0.05).sum() >= 8 and _max_pull(stat) < 5, (name, _max_pull(stat))
    assert abs(m["fpd"]) < 0.01 and abs(m["kpd"]) < 4 * m["kpd_err"] + 1e-4


@pytest.mark.parametrize("name", list(DISTORTIONS))
def test_distortion_is_flagged_by_the_right_check(samples, name):
    first, reference = samples
    distorted = DISTORTIONS[name](first)
    config = DISTORTION_CONFIG
    m = validate(showers_to_sampleset(distorted), reference, calo_spec("e+"), config=config)
    assert not m["passed"]
    response_mean = _check(m, "response_mean")
    spread = _check(m, "response_rel_spread")
    means = _check(m, "observable_means")
    if name == "scale_0.98":
        # a 2 % energy scale shows in the mean response of (nearly) every energy bin
        assert not response_mean["passed"] and len(response_mean["failing"]) >= 8
        assert response_mean["value"] == pytest.approx(0.02, abs=0.003)
    elif name == "layer0_to_layer1_10pct":
        # the response is untouched; layer-0 energy and fraction are 10 % low in every bin
        assert response_mean["passed"] and spread["passed"]
        assert not means["passed"]
        failing_obs = {f.split(",")[0] for f in means["failing"]}
        assert {"E_0", "f_0"} <= failing_obs
        assert sum(f.startswith("f_0,") for f in means["failing"]) >= 8
    elif name == "narrower_10pct":
        assert response_mean["passed"] and spread["passed"]
        assert not means["passed"]
        assert any(f.startswith("sigma_") for f in means["failing"])
        assert m["observables"]["sigma_1"]["w1"] > 10 * m["observables"]["sigma_1"]["w1_err"]
    elif name == "shuffled_conditions_5pct":
        # 5 % of showers with a wrong energy: the response spread explodes in every bin
        assert not spread["passed"] and len(spread["failing"]) == 10
    else:  # pragma: no cover - a new distortion needs its expectation here
        pytest.fail(f"no expectation for distortion {name}")
    assert np.isfinite(m["fpd"]) and m["fpd"] > 0


def test_cell_spectrum_sees_smeared_quanta_of_layer_0(samples):
    """Cell energies of layer 0 smeared by 30 % (layer sums kept): its spectrum differs, layer 1's does not."""
    first, reference = samples
    rng = np.random.default_rng(0)
    cells = first.cells.copy()
    l0 = cells[:, :288]
    smeared = l0 * rng.lognormal(0.0, 0.3, l0.shape)
    smeared *= l0.sum(axis=1, keepdims=True) / np.maximum(smeared.sum(axis=1, keepdims=True), 1e-12)
    cells[:, :288] = smeared.astype(cells.dtype)
    distorted = dataclasses.replace(first, cells=cells)
    config = dataclasses.replace(DISTORTION_CONFIG, classifier_high_level=False)
    stats = validate(showers_to_sampleset(distorted), reference, calo_spec("e+"), config=config)["statistics"]
    assert _max_pull(stats["cell_spectrum_0"]) > 10
    assert _max_pull(stats["cell_spectrum_1"]) < 5
