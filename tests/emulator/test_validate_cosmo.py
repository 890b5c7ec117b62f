"""Validation of cosmo slices: binned statistics, their thresholds, the adapter and ``emulator validate``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from emulator.domains import get_domain
from emulator.domains.cosmo import BOX_SIZE
from emulator.testing import load_script, make_tiny_model
from emulator.validation import ValidationConfig, load_thresholds, validate
from emulator.validation.adapters import adapter_for_file, get_adapter, register_adapter
from emulator.validation.binned import compare_binned
from emulator.validation.calo_inputs import calo_spec
from emulator.validation.cosmo_inputs import Slices, compare_maps
from emulator.validation.samples import BinnedStatistic
from emulator.validation.thresholds import statistic_checks
from pipelines.cli import main

K_HALF_NYQUIST = 0.5 * np.pi * 64 / BOX_SIZE


def lognormal_maps(n: int, seed: int, sigma: float = 0.8) -> np.ndarray:
    """(n, 64, 64) lognormal 1+δ maps (mean 1) from a Gaussian field with P(k) ∝ k^-2."""
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(64)[:, None]
    kx = np.fft.rfftfreq(64)[None, :]
    k = np.hypot(ky, kx)
    amp = np.where(k > 0, 1.0 / np.where(k > 0, k, 1.0), 0.0)
    g = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((n, 64, 64))) * amp, s=(64, 64))
    g *= sigma / g.std(axis=(1, 2), keepdims=True)
    return np.exp(g - sigma**2 / 2).astype(np.float32)


@pytest.fixture(scope="module")
def maps() -> np.ndarray:
    return lognormal_maps(320, seed=1)


def write_slices(path: Path, maps: np.ndarray, omega_m: float = 0.3, sigma8: float = 0.8) -> Path:
    cond = np.tile(np.float32([omega_m, sigma8]), (len(maps), 1))
    with get_domain("cosmo").open_writer(path, "cosmo", {"seed": 0}) as w:
        w.append(cond, maps)
    return path


# --- generic binned comparison and its checks ------------------------------------------------


def test_compare_binned_ratio_counts_and_max_scaling():
    stat = BinnedStatistic("s", "s", (1.0, 2.0, 3.0), "x", "y", checked=(True, True, False))
    ref = np.array([[1.0, 2.0, 4.0], [3.0, 2.0, 4.0]])
    gen = np.array([[2.2, 2.0, 0.0], [2.2, 2.0, 0.0]])
    out = compare_binned(stat, gen, ref, reference_counts=ref)
    np.testing.assert_allclose(out["ratio"], [1.1, 1.0, 0.0])
    np.testing.assert_allclose(out["dev"], [0.1, 0.0, -1.0])
    assert out["counts_ref"] == [4.0, 4.0, 8.0] and out["counts_gen"] is None
    by_max = compare_binned(BinnedStatistic("m", "m", (1.0, 2.0, 3.0), "x", "y", relative_to="max"), gen, ref)
    np.testing.assert_allclose(by_max["dev"], [0.05, 0.0, -1.0])  # (gen - ref) / max|ref| = / 4
    # only checked bins with enough reference counts are judged: bin 2 (-100 %) is outside
    checks = statistic_checks("s", out, {"mean_rel_tol": 0.06, "bin_rel_tol": 0.08, "min_ref_counts": 3}, 0.0)
    assert [(c["name"], c["passed"]) for c in checks] == [("s_mean", True), ("s_bins", False)]
    assert checks[1]["where"] == "1" and checks[1]["failing"] == ["1"]
    none = statistic_checks("s", out, {"bin_rel_tol": 0.1, "min_ref_counts": 100}, 0.0)
    assert not none[0]["passed"] and none[0]["where"].startswith("no bin qualifies")


def test_cosmo_thresholds_hold_the_issue_tolerances(tmp_path):
    thr = load_thresholds("cosmo_default")
    assert thr.statistics["power_spectrum"]["mean_rel_tol"] == 0.05
    assert thr.statistics["power_spectrum"]["bin_rel_tol"] == 0.10
    for name in ("pixel_pdf", "peak_counts", "minkowski_v0", "minkowski_v1", "minkowski_v2"):
        assert thr.statistics[name] == {"mean_rel_tol": None, "bin_rel_tol": 0.10, "min_ref_counts": 100}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"checks": {}, "statistics": {"pixel_pdf": {"bin_tol": 0.1}}}))
    with pytest.raises(ValueError, match="unknown key"):
        load_thresholds(bad)


# --- cosmology statistics on synthetic fields ----------------------------------------------


def test_split_reference_passes_and_a_stronger_field_fails_the_power_spectrum(maps):
    ref, gen = maps[:160], maps[160:]
    same = compare_maps(gen, ref, BOX_SIZE)
    by_name = {c["name"]: c for c in same["checks"]}
    assert same["passed"], [c for c in same["checks"] if not c["passed"]]
    assert by_name["power_spectrum_mean"]["value"] < 0.05
    assert {"power_spectrum_bins", "pixel_pdf_bins", "peak_counts_bins", "minkowski_v2_bins"} <= set(by_name)

    stronger = np.clip(1.0 + 1.2 * (gen - 1.0), 0.0, None)  # δ 20 % larger: P(k) about 44 % higher
    bad = {c["name"]: c for c in compare_maps(stronger, ref, BOX_SIZE)["checks"]}
    assert not bad["power_spectrum_mean"]["passed"] and bad["power_spectrum_mean"]["where"] == "k <= k_Ny/2"
    assert bad["power_spectrum_mean"]["value"] > 0.3
    bins = bad["power_spectrum_bins"]
    assert not bins["passed"] and bins["where"].startswith("k = ")
    assert float(bins["where"].split()[2]) <= K_HALF_NYQUIST  # only k <= k_Ny/2 is judged
    assert len(bins["failing"]) >= 10
    assert not bad["pixel_pdf_bins"]["passed"]


def test_core_validate_reports_the_statistics_and_their_checks(maps):
    adapter = get_adapter("cosmo")
    cond = np.tile([0.3, 0.8], (160, 1))
    ref = adapter.to_sampleset(Slices(cond, maps[:160]))
    gen = adapter.to_sampleset(Slices(cond, maps[160:] * np.float32(1.1)))  # 10 % denser everywhere
    config = ValidationConfig(classifier_high_level=False, classifier_low_level=False, emd_subsample=100)
    m = validate(gen, ref, adapter.spec(""), "cosmo_default", config)
    assert set(m["statistics"]) == {"power_spectrum", "pixel_pdf", "peak_counts"} | {
        f"minkowski_v{i}" for i in range(3)
    }
    assert m["thresholds"]["statistics"]["pixel_pdf"]["min_ref_counts"] == 100
    checks = {c["name"]: c for c in m["checks"]}
    assert checks["power_spectrum_mean"]["passed"]  # δ = x/mean - 1 does not see a density scale
    assert not checks["pixel_pdf_bins"]["passed"] and not m["passed"]
    assert m["fpd"] >= 0 and "log_pk_k1_2" in m["observables"]
    with pytest.raises(ValueError, match="does not compute"):  # thresholds made for another domain
        validate(gen, ref, calo_spec(), "cosmo_default", config)


def test_block_errors_of_correlated_groups():
    """Maps of one box share its large scales: a per-sample error would understate the reference's noise."""
    rng = np.random.default_rng(3)
    box_offset = np.repeat(rng.normal(0.0, 1.0, 20), 48)  # 20 boxes x 48 slices, shared offset per box
    ref = (10.0 + box_offset + rng.normal(0.0, 0.1, len(box_offset)))[:, None]
    stat = BinnedStatistic("s", "s", (1.0,), "x", "y")
    naive = compare_binned(stat, ref, ref)["mean_ref_err"][0]
    block = compare_binned(stat, ref, ref, reference_groups=np.repeat(np.arange(20), 48))["mean_ref_err"][0]
    assert naive == pytest.approx(1.0 / np.sqrt(960), rel=0.3)  # pretends 960 independent slices
    assert block == pytest.approx(1.0 / np.sqrt(20), rel=0.35)  # 20 independent boxes
    one_group = compare_binned(stat, ref, ref, reference_groups=np.zeros(960))["mean_ref_err"][0]
    assert one_group == naive  # nothing to estimate a block scatter from


