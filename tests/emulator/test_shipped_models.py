"""CI check of every shipped calo model against freshly simulated reference showers.

For each ``models/calo-*`` directory: load it, generate 20k showers uniform in 1-100 GeV,
simulate 20k fresh reference showers of the card's particle, and check

* the mean response E_tot/E_inc in each of 10 energy bins against the thresholds file's
  ``response_mean_rel_tol`` (a bin fails when its deviation exceeds the tolerance by more
  than ``significance_sigma`` standard errors, the validator's rule), and
* the high-level classifier AUC against ``auc_high_level_max`` (plus 3 standard errors:
  20k showers measure the AUC to about +-0.005; the full >= 100k-shower validation report
  beside each card is the judge of the thresholds themselves).

A broken checkpoint, a changed preprocessing or a wrong card fails here. Skipped cleanly
when no shipped model exists yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator.conditions import parse_conditions
from emulator.sampler import Sampler

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = sorted(p for p in MODELS.glob("calo-*") if (p / "generator.safetensors").exists())
N = 20_000


def test_shipped_models_exist_or_skip():
    if not SHIPPED:
        pytest.skip(f"no shipped calo models in {MODELS} yet (train them with scripts/train_calo.sh)")
    assert {p.name for p in SHIPPED} <= {"calo-eplus", "calo-gamma", "calo-piplus"}


@pytest.mark.parametrize("model_dir", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_model_matches_fresh_reference(model_dir):
    from emulator.validation.calo_inputs import calo_spec, showers_to_sampleset
    from emulator.validation.classifier import ClassifierConfig, classifier_auc
    from emulator.validation.conditioning import conditioning_table
    from emulator.validation.features import high_level_matrix
    from emulator.validation.thresholds import load_thresholds
    from physics_data.calo.showers import Showers
    from physics_data.calo.simulate import simulate

    sampler = Sampler.from_dir(model_dir, device="cpu")
    particle = sampler.card.get("particle")
    assert particle in ("e+", "gamma", "pi+"), f"{model_dir}/card.json has no valid particle: {particle!r}"
    out = sampler.generate(N, parse_conditions(sampler.domain, "1:100", N), seed=2024)
    assert np.isfinite(out.samples).all() and (out.samples >= 0).all()
    gen = Showers(out.conditions[:, 0].copy(), out.samples[:, :504].copy(), out.samples[:, 504:].copy())
    ref = simulate(particle, N, "1:100", seed=987_654)  # never used in training (recipe seeds are 101-103)

    spec = calo_spec(particle)
    g, r = showers_to_sampleset(gen), showers_to_sampleset(ref)
    thresholds = load_thresholds("calo_piplus" if particle == "pi+" else None).checks
    sigma = thresholds["significance_sigma"]

    table = conditioning_table(g, r, spec, n_bins=10)["observables"]["response"]
    dev, err = np.abs(np.asarray(table["mean_dev"])), np.asarray(table["mean_dev_err"])
    bad = dev > thresholds["response_mean_rel_tol"] + sigma * err
    assert not bad.any(), (
        f"{model_dir.name}: mean response off by {np.round(dev * 100, 2).tolist()} % per energy bin "
        f"(tolerance {thresholds['response_mean_rel_tol'] * 100:g} %)"
    )

    xg, _ = high_level_matrix(g, spec)
    xr, _ = high_level_matrix(r, spec)
    res = classifier_auc(xg, xr, ClassifierConfig(hidden=256, epochs=8, seed=0))
    limit = thresholds["auc_high_level_max"]
    assert res["auc"] <= limit + 3 * res["auc_err"], (
        f"{model_dir.name}: high-level classifier AUC {res['auc']:.3f} +- {res['auc_err']:.3f} > {limit}"
    )
