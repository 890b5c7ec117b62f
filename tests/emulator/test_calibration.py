"""The conditional quantile map (emulator.calibration): fitted, applied, stored, used by the sampler and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emulator.calibration import CALIBRATION_FILE, MarginalCalibration, fit_marginal_calibration
from emulator.conditions import parse_conditions
from emulator.sampler import Sampler
from emulator.testing import make_tiny_model
from pipelines.cli import main


def _features(c: np.ndarray) -> np.ndarray:
    """The first condition, already on [0, 1]; the second is fixed (as box size is for the cosmo domain)."""
    return np.asarray(c, dtype=np.float64)[:, :1]


PER_SAMPLE = 512
Z_EMPTY = -1.7507  # the standard normal's 4 % quantile


def _sigma(c: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * c


EMPTY_REF, EMPTY_GEN = 0.04, 0.01  # fractions of empty (zero) values


def _reference(cond: np.ndarray, seed: int) -> np.ndarray:
    """Lognormal values whose width grows with the condition, the lowest 4 % empty."""
    g = np.random.default_rng(seed).standard_normal((len(cond), PER_SAMPLE))
    return np.where(g < Z_EMPTY, 0.0, np.exp(_sigma(cond[:, :1]) * g))


def _biased_generator(cond: np.ndarray, seed: int) -> np.ndarray:
    """Too narrow and too high, and 1 % empty values, like an imperfect generator."""
    rng = np.random.default_rng(10_000 + seed)
    x = np.exp(0.8 * _sigma(cond[:, :1]) * rng.standard_normal((len(cond), PER_SAMPLE)) + 0.3)
    return np.where(rng.random(x.shape) < EMPTY_GEN, 0.0, x)


@pytest.fixture(scope="module")
def calibration() -> MarginalCalibration:
    points = np.stack([np.linspace(0.0, 1.0, 21), np.full(21, 5.0)], axis=1)
    conditions = np.repeat(points, 8, axis=0)
    samples = np.concatenate([_reference(points[i : i + 1].repeat(8, 0), i) for i in range(len(points))])
    return fit_marginal_calibration(_biased_generator, conditions, samples, _features, degree=3, per_point=8)


LEVELS = np.array([0.06, 0.1, 0.5, 0.9, 0.99])
Z_LEVELS = np.array([-1.5548, -1.2816, 0.0, 1.2816, 2.326])  # their standard normal quantiles


def _log_quantiles(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.quantile(values, LEVELS), 1e-300))


def test_calibration_maps_generated_values_onto_the_reference_distribution(calibration):
    cond = np.tile([0.37, 5.0], (64, 1))  # between the training points
    raw = _biased_generator(cond, 99)
    fixed = calibration.apply(torch.from_numpy(raw), torch.from_numpy(_features(cond))).numpy()
    want = _sigma(np.array(0.37)) * Z_LEVELS  # the reference's quantiles
    assert np.abs(_log_quantiles(raw) - want)[[0, 2]].min() > 0.25  # the generator is visibly off ...
    # ... and calibrated it is not (the rest: the fit's noise and the cubic's bias over 21 points)
    np.testing.assert_allclose(_log_quantiles(fixed), want, atol=0.1)
    # the reference's 4 % of empty values: the generator's 1 % stay, its lowest values go (nearly) to 0
    assert (raw == 0).mean() < 0.015 and 0.03 < (fixed < 1e-3).mean() < 0.05


def test_calibration_is_monotone_and_keeps_empty_values_empty(calibration):
    cond = np.tile([0.8, 5.0], (4, 1))
    raw = _biased_generator(cond, 5)
    fixed = calibration.apply(torch.from_numpy(raw).float(), torch.from_numpy(_features(cond))).numpy()
    assert fixed.dtype == np.float32 and fixed.shape == raw.shape
    assert (fixed[raw == 0] == 0).all()  # empty stays empty
    for r, f in zip(raw, fixed, strict=True):
        order = np.argsort(r, kind="stable")
        assert (np.diff(f[order]) >= 0).all()


def test_the_polynomials_are_in_the_condition_features(calibration):
    assert calibration.coef_generated.shape == (4, len(calibration.thresholds_generated))  # 1, c, c^2, c^3 of one feature


def test_save_and_load_round_trip(calibration, tmp_path: Path):
    path = calibration.save(tmp_path / CALIBRATION_FILE)
    loaded = MarginalCalibration.load(path)
    x, features = torch.rand(3, 50) * 10, torch.tensor([[0.1], [0.5], [0.9]])
    assert torch.equal(loaded.apply(x, features), calibration.apply(x, features))
    assert loaded.info == calibration.info and loaded.info["points"] == 21


def test_too_few_points_for_the_degree_is_refused():
    cond = np.repeat([[0.2, 5.0], [0.8, 5.0]], 4, axis=0)
    with pytest.raises(ValueError, match="distinct condition points"):
        fit_marginal_calibration(_biased_generator, cond, _reference(cond, 0), _features, degree=2)


def _response_spread(energy: np.ndarray) -> np.ndarray:
    return 0.1 / np.sqrt(energy) + 0.01


def test_one_sample_per_point_calibrates_a_per_shower_response():
    """Each calo shower has its own energy: a point holds one value, and the fit is a logistic regression."""
    rng = np.random.default_rng(0)
    energy = 10.0 ** rng.uniform(0.0, 2.0, 20_000)[:, None]
    reference = 0.95 + _response_spread(energy) * rng.standard_normal(energy.shape)

    def narrow_generator(cond: np.ndarray, seed: int) -> np.ndarray:  # 40 % too narrow, 5 % low
        noise = np.random.default_rng(seed + 1).standard_normal(cond.shape)
        return 0.90 + 0.6 * _response_spread(cond) * noise

    calib = fit_marginal_calibration(
        narrow_generator, energy, reference, lambda c: np.log10(c) / 2, degree=5, per_point=1, offset=1e-3, step=0.001
    )
    assert calib.info["points"] == 20_000
    # far outside what was fitted (responses of 0.3 or 3 at the range's ends), nothing is flung: the results
    # stay finite and within a tenth of the training values' span of them
    far = calib.apply(torch.tensor([[0.3], [3.0], [0.3], [3.0]]), torch.tensor([[0.0], [0.0], [1.0], [1.0]])).numpy()
    lo, hi = reference.min(), reference.max()
    assert np.isfinite(far).all() and (far > lo - 0.2 * (hi - lo)).all() and (far < hi + 0.2 * (hi - lo)).all()
    for e in (2.0, 40.0):
        cond = np.full((20_000, 1), e)
        raw = narrow_generator(cond, 7)
        fixed = calib.apply(torch.from_numpy(raw), torch.from_numpy(np.log10(cond) / 2)).numpy()
        assert abs(raw.mean() - 0.95) > 0.04 and raw.std() < 0.7 * _response_spread(e)
        assert abs(fixed.mean() - 0.95) < 0.1 * _response_spread(e)
        assert abs(fixed.std() / _response_spread(e) - 1.0) < 0.05


def test_values_over_decades_get_at_most_max_thresholds():
    """A fine step over three decades (pi+ responses reach from 0.002 to 1) is thinned to quantiles of the values."""
    rng = np.random.default_rng(1)
    cond = rng.uniform(0.0, 1.0, (50_000, 1))
    reference = 10.0 ** rng.uniform(-3.0, 0.0, cond.shape)

    def generate(c: np.ndarray, seed: int) -> np.ndarray:  # the same, twice as large
        return 2.0 * 10.0 ** np.random.default_rng(seed).uniform(-3.0, 0.0, c.shape)

    calib = fit_marginal_calibration(generate, cond, reference, _features, degree=1, per_point=1, offset=1e-4, step=0.001)
    assert 100 < len(calib.thresholds_reference) <= 200 and len(calib.thresholds_generated) <= 200
    mid = torch.full((3, 1), 0.5)
    fixed = calib.apply(torch.tensor([[2e-2], [2e-1], [1.0]]), mid).numpy().ravel()
    np.testing.assert_allclose(fixed, [1e-2, 1e-1, 0.5], rtol=0.08)  # 0.03 decades


def test_mostly_empty_values_still_get_thresholds_over_their_decades():
    """90 % empty values (calorimeter cells) must not pull the thinned grid onto the empty level."""
    rng = np.random.default_rng(2)
    cond = rng.uniform(0.0, 1.0, (20_000, 1))

    def values(c: np.ndarray, seed: int) -> np.ndarray:
        r = np.random.default_rng(seed)
        return np.where(r.random((len(c), 10)) < 0.9, 0.0, 10.0 ** r.uniform(-3.0, 0.0, (len(c), 10)))

    calib = fit_marginal_calibration(values, cond, values(cond, 99), _features, degree=1, per_point=1, offset=1e-4, step=0.001)
    assert 100 < len(calib.thresholds_reference) <= 201


def test_a_domain_with_only_one_calibration_hook_is_refused():
    from emulator.calibration import calibration_values

    class HalfDomain:
        name = "half"

        def calibration_values(self, samples, conditions):
            return samples.sum(dim=1, keepdim=True)

    with pytest.raises(TypeError, match=r"half.*with_calibration_values"):
        calibration_values(HalfDomain(), torch.ones(2, 3), torch.ones(2, 1))


def test_calo_calibration_scales_whole_showers():
    from emulator.domains import get_domain
    from physics_data.calo.geometry import N_CELLS, READOUT_THRESHOLD_MEV

    domain = get_domain("calo")
    samples = torch.rand(5, 507) * 100.0 + 1.0
    samples[0, :3] = READOUT_THRESHOLD_MEV * 1.01  # falls below the threshold when scaled down
    cond = torch.tensor([[2.0], [10.0], [30.0], [60.0], [90.0]])
    response = domain.calibration_values(samples, cond)
    assert response.shape == (5, 1)
    torch.testing.assert_close(response[:, 0], samples[:, :N_CELLS].sum(1) / (1000.0 * cond[:, 0]))
    out = domain.with_calibration_values(samples, cond, response, response * 0.9)
    torch.testing.assert_close(out[1:], samples[1:] * 0.9)  # shape and overflow scaled alike
    assert (out[0, :3] == 0).all() and torch.allclose(out[0, 3:], samples[0, 3:] * 0.9)


def _shift_calibration(offset: float, shift: float) -> MarginalCalibration:
    """Reference = generated values shifted by ``shift`` in log10(x + offset), at every condition."""
    t = torch.linspace(-3.0, 3.0, 61, dtype=torch.float64)
    gen = torch.zeros(1, len(t), dtype=torch.float64)
    gen[0] = 2.0 * t  # logit P(y < t): a logistic distribution of y
    ref = torch.zeros_like(gen)
    ref[0] = 2.0 * (t - shift)
    return MarginalCalibration(t, t, gen, ref, 0, offset)


def test_sampler_applies_the_model_directorys_calibration(tmp_path: Path):
    model = make_tiny_model(tmp_path / "cosmo-tiny", domain="cosmo")
    offset, shift = 1e-3, 0.1
    _shift_calibration(offset, shift).save(model / CALIBRATION_FILE)
    calibrated = Sampler.from_dir(model, device="cpu")
    bare = Sampler.from_dir(model, device="cpu", calibrated=False)
    assert calibrated.calibration is not None and bare.calibration is None
    spec = parse_conditions(bare.domain, {"omega_m": 0.3, "sigma8": 0.8}, 6)
    raw = bare.generate(6, spec, seed=3).samples.astype(np.float64)
    got = calibrated.generate(6, spec, seed=3).samples
    y = np.log10(raw + offset)
    inside = (raw > 0) & (y > -3.0) & (y < 3.0)
    assert inside.mean() > 0.3
    np.testing.assert_allclose(got[inside], (10.0 ** (y + shift) - offset)[inside], rtol=1e-5)
    assert (got[raw == 0] == 0).all()


def test_calibrate_cli_fits_records_and_removes(tmp_path: Path, capsys):
    data = tmp_path / "sims.h5"
    assert main([
        "simulate", "cosmo", "--n-sims", "6", "--particles", "32", "--steps", "2", "--grid", "64",
        "--omega-m", "0.101:0.487", "--sigma8", "0.487:1.331", "--linear-power", "eh", "--device", "cpu",
        "--seed", "0", "--out", str(data), "--quiet",
    ]) == 0  # fmt: skip
    model = make_tiny_model(tmp_path / "cosmo-tiny", domain="cosmo")
    args = ["calibrate", str(model), "--data", str(data), "--degree", "1", "--per-point", "2", "--device", "cpu",
            "--spectral-iterations", "0"]
    assert main([*args, "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    card = json.loads((model / "card.json").read_text())
    assert card["calibration"]["points"] == 6 and card["calibration"]["data"] == str(data)
    assert "calibration" in (model / "MODEL_CARD.md").read_text()
    assert Sampler.from_dir(model, device="cpu").calibration is not None

    assert main(["calibrate", str(model), "--remove"]) == 0
    assert not (model / CALIBRATION_FILE).exists()
    assert "calibration" not in json.loads((model / "card.json").read_text())


def test_calibrate_cli_calo_maps_the_response(tmp_path: Path, capsys):
    data = tmp_path / "gamma.h5"
    assert main(["simulate", "calo", "--particle", "gamma", "--n", "200", "--energy", "1:100", "--seed", "3",
                 "--out", str(data)]) == 0  # fmt: skip
    model = make_tiny_model(tmp_path / "calo-tiny", domain="calo")
    weights = load_file(model / "generator.safetensors")
    weights["out.bias"][507] = 1.0  # the response output: ~1.7 E_inc, not overlapping the simulator's ~1
    save_file(weights, model / "generator.safetensors")
    assert main(["calibrate", str(model), "--data", str(data), "--degree", "2", "--per-point", "1", "--quiet"]) == 0
    assert "200 points x 1 generated" in capsys.readouterr().out
    calibrated, bare = Sampler.from_dir(model, device="cpu"), Sampler.from_dir(model, device="cpu", calibrated=False)
    spec = parse_conditions(bare.domain, {"energy": 20.0}, 64)
    raw, got = (s.generate(64, spec, seed=2).samples.astype(np.float64) for s in (bare, calibrated))
    cond, reference, _ = bare.domain.read_samples(data)
    near = (cond[:, 0] > 10) & (cond[:, 0] < 40)
    ref_q = np.quantile(reference[near, :504].sum(1) / (1e3 * cond[near, 0]), [0.1, 0.5, 0.9])
    response = {name: x[:, :504].sum(1) / 20e3 for name, x in (("raw", raw), ("got", got))}
    # the untrained generator's response (1.2-1.8) does not even overlap the simulator's (~0.99-1.0);
    # calibrated, its 10/50/90 % quantiles are the simulator's (at 10-40 GeV) within 0.01
    assert np.quantile(response["raw"], 0.1) > ref_q[2] + 0.1
    np.testing.assert_allclose(np.quantile(response["got"], [0.1, 0.5, 0.9]), ref_q, atol=0.01)
    lit = (raw[:, :504] > 0) & (got[:, :504] > 0)
    ratio = got[:, :504][lit] / raw[:, :504][lit]
    rows = np.nonzero(lit)[0]
    np.testing.assert_allclose(ratio, (response["got"] / response["raw"])[rows], rtol=1e-4)  # one factor per shower


def test_calibrate_cli_defaults_are_the_domains(tmp_path: Path, capsys):
    """Without --degree/--per-point, calo fits degree 6 with one generated shower per training shower."""
    data = tmp_path / "eplus.h5"
    assert main(["simulate", "calo", "--particle", "e+", "--n", "300", "--energy", "1:100", "--seed", "4",
                 "--out", str(data)]) == 0  # fmt: skip
    model = make_tiny_model(tmp_path / "calo-tiny", domain="calo")
    assert main(["calibrate", str(model), "--data", str(data), "--quiet"]) == 0
    assert "degree 6, 300 points x 1 generated" in capsys.readouterr().out
    info = json.loads((model / "card.json").read_text())["calibration"]
    assert (info["degree"], info["generated_per_point"]) == (6, 1)


def test_calibrate_cli_names_what_is_missing(tmp_path: Path, capsys):
    model = make_tiny_model(tmp_path / "cosmo-tiny", domain="cosmo")
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(model)])
    assert exc.value.code == 2 and "--data is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(model), "--data", str(tmp_path / "x.h5"), "--degree", "-1"])
    assert exc.value.code == 2 and "--degree >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(tmp_path / "nowhere"), "--data", str(tmp_path / "x.h5")])
    assert exc.value.code == 2 and "nowhere" in capsys.readouterr().err


def test_without_calibration_is_the_bare_generator(tmp_path: Path):
    from pipelines.validate import without_calibration

    model = make_tiny_model(tmp_path / "cosmo-tiny", domain="cosmo")
    _shift_calibration(1e-3, 0.1).save(model / CALIBRATION_FILE)
    calibrated = Sampler.from_dir(model, device="cpu")
    bare = without_calibration(calibrated)
    assert bare.calibration is None and calibrated.calibration is not None and bare.generator is calibrated.generator
    spec = parse_conditions(bare.domain, {"omega_m": 0.3, "sigma8": 0.8}, 2)
    expected = Sampler.from_dir(model, device="cpu", calibrated=False).generate(2, spec, seed=1).samples
    assert bare.generate(2, spec, seed=1).samples.tobytes() == expected.tobytes()


def test_a_narrow_and_a_wide_condition_both_keep_their_spread():
    """e+ responses: 4 % wide at the lowest energies, 0.25 % at the highest. The thinned grid must resolve both: half
    of it at pooled quantiles (crowded where most conditions sit), half evenly over the span (the wide tails)."""
    rng = np.random.default_rng(5)
    cond = rng.uniform(0.0, 1.0, (60_000, 1))

    def spread(c: np.ndarray) -> np.ndarray:
        return 0.04 * 10.0 ** (-1.2 * c)

    def response(c: np.ndarray, seed: int, width: float) -> np.ndarray:
        return 0.996 + width * spread(c) * np.random.default_rng(seed).standard_normal(c.shape)

    calib = fit_marginal_calibration(
        lambda c, seed: response(c, seed, 0.85), cond, response(cond, 99, 1.0), _features,
        degree=4, per_point=1, offset=1e-3, step=1e-4,
    )  # fmt: skip
    assert len(calib.thresholds_reference) <= 201
    for c in (0.05, 0.95):
        at = np.full((20_000, 1), c)
        fixed = calib.apply(torch.from_numpy(response(at, 7, 0.85)), torch.from_numpy(at)).numpy()
        assert abs(fixed.std() / spread(at[0, 0]) - 1.0) < 0.03, c
