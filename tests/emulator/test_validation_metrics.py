"""Unit tests of the validation metrics on cases with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emulator.validation.classifier import ClassifierConfig, classifier_auc, hanley_mcneil_error
from emulator.validation.conditioning import bin_moments, conditioning_table
from emulator.validation.distances import exact_emd, observable_w1, sliced_wasserstein
from emulator.validation.fpd_kpd import fpd, frechet_distance, kpd, mmd_poly_unbiased
from emulator.validation.report import to_json
from emulator.validation.samples import SampleSet, ValidationSpec
from emulator.validation.separation import reference_edges, separation_power, separation_power_with_floor
from emulator.validation.thresholds import THRESHOLDS_DIR, _per_bin_check, load_thresholds


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# --- W1 -------------------------------------------------------------------------------------


def test_w1_identical_samples_is_zero(rng):
    x = rng.normal(size=(5000, 3))
    out = observable_w1(x, x.copy(), n_null=5)
    np.testing.assert_allclose(out["w1"], 0.0, atol=1e-12)


@pytest.mark.parametrize(("shift", "sigma"), [(0.3, 1.0), (1.0, 2.5)])
def test_w1_of_shifted_gaussians_is_shift_over_sigma(rng, shift, sigma):
    ref = rng.normal(0.0, sigma, size=(50_000, 1))
    gen = rng.normal(shift, sigma, size=(50_000, 1))
    out = observable_w1(gen, ref, n_null=10)
    assert out["w1"][0] == pytest.approx(shift / sigma, abs=0.02)
    assert out["w1"][0] > 5 * out["w1_err"][0]  # far outside the statistical noise
    assert out["w1_p_value"][0] == pytest.approx(1 / 11)


def test_w1_same_distribution_is_consistent_with_zero(rng):
    out = observable_w1(rng.exponential(size=(20_000, 4)), rng.exponential(size=(20_000, 4)), n_null=20)
    assert np.all(out["w1"] < 4 * out["w1_err"])
    assert np.all(out["w1_err"] > 0)


def test_sliced_and_exact_emd_see_a_shift(rng):
    ref = rng.normal(size=(4000, 10)).astype(np.float32)
    same = rng.normal(size=(4000, 10)).astype(np.float32)
    shifted = same + np.float32(0.5)
    s_same = sliced_wasserstein(same, ref, n_projections=64, n_null=3)
    s_shift = sliced_wasserstein(shifted, ref, n_projections=64, n_null=3)
    assert s_same["value"] < 4 * s_same["err"]
    assert s_shift["value"] > 5 * s_shift["err"]
    e_same = exact_emd(same, ref, n_sub=500, repeats=2)
    e_shift = exact_emd(shifted, ref, n_sub=500, repeats=2)
    assert e_same["emd"] == pytest.approx(e_same["emd_ref_ref"], rel=0.1)
    assert e_shift["emd"] > 1.2 * e_shift["emd_ref_ref"]


# --- separation power ---------------------------------------------------------------------


def test_separation_identical_is_zero_and_disjoint_is_one(rng):
    ref = rng.normal(size=10_000)
    edges = reference_edges(ref, 30)
    assert separation_power(ref, ref, edges) == pytest.approx(0.0, abs=1e-15)
    assert separation_power(ref + 100.0, ref, edges) == pytest.approx(1.0)
    assert separation_power(ref - 100.0, ref, edges) == pytest.approx(1.0)


def test_separation_of_half_overlapping_uniforms_is_one_half(rng):
    # U(0,1) vs U(0.5,1.5): S = 1/2 [int_0^0.5 1 + int_1^1.5 1] = 0.5, also on reference-quantile bins
    ref = rng.uniform(0.0, 1.0, 200_000)
    gen = rng.uniform(0.5, 1.5, 200_000)
    assert separation_power(gen, ref, reference_edges(ref, 30)) == pytest.approx(0.5, abs=0.01)


def test_separation_floor_and_discrete_observables(rng):
    ref = rng.integers(0, 3, 20_000).astype(float)  # a discrete observable: 3 values
    out = separation_power_with_floor(rng.integers(0, 3, 20_000).astype(float), ref, n_bins=30)
    assert out["n_bins"] <= 5  # merged quantile edges plus under/overflow
    assert out["separation_power"] < 0.001
    assert out["separation_power_ref_halves"] < 0.001


# --- FPD / KPD ----------------------------------------------------------------------------


def test_frechet_distance_analytic(rng):
    x = rng.normal(size=(200_000, 3))
    assert frechet_distance(x, x + np.array([1.0, 2.0, 2.0])) == pytest.approx(9.0, rel=1e-3)
    # N(0, 1) vs N(0, 4) per dimension: (1 - 2)^2 = 1 each
    assert frechet_distance(x, 2.0 * rng.normal(size=(200_000, 3))) == pytest.approx(3.0, rel=0.02)


def test_fpd_extrapolates_to_the_analytic_value(rng):
    x = rng.normal(size=(40_000, 2))
    y = rng.normal(size=(40_000, 2)) + np.array([0.3, 0.4])
    val, err = fpd(x, y, min_samples=5000, max_samples=20_000, num_batches=5, normalise=False)
    assert val == pytest.approx(0.25, abs=0.02)
    same, _ = fpd(x, rng.normal(size=(40_000, 2)), min_samples=5000, max_samples=20_000, num_batches=5)
    assert same < 1e-3
    assert err > 0


def test_mmd_matches_the_dense_formula(rng):
    x, y = rng.normal(size=(700, 4)), rng.normal(size=(500, 4)) + 0.2

    def dense(a, b):
        d = a.shape[1]
        kxx, kyy, kxy = ((a @ a.T / d + 1) ** 4), ((b @ b.T / d + 1) ** 4), ((a @ b.T / d + 1) ** 4)
        m, n = len(a), len(b)
        return (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean()
        )

    assert mmd_poly_unbiased(x, y, block=128, dtype=np.float64) == pytest.approx(dense(x, y), rel=1e-10)
    assert mmd_poly_unbiased(x, y, block=128) == pytest.approx(dense(x, y), rel=1e-4)


def test_kpd_analytic_moment_formula(rng):
    # d = 1, kernel (xy + 1)^4 = sum_k C(4,k) (xy)^k, so MMD^2 = sum_k C(4,k) (m_k(X) - m_k(Y))^2 with
    # raw moments m_k; for N(0,1) vs N(0.5,1) that is 4*0.25 + 6*0.0625 + 4*1.625^2 + 1.5625^2 = 14.379
    x = rng.normal(size=(40_000, 1))
    y = rng.normal(0.5, 1.0, size=(40_000, 1))
    val, err = kpd(x, y, batch_size=5000, normalise=False)
    assert val == pytest.approx(14.379, abs=max(3 * err, 0.5))
    same, same_err = kpd(x, rng.normal(size=(40_000, 1)), batch_size=5000, normalise=False)
    assert abs(same) < 3 * same_err + 0.05


# --- classifier ---------------------------------------------------------------------------


def test_classifier_auc_identical_and_separable(rng):
    cfg = ClassifierConfig(hidden=64, epochs=8, batch_size=200, seed=3)
    same = classifier_auc(rng.normal(size=(4000, 5)), rng.normal(size=(4000, 5)), cfg)
    assert abs(same["auc"] - 0.5) < 4 * same["auc_err"] + 0.01
    # a 1-sigma shift in one feature: the best possible AUC is Phi(1 / sqrt 2) = 0.760
    sep = classifier_auc(
        rng.normal(size=(4000, 5)) + np.array([1.0, 0, 0, 0, 0]), rng.normal(size=(4000, 5)), cfg
    )
    assert sep["auc"] == pytest.approx(0.760, abs=4 * sep["auc_err"] + 0.01)
    assert sep["n_per_class"] == {"train": 2400, "test": 800, "validation": 800}
    assert 1 <= sep["best_epoch"] <= 8


def test_classifier_is_seeded(rng):
    a, b = rng.normal(size=(1000, 3)), rng.normal(size=(1000, 3)) + 0.3
    cfg = ClassifierConfig(hidden=32, epochs=2, seed=7)
    assert classifier_auc(a, b, cfg)["auc"] == classifier_auc(a, b, cfg)["auc"]


def test_hanley_mcneil_error_shrinks_with_samples():
    assert hanley_mcneil_error(0.7, 1000, 1000) > hanley_mcneil_error(0.7, 10_000, 10_000)


# --- conditioning -------------------------------------------------------------------------


def test_bin_moments_errors(rng):
    x = rng.normal(10.0, 2.0, 40_000)
    m = bin_moments(x)
    assert m["mean"] == pytest.approx(10.0, abs=4 * 2.0 / 200)
    assert m["mean_err"] == pytest.approx(2.0 / 200, rel=0.02)
    assert m["std_err"] == pytest.approx(2.0 / np.sqrt(2 * 40_000), rel=0.05)  # Gaussian: sigma / sqrt(2n)
    assert m["rel_spread"] == pytest.approx(0.2, rel=0.02)


def test_robust_spread_ignores_a_single_outlier_that_moves_the_std(rng):
    x = rng.normal(1.0, 0.003, 10_000)
    assert bin_moments(x)["rel_spread_robust"] == pytest.approx(0.003, rel=0.03)  # IQR / 1.349 = sigma
    x[0] = 0.79  # one shower that lost a fifth of its energy, as in the gamma reference at 90-100 GeV
    m = bin_moments(x)
    assert m["rel_spread"] > 1.2 * 0.003
    assert m["rel_spread_robust"] == pytest.approx(0.003, rel=0.03)


def _toy_set(rng, n, scale=1.0):
    e = rng.uniform(1.0, 100.0, n)
    resp = rng.normal(1.0, 0.05, n) * scale
    return SampleSet(e[:, None], np.stack([resp, e], 1), {"response": resp, "x": rng.normal(5.0, 1.0, n)})


def test_conditioning_table_sees_a_scale_in_every_bin(rng):
    spec = ValidationSpec("toy", ("energy",), ("GeV",), (1.0, 100.0), response="response")
    table = conditioning_table(_toy_set(rng, 50_000, 0.98), _toy_set(rng, 50_000), spec)
    dev = np.array(table["observables"]["response"]["mean_dev"])
    err = np.array(table["observables"]["response"]["mean_dev_err"])
    assert np.all(np.abs(dev + 0.02) < 5 * err)
    assert sum(table["n_reference"]) == 50_000
    assert abs(np.array(table["observables"]["x"]["mean_dev"])).max() < 0.01
    robust = np.array(table["observables"]["response"]["rel_spread_robust_dev"])  # same width, so ~0
    assert np.abs(robust).max() < 0.06


# --- thresholds ---------------------------------------------------------------------------


def test_shipped_thresholds_are_the_issue_4_numbers():
    default = load_thresholds()
    assert default.checks["auc_high_level_max"] == 0.70
    assert default.checks["response_mean_rel_tol"] == 0.01
    assert default.checks["response_rel_spread_rel_tol"] == 0.05
    assert default.checks["separation_power_max"] == 0.1
    assert load_thresholds("calo_piplus").checks["auc_high_level_max"] == 0.80
    assert default.path == "emulator/validation/thresholds/calo_default.json"  # no machine path in reports


def test_custom_thresholds_file_is_recorded_by_its_own_path(tmp_path):
    custom = tmp_path / "strict.json"
    custom.write_text(json.dumps({"checks": {"auc_high_level_max": 0.6}}))
    thr = load_thresholds(custom)
    assert thr.path == str(custom)
    assert thr.name == "strict" and thr.checks["auc_high_level_max"] == 0.6


def test_thresholds_reject_unknown_keys_and_missing_files(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"checks": {"auc_max": 0.7}}))
    with pytest.raises(ValueError, match="unknown check"):
        load_thresholds(bad)
    with pytest.raises(FileNotFoundError, match="calo_default"):
        load_thresholds(tmp_path / "nope.json")
    assert {p.stem for p in THRESHOLDS_DIR.glob("*.json")} >= {"calo_default", "calo_piplus"}


def test_per_bin_check_needs_relevant_and_significant_deviations():
    labels = ["a", "b", "c"]
    n = [100, 100, 100]
    # 2 % deviations: significant at 3 sigma only where the error is small
    res = _per_bin_check("x", "", [0.02, 0.02, 0.005], [0.001, 0.01, 0.0001], 0.01, 3.0, labels, n, n)
    assert res["failing"] == ["a"]
    assert not res["passed"]
    assert not res["resolved"]  # bin b: 3 * 0.01 > tolerance
    # with a spread tolerance a bin fails only if the shift is also > std_tol reference spreads
    res = _per_bin_check("x", "", [0.02, 0.02, 0.005], [0.001, 0.001, 0.0001], 0.01, 3.0, labels, n, n,
                         std_shift=[0.05, 0.5, 0.5], std_tol=0.1)  # fmt: skip
    assert res["failing"] == ["b"] and res["failing_index"] == [1]
    empty = _per_bin_check(
        "x", "", [float("nan")] * 3, [float("nan")] * 3, 0.01, 3.0, labels, [0, 0, 50], [0, 0, 50]
    )
    assert empty["skipped"] == ["a", "b"] and empty["failing"] == ["c"]


def test_to_json_makes_strict_json():
    out = to_json({"a": np.float32(1.5), "b": [float("nan"), np.inf], "c": np.arange(2)})
    assert json.loads(json.dumps(out, allow_nan=False)) == {"a": 1.5, "b": [None, None], "c": [0, 1]}
