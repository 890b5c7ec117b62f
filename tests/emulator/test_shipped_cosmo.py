"""CI check of every shipped cosmo model against freshly simulated reference boxes.

For each ``models/cosmo-*`` directory: load it, generate 384 slices at Omega_m = 0.3,
sigma_8 = 0.8 (the point of its card's validation report), simulate 8 fresh boxes there
(384 slices, seeds never used for training or the shipped references), and compare the binned
statistics with what the card records from its report (``emulator validate`` against 16 or more boxes):

* the mean |P(k) deviation| over k <= k_Ny/2 must be no larger than the card's value, or the
  5 % threshold if that is larger, plus 3 standard errors and 3 % (8 boxes scatter more than 16);
* the Minkowski functional V0 (area fraction above threshold) likewise, with 2 % slack.

So a broken checkpoint, a changed preprocessing or a card that promises more than the model
delivers fails here. Whether the model meets the issue's thresholds is its report's verdict
(printed here, not hidden); the held-out points are checked in ``heldout.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator.conditions import parse_conditions
from emulator.sampler import Sampler

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = sorted(p for p in MODELS.glob("cosmo-*") if (p / "generator.safetensors").exists())
POINT = {"omega_m": 0.3, "sigma8": 0.8}
N_BOXES = 8


def _recorded(validation: dict, check: str) -> float:
    for c in validation["checks"]:
        if c["name"] == check:
            return float(c["value"])
    raise AssertionError(f"card validation has no {check!r} check")


def _check(result: dict, name: str) -> dict:
    return next(c for c in result["checks"] if c["name"] == name)


@pytest.mark.parametrize("model_dir", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_cosmo_model_reproduces_its_card_on_fresh_boxes(model_dir):
    from emulator.domains.cosmo import BOX_SIZE
    from emulator.validation.cosmo_inputs import compare_maps
    from physics_data.cosmo.simulate import simulate_slices

    sampler = Sampler.from_dir(model_dir, device="cpu")
    validation = sampler.card.get("validation")
    assert validation, f"{model_dir}/card.json has no validation summary to compare with"
    assert (model_dir / validation["report"]).exists()
    # the card says whether the samples pass through an output calibration; the directory must agree
    assert (sampler.calibration is not None) == ("calibration" in sampler.card), (
        f"{model_dir.name}: card and calibration.safetensors disagree"
    )
    power = sampler.card["training_data"]["attrs"]["power_spectrum"]
    assert power.startswith("Eisenstein"), f"the CI reference below assumes EH linear power, the card says {power}"
    print(f"{model_dir.name}: issue thresholds {'met' if validation['passed'] else 'NOT met'} in its report")

    ref = simulate_slices(
        N_BOXES, POINT["omega_m"], POINT["sigma8"], seed=424_242, device="cpu", power_backend="eh", progress=False
    )
    n = len(ref.fields)
    gen = sampler.generate(n, parse_conditions(sampler.domain, POINT, n), seed=7).samples
    assert np.isfinite(gen).all() and (gen >= 0).all()
    res = compare_maps(gen, ref.fields, BOX_SIZE, reference_groups=ref.sim_index)

    pk = _check(res, "power_spectrum_mean")
    allowed = max(_recorded(validation, "power_spectrum_mean"), 0.05) + 0.03
    assert pk["value"] <= allowed + 3 * pk["value_err"], (
        f"{model_dir.name}: P(k) off by {pk['value']:.3f} +- {pk['value_err']:.3f} on average; "
        f"its card records {_recorded(validation, 'power_spectrum_mean'):.3f}"
    )
    v0 = _check(res, "minkowski_v0_bins")
    allowed = max(_recorded(validation, "minkowski_v0_bins"), 0.1) + 0.02
    assert v0["value"] <= allowed + 3 * v0["value_err"], (
        f"{model_dir.name}: Minkowski V0 off by {v0['value']:.3f} at {v0['where']}"
    )