def test_adapter_reads_the_simulation_index_as_groups(tmp_path, maps):
    from physics_data.cosmo.io import write_fields

    path = tmp_path / "ref.h5"
    params = np.tile(np.float32([0.3, 0.8, BOX_SIZE, 0.0]), (12, 1))
    attrs = get_domain("cosmo").file_attrs()
    names = ("omega_m", "sigma8", "box_size", "redshift")
    write_fields(path, maps[:12], params, names, sim_index=np.repeat(np.arange(3), 4), attrs=attrs)
    slices, _ = get_adapter("cosmo").load(path, 10)
    np.testing.assert_array_equal(slices.groups, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    assert get_adapter("cosmo").to_sampleset(slices).groups is slices.groups


# --- adapters and the command ------------------------------------------------------------------


def test_adapters_are_found_by_domain_name_and_by_file(tmp_path, maps):
    path = write_slices(tmp_path / "ref.h5", maps[:8])
    assert adapter_for_file(path).domain == "cosmo"
    assert get_adapter("calo").domain == "calo"
    with pytest.raises(KeyError, match="no validation adapter for domain 'nope'"):
        get_adapter("nope")
    register_adapter("third", get_adapter("cosmo"))  # a new domain registers, nothing else changes
    try:
        assert get_adapter("third") is get_adapter("cosmo")
    finally:
        from emulator.validation import adapters

        adapters._ADAPTERS.pop("third")
    with pytest.raises(ValueError, match="not a sample file of any validated domain"):
        adapter_for_file(tmp_path / "missing.h5")


def test_validate_cosmo_model_end_to_end(tmp_path, maps, capsys):
    ref = write_slices(tmp_path / "ref.h5", maps[:120], omega_m=0.25, sigma8=0.9)
    make_tiny_model(tmp_path / "models" / "cosmo-tiny", domain="cosmo")
    out = tmp_path / "report"
    argv = ["validate", "--model", "cosmo-tiny", "--models-path", str(tmp_path / "models"), "--reference", str(ref),
            "--out", str(out), "--epochs", "2", "--no-classifier-low-level", "--quiet"]  # fmt: skip
    assert main(argv) == 1  # an untrained model fails
    text = capsys.readouterr().out
    assert "FAILED (cosmo_default)" in text and "failed power_spectrum_mean" in text
    m = json.loads((out / "metrics.json").read_text())
    assert {"auc_high_level", "fpd", "kpd", "passed", "observables", "checks", "statistics"} <= set(m)
    assert m["spec"]["domain"] == "cosmo" and m["thresholds"]["name"] == "cosmo_default"
    assert m["samples"]["n_generated"] == m["samples"]["n_reference"] == 120
    assert "model cosmo-tiny" in m["samples"]["sources"]["generated"]
    assert m["conditioning"]["n_generated"] == m["conditioning"]["n_reference"]  # drawn at the reference's Ωm
    pk = m["statistics"]["power_spectrum"]
    assert len(pk["x"]) == 32 and sum(pk["checked"]) == 15
    page = (out / "report.html").read_text()
    assert "Binned statistics" in page and "Example samples" in page and "power_spectrum_bins" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_validate_refuses_a_reference_of_another_domain(tmp_path, maps, capsys):
    ref = write_slices(tmp_path / "ref.h5", maps[:8])
    make_tiny_model(tmp_path / "models" / "calo-tiny")
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--model", "calo-tiny", "--models-path", str(tmp_path / "models"), "--reference",
              str(ref), "--out", str(tmp_path / "r")])  # fmt: skip
    assert exc.value.code == 2
    assert "is not a calo file" in capsys.readouterr().err


def test_heldout_script_is_a_thin_caller(tmp_path, maps):
    ref = write_slices(tmp_path / "ref.h5", maps[:40])
    make_tiny_model(tmp_path / "models" / "cosmo-tiny", domain="cosmo")
    module = load_script("cosmo_heldout_check")
    out = tmp_path / "heldout.json"
    rc = module.main(["--model", "cosmo-tiny", "--models-path", str(tmp_path / "models"), "--reference", str(ref),
                      "--device", "cpu", "--out", str(out)])  # fmt: skip
    summary = json.loads(out.read_text())
    assert rc == 1 and summary["passed"] is False
    point = summary["points"][0]
    assert point["n"] == 40 and point["omega_m"] == pytest.approx(0.3)
    assert {c["name"] for c in point["checks"]} >= {
        "power_spectrum_mean",
        "power_spectrum_bins",
        "pixel_pdf_bins",
    }
    checks = [c for c in point["checks"] if c["value"] is not None]
    assert summary["checks_total"] == len(checks) and summary["checks_passed"] == sum(c["passed"] for c in checks)
    ratio = np.mean([c["value"] / c["threshold"] for c in checks])
    assert summary["mean_value_over_threshold"] == pytest.approx(ratio)
