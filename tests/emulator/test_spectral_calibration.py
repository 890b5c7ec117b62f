"""The spectral stage of the output calibration (emulator.spectral_calibration): shells, gains, fit, storage, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emulator.calibration import CALIBRATION_FILE, MarginalCalibration, calibrate_samples, condition_terms
from emulator.domains import get_domain
from emulator.sampler import Sampler
from emulator.spectral_calibration import SpectralCalibration, band_index, band_power, fit_gain_update
from emulator.testing import make_tiny_model
from physics_data.cosmo.observables import default_k_edges
from pipelines.cli import main

N = 64


def _gaussian_fields(n: int, seed: int, amplitude: np.ndarray | None = None) -> np.ndarray:
    """Lognormal 1+δ maps (n, N, N) from white noise whose band b is scaled by ``amplitude[:, b]``."""
    g = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, N, N)))
    modes = torch.fft.rfft2(g)
    if amplitude is not None:
        bands = band_index((N, N))
        per_mode = torch.where(bands >= 0, torch.as_tensor(amplitude)[:, bands.clamp_min(0)], 1.0)
        modes = modes * per_mode
    return np.exp(0.3 * torch.fft.irfft2(modes, s=(N, N)).numpy())


def test_shells_are_the_validators_power_spectrum_bins():
    """Band b - 1 holds exactly the modes that power_spectrum_2d's default bin b - 1 averages."""
    k_f = 2 * np.pi / 256.0
    kx, ky = np.meshgrid(np.fft.fftfreq(N, 1 / N) * k_f, np.fft.rfftfreq(N, 1 / N) * k_f, indexing="ij")
    k = np.hypot(kx, ky)
    theirs = np.digitize(k, default_k_edges(N, 256.0)) - 1
    theirs = np.where((theirs >= 0) & (theirs < N // 2) & (k > 0), theirs, -1)
    np.testing.assert_array_equal(band_index((N, N)).numpy(), theirs)
    with pytest.raises(ValueError, match="square"):
        band_index((64, 32))


def test_a_band_scaled_by_a_shows_a_squared_in_its_power_only():
    amplitude = np.ones((4, N // 2))
    amplitude[:, 5] = 1.5
    base, scaled = (np.log(_gaussian_fields(4, 1, a)) + 10.0 for a in (None, amplitude))
    ratio = band_power(scaled, 2) / band_power(base, 2)  # the mean (10) is the same, so δ_k scales exactly
    np.testing.assert_allclose(ratio[:, 5], 2.25, rtol=1e-9)
    np.testing.assert_allclose(np.delete(ratio, 5, axis=1), 1.0, rtol=1e-9)


def _gain(coef_band5: list[float], degree: int = 1) -> SpectralCalibration:
    n_terms = condition_terms(np.zeros((1, 2)), degree).shape[1]
    coef = torch.zeros(n_terms, N // 2, dtype=torch.float64)
    coef[: len(coef_band5), 5] = torch.tensor(coef_band5)
    return SpectralCalibration(coef, degree, 10.0**-2.6)


def test_zero_gain_is_the_identity_and_a_gain_moves_one_shell_of_log_density():
    fields = torch.from_numpy(_gaussian_fields(3, 2)).float()
    features = torch.full((3, 2), 0.5, dtype=torch.float64)
    same = _gain([0.0]).apply(fields, features)
    torch.testing.assert_close(same, fields, rtol=1e-4, atol=1e-5)
    boosted = _gain([np.log(1.2)]).apply(fields, features)
    assert boosted.dtype == fields.dtype and (boosted >= 0).all()
    y0, y1 = (np.log10(f.double().numpy() + 10.0**-2.6) for f in (fields, boosted))
    ratio = band_power(y1 + 10.0, 2) / band_power(y0 + 10.0, 2)
    np.testing.assert_allclose(ratio[:, 5], 1.44, rtol=1e-3)
    np.testing.assert_allclose(np.delete(ratio, 5, axis=1), 1.0, rtol=1e-3)


def test_gains_follow_the_condition_features():
    gain = _gain([0.0, 0.2, -0.1])  # log gain of shell 6 = 0.2 u_1 - 0.1 u_2, u = 2 f - 1
    features = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0]], dtype=torch.float64)
    np.testing.assert_allclose(gain.log_gains(features)[:, 5].numpy(), [-0.1, 0.3, -0.1])


def test_fit_recovers_a_condition_dependent_excess_of_power():
    """A 'generator' whose shell 6 has (1 + 0.3 c)^2 times the training power: the fitted log ratio is 2 ln(1 + 0.3 c)."""
    points = np.stack([np.linspace(0.0, 1.0, 11), np.full(11, 0.5)], axis=1)
    reference = np.stack([band_power(np.log(_gaussian_fields(128, 100 + i)) + 10.0, 2).mean(0) for i in range(11)])

    def generate(cond: np.ndarray, seed: int) -> np.ndarray:
        amplitude = np.ones((len(cond), N // 2))
        amplitude[:, 5] = 1.0 + 0.3 * cond[:, 0]
        return np.log(_gaussian_fields(len(cond), seed, amplitude)) + 10.0

    coef = fit_gain_update(generate, points, reference, points, degree=2, per_point=128, seed=7)
    fitted = condition_terms(points, 2).numpy() @ coef
    np.testing.assert_allclose(fitted[:, 5], 2 * np.log(1 + 0.3 * points[:, 0]), atol=0.04)
    assert np.abs(np.delete(fitted, 5, axis=1)).max() < 0.1


def test_stored_with_the_quantile_map_and_applied_before_it(tmp_path: Path):
    t = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    identity = torch.stack([torch.linspace(-8.0, 8.0, 7, dtype=torch.float64)])
    calib = MarginalCalibration(t, t, identity, identity, 0, 1e-3, spectral=_gain([0.3, 0.1]))
    calib.save(tmp_path / "c.safetensors")
    loaded = MarginalCalibration.load(tmp_path / "c.safetensors")
    assert loaded.spectral is not None and loaded.spectral.degree == 1
    torch.testing.assert_close(loaded.spectral.coef, calib.spectral.coef)
    calib.spectral = None
    calib.save(tmp_path / "plain.safetensors")
    assert MarginalCalibration.load(tmp_path / "plain.safetensors").spectral is None

    domain = get_domain("cosmo")
    fields = torch.from_numpy(_gaussian_fields(2, 3)).float()
    cond = torch.tensor([[0.3, 0.8], [0.2, 1.1]], dtype=torch.float64)
    features = domain.condition_features(cond)
    both = calibrate_samples(domain, loaded, fields, cond, features)
    expected = calibrate_samples(domain, calib, loaded.spectral.apply(fields, features), cond, features)
    torch.testing.assert_close(both, expected)


def test_calibrate_cli_fits_the_spectral_stage_for_cosmo(tmp_path: Path, capsys):
    data = tmp_path / "sims.h5"
    assert main([
        "simulate", "cosmo", "--n-sims", "8", "--particles", "32", "--steps", "2", "--grid", "64",
        "--omega-m", "0.101:0.487", "--sigma8", "0.487:1.331", "--linear-power", "eh", "--device", "cpu",
        "--seed", "0", "--out", str(data), "--quiet",
    ]) == 0  # fmt: skip
    model = make_tiny_model(tmp_path / "cosmo-tiny", domain="cosmo")
    args = ["calibrate", str(model), "--data", str(data), "--degree", "1", "--per-point", "2", "--device", "cpu", "--quiet"]
    assert main([*args, "--spectral-iterations", "1", "--spectral-degree", "1", "--spectral-offset", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "round 0" in out and "round 1" in out
    calibration = json.loads((model / "card.json").read_text())["calibration"]
    spectral = Sampler.from_dir(model, device="cpu").calibration.spectral
    # an untrained generator is far off, where one update may not help: it is kept only if it did
    if "spectral" in calibration:
        info = calibration["spectral"]
        assert info["updates"] == 1 and info["degree"] == 1 and info["offset"] == 0.01 and spectral.offset == 0.01
        assert info["rms_log_power_ratio_per_round"][1] < info["rms_log_power_ratio_per_round"][0]
    else:
        assert spectral is None and "none kept" in out

    with pytest.raises(SystemExit) as exc:
        main([*args, "--spectral-degree", "1", "--spectral-offset", "0"])
    assert exc.value.code == 2 and "--spectral-offset > 0" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        main([*args, "--spectral-degree", "3"])  # 10 terms per shell from 8 points
    assert exc.value.code == 2 and "--spectral-degree 3" in capsys.readouterr().err
    assert main([*args, "--spectral-iterations", "0"]) == 0
    assert Sampler.from_dir(model, device="cpu").calibration.spectral is None
    assert "spectral" not in json.loads((model / "card.json").read_text())["calibration"]
    assert (model / CALIBRATION_FILE).exists()


@pytest.mark.parametrize(("rounds", "kept"), [([0.3, 0.1, 0.05], 2), ([0.3, 0.1, 0.2], 1), ([0.3, 0.4, 0.5], 0)])
def test_the_round_that_measured_best_is_kept(tmp_path: Path, capsys, monkeypatch, rounds, kept):
    """The worst shell's rms per round is what the fake measurement says; the calibration of the best round is written."""
    import emulator.spectral_calibration as spectral_module

    measured = iter(rounds)

    def fake_update(generate, points, reference, features, *, degree, **_):
        coef = np.zeros((condition_terms(np.zeros((1, 2)), degree).shape[1], reference.shape[1]))
        coef[0] = next(measured)  # the constant term: the fitted log ratio is this at every point
        return coef

    monkeypatch.setattr(spectral_module, "fit_gain_update", fake_update)
    data = tmp_path / "sims.h5"
    assert main([
        "simulate", "cosmo", "--n-sims", "8", "--particles", "32", "--steps", "2", "--grid", "64",
        "--linear-power", "eh", "--device", "cpu", "--seed", "1", "--out", str(data), "--quiet",
    ]) == 0  # fmt: skip
    model = make_tiny_model(tmp_path / "cosmo-tiny", domain="cosmo")
    assert main(["calibrate", str(model), "--data", str(data), "--degree", "1", "--per-point", "2", "--device", "cpu",
                 "--quiet", "--spectral-iterations", "2", "--spectral-degree", "1"]) == 0  # fmt: skip
    spectral = Sampler.from_dir(model, device="cpu").calibration.spectral
    if kept == 0:
        assert spectral is None and "none kept" in capsys.readouterr().out
        return
    assert spectral.info["updates"] == kept and spectral.info["rms_log_power_ratio_per_round"] == rounds
    # each update lowers every shell's log gain by half the measured ratio
    np.testing.assert_allclose(spectral.coef[0].numpy(), -0.5 * sum(rounds[:kept]))
