"""The training loop: config handling, EMA math, quick validation, and bit-exact resume on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import emulator.train as train_module
from emulator.conditions import parse_conditions
from emulator.domains import get_domain
from emulator.models.mlp_generator import NOISE_SIGMA_GAIN
from emulator.sampler import Sampler
from emulator.train import (
    ConfigError,
    TrainConfig,
    balanced_index_cdf,
    conditional_mean_deviation,
    ema_update,
    load_config,
    lr_scale_at,
    quick_validation_score,
    train_func,
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from physics_data.calo.io import write_showers
    from physics_data.calo.simulate import simulate

    path = tmp_path_factory.mktemp("data") / "eplus.h5"
    write_showers(path, simulate("e+", 300, "1:100", seed=5), attrs={"particle": "e+"})
    return path


def tiny_config(data, tmp_path, **kw):
    cfg = {
        "data": str(data), "out": str(tmp_path / "model"), "run_dir": str(tmp_path / "run"), "particle": "e+",
        "steps": 4, "batch_size": 16, "n_critic": 2, "latent_dim": 8, "g_hidden": [16], "d_hidden": [16],
        "val_every": 2, "checkpoint_every": 2, "log_every": 1, "val_samples": 40, "energy_weight": 1.0,
        "progress": False,
    }  # fmt: skip
    cfg.update(kw)
    return cfg


def test_ema_update_math():
    torch.manual_seed(0)
    model, ema = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    before = [p.clone() for p in ema.parameters()]
    ema_update(ema, model, decay=0.9)
    for e, b, m in zip(ema.parameters(), before, model.parameters(), strict=True):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * m)
    ema_update(ema, model, decay=0.0)
    for e, m in zip(ema.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(e, m)


def test_config_layers_and_unknown_keys(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"steps": 7, "g_hidden": [32, 32], "lr_g": 2e-4}))
    cfg = load_config({"steps": 3, "out": "models/x"}, f, {"batch_size": "64", "amp": "false", "d_hidden": "8,8"})
    assert (cfg.steps, cfg.batch_size, cfg.amp, cfg.g_hidden, cfg.d_hidden) == (7, 64, False, (32, 32), (8, 8))
    assert cfg.name == "x" and cfg.run_dir.endswith("runs/x")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['stepz'\]"):
        load_config({"stepz": 1})
    with pytest.raises(ConfigError, match="expects int"):
        load_config(None, None, {"steps": "many"})
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        load_config({"steps": 0})
    f.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(None, f)
    assert load_config(TrainConfig(steps=9)).steps == 9


def test_quick_validation_score_is_zero_for_identical_and_grows_with_shift():
    dom = get_domain("calo")
    rng = np.random.default_rng(0)
    ref = {name: rng.normal(size=2000) for name in dom.quick_val_observables}
    assert quick_validation_score(dom, ref, ref)[0] == 0.0
    shifted = {k: v + 0.5 for k, v in ref.items()}
    score, per = quick_validation_score(dom, shifted, ref)
    assert score == pytest.approx(0.5, rel=0.05) and set(per) == set(dom.quick_val_observables)


def test_quick_validation_score_sees_a_condition_dependent_bias_the_pooled_w1_misses():
    """gen too low at low conditions and too high at high ones: pooled it looks almost right, the
    conditional-mean term (one ``|cond`` entry per observable) says by how much it is off; a model
    right at every condition stays near the fit's noise floor."""
    dom = get_domain("calo")
    rng = np.random.default_rng(1)
    features = rng.uniform(size=(2000, 1))
    ref = {name: rng.normal(size=2000) + features[:, 0] for name in dom.quick_val_observables}
    good = {name: rng.normal(size=2000) + features[:, 0] for name in dom.quick_val_observables}
    tilted = {name: rng.normal(size=2000) + 1.0 - features[:, 0] for name in dom.quick_val_observables}
    name = dom.quick_val_observables[0]
    _, per = quick_validation_score(dom, tilted, ref, features)
    assert set(per) == {*dom.quick_val_observables, *(f"{n}|cond" for n in dom.quick_val_observables)}
    assert per[name] < 0.1 and per[f"{name}|cond"] == pytest.approx(1 / np.sqrt(3), rel=0.1)  # RMS of 1 - 2f, f uniform
    assert conditional_mean_deviation(good[name], ref[name], features) < 0.1


def test_train_writes_model_logs_and_checkpoints(tiny_data, tmp_path):
    reports, ckpts = [], []
    summary = train_func(
        tiny_config(tiny_data, tmp_path),
        report=reports.append,
        checkpoint_hook=lambda path, metrics: ckpts.append((path, metrics)),
    )
    assert summary["steps"] == 4 and summary["best_step"] in (2, 4)
    assert {p.name for p in (tmp_path / "model").iterdir()} >= {"config.json", "generator.safetensors", "card.json"}
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    assert card["particle"] == "e+" and card["training_data"]["n_samples"] == 300
    assert card["hyperparameters"]["train"]["gp_lambda"] == 10.0
    assert load_config(file=tmp_path / "run" / "config.json") == load_config(tiny_config(tiny_data, tmp_path))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss_d" in r] == [1, 2, 3, 4]
    assert sum("val_score" in r for r in records) == 2
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 0
    assert [m["step"] for _, m in ckpts] == [2, 4] and any("val_score" in r for r in reports)


@pytest.mark.parametrize(
    "energy",
    [{}, {"energy_loss": "crps", "energy_scale": "relative", "balance_bins": 4}],
    ids=["moments", "crps-relative-balanced"],
)
def test_resume_is_bit_exact(tiny_data, tmp_path, energy):
    """2N steps in one go == N steps, stop, resume, N more: identical weights, EMA and critic."""
    train_func(tiny_config(tiny_data, tmp_path / "a", steps=4, **energy))
    train_func(tiny_config(tiny_data, tmp_path / "b", steps=2, **energy))
    train_func(tiny_config(tiny_data, tmp_path / "b", steps=4, resume=True, **energy))
    a = load_file(str(tmp_path / "a" / "run" / "checkpoints" / "step-00000004" / "tensors.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "checkpoints" / "step-00000004" / "tensors.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps_b = [json.loads(x)["step"] for x in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps_b == sorted(steps_b), "resumed log continues without duplicates"


def test_linear_lr_decay_schedule_and_errors():
    cfg = TrainConfig(steps=10, lr_decay="linear", lr_decay_start=6)
    assert [lr_scale_at(s, cfg) for s in (1, 6, 7, 8, 10)] == [1.0, 1.0, 1.0, 0.75, 0.25]
    assert lr_scale_at(7, TrainConfig(steps=10)) == 1.0, "no decay by default"
    with pytest.raises(ConfigError, match="lr_decay must be one of"):
        load_config({"lr_decay": "cosine"})
    with pytest.raises(ConfigError, match="lr_decay_start=10 must be"):
        load_config({"steps": 10, "lr_decay": "linear", "lr_decay_start": 10})


def test_lr_decay_changes_the_updates_and_resumes_bit_exactly(tiny_data, tmp_path):
    """The decayed rate reaches the optimizers (the weights differ from a constant-rate run only from the
    decay's second update on), and a decayed run resumed from a checkpoint matches one run in one go."""
    decay = {"lr_decay": "linear", "lr_decay_start": 2}
    train_func(tiny_config(tiny_data, tmp_path / "const", steps=4))
    train_func(tiny_config(tiny_data, tmp_path / "a", steps=4, **decay))
    train_func(tiny_config(tiny_data, tmp_path / "b", steps=2, **{**decay, "lr_decay": "none"}))
    train_func(tiny_config(tiny_data, tmp_path / "b", steps=4, resume=True, **decay))

    def weights(run, step):
        return load_file(str(tmp_path / run / "run" / "checkpoints" / f"step-{step:08d}" / "tensors.safetensors"))

    const2, a2, const4, a4, b4 = weights("const", 2), weights("a", 2), weights("const", 4), weights("a", 4), weights("b", 4)
    assert all(torch.equal(const2[k], a2[k]) for k in const2), "steps up to lr_decay_start run at the full rate"
    assert not all(torch.equal(const4[k], a4[k]) for k in const4 if k.startswith("generator."))
    assert all(torch.equal(a4[k], b4[k]) for k in a4)
    scales = [json.loads(x).get("lr_scale") for x in (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in scales if s is not None] == [1.0, 1.0, 1.0, 0.5]


def test_resume_with_another_quick_validation_score_chooses_its_best_afresh(tiny_data, tmp_path, monkeypatch):
    """A run checkpointed with the pooled score and resumed with the conditional term: the old best
    score is not comparable, so the first new validation becomes the best however large it is."""
    train_func(tiny_config(tiny_data, tmp_path, steps=2, val_conditional=False))
    monkeypatch.setattr(train_module, "conditional_mean_deviation", lambda *a: 100.0)
    summary = train_func(tiny_config(tiny_data, tmp_path, steps=4, resume=True))
    assert summary["best_step"] == 4 and summary["best_score"] > 10


def test_warm_start_continues_like_resume_and_grows_new_critic_features(tiny_data, tmp_path, monkeypatch):
    """init_from another run's checkpoint == resume (same weights after), with its own best-model choice;
    a physics feature appended to the domain since then enters the critic at zero weight."""
    train_func(tiny_config(tiny_data, tmp_path / "a", steps=4))
    train_func(tiny_config(tiny_data, tmp_path / "b", steps=2))
    start = tmp_path / "b" / "run" / "checkpoints" / "step-00000002"
    summary = train_func(tiny_config(tiny_data, tmp_path / "c", steps=4, init_from=str(start)))
    assert summary["best_step"] == 4, "the warm run picks its best among its own validations"
    a = load_file(str(tmp_path / "a" / "run" / "checkpoints" / "step-00000004" / "tensors.safetensors"))
    c = load_file(str(tmp_path / "c" / "run" / "checkpoints" / "step-00000004" / "tensors.safetensors"))
    assert all(torch.equal(a[k], c[k]) for k in a)

    calo = type(get_domain("calo"))
    n_old = calo.critic_feature_dim
    features = calo.critic_features
    monkeypatch.setattr(calo, "critic_feature_dim", n_old + 1)
    monkeypatch.setattr(calo, "critic_features", lambda self, x, cond: torch.cat([features(self, x, cond), x[:, :1]], 1))
    train_func(tiny_config(tiny_data, tmp_path / "d", steps=3, init_from=str(start), checkpoint_every=1, val_every=1))
    with pytest.raises(ConfigError, match="--init-from"):  # resuming would need the old critic: say what to do
        train_func(tiny_config(tiny_data, tmp_path / "b", steps=4, resume=True))
    first = load_file(str(tmp_path / "d" / "run" / "checkpoints" / "step-00000003" / "tensors.safetensors"))
    w_old = load_file(str(start / "tensors.safetensors"))["critic.linears.0.weight"]
    w = first["critic.linears.0.weight"]
    assert w.shape[1] == w_old.shape[1] + 1
    at = 507 + n_old  # the new column sits after the old features, before the condition inputs
    assert first["optim_d.0.exp_avg"].shape == w.shape  # Adam moments grew too (no embedding: param 0)
    assert not torch.equal(w[:, at], torch.zeros_like(w[:, at])), "the new feature's weights train from zero"


def test_warm_start_adds_output_noise_that_trains(tiny_data, tmp_path):
    """A run warm-started with g_output_noise gets the noise at its initial sigma, with fresh Adam moments."""
    train_func(tiny_config(tiny_data, tmp_path / "b", steps=2))
    start = tmp_path / "b" / "run" / "checkpoints" / "step-00000002"
    cfg = tiny_config(tiny_data, tmp_path / "n", steps=4, init_from=str(start), g_output_noise=0.1)
    train_func(cfg)
    t = load_file(str(tmp_path / "n" / "run" / "checkpoints" / "step-00000004" / "tensors.safetensors"))
    bias = t["generator.noise_log_sigma.bias"]
    assert not torch.allclose(bias, torch.full_like(bias, float(np.log(0.1)) / NOISE_SIGMA_GAIN)), "sigma trains"
    n_params = sum(1 for k in t if k.startswith("generator."))
    assert t[f"optim_g.{n_params - 1}.exp_avg"].shape == bias.shape, "the new parameters have Adam moments"
    sampler = Sampler.from_dir(tmp_path / "n" / "model", device="cpu")
    assert sampler.noise_dim == 8 + 508, "latent + one noise value per output (507 + the response: no head here)"
    block = sampler.generate(100, parse_conditions(sampler.domain, {"energy": 10.0}, 100), seed=1)
    assert np.isfinite(block.samples).all() and (block.samples >= 0).all()


def test_warm_start_grows_the_generator_head_for_spot_quantisation(tiny_data, tmp_path):
    """log1p_threshold -> log1p_threshold_spots: the head's 9 new outputs start at zero and train, with Adam moments."""
    head = {"g_head_hidden": [8], "preprocessing": "log1p_threshold"}
    train_func(tiny_config(tiny_data, tmp_path / "b", steps=2, **head))
    start = tmp_path / "b" / "run" / "checkpoints" / "step-00000002"
    old = load_file(str(start / "tensors.safetensors"))["generator.extra_out.weight"]
    spots = {**head, "preprocessing": "log1p_threshold_spots"}
    train_func(tiny_config(tiny_data, tmp_path / "s", steps=3, init_from=str(start), checkpoint_every=1, **spots))
    t = load_file(str(tmp_path / "s" / "run" / "checkpoints" / "step-00000003" / "tensors.safetensors"))
    w = t["generator.extra_out.weight"]
    assert old.shape[0] == 1 and w.shape[0] == 10 and w[1:].abs().sum() > 0, "the new rows train from zero"
    moments = [v.shape for k, v in t.items() if k.startswith("optim_g.") and k.endswith(".exp_avg")]
    assert tuple(w.shape) in [tuple(m) for m in moments], "the grown head has Adam moments of its shape"
    sampler = Sampler.from_dir(tmp_path / "s" / "model", device="cpu")
    assert sampler.domain.generator_extra_outputs == 10
    block = sampler.generate(50, parse_conditions(sampler.domain, 10.0, 50), seed=0)
    assert np.isfinite(block.samples).all() and (block.samples >= 0).all()


def test_warm_start_from_a_model_directory_takes_its_generator_and_warms_up_a_fresh_critic(
    tiny_data, tmp_path, monkeypatch
):
    """init_from a shipped model directory: its generator (and EMA) weights, a fresh critic that first gets
    critic_warmup critic-only iterations, step 0; --config may be the model's card.json."""
    from emulator.wgan_gp import GANStep

    train_func(tiny_config(tiny_data, tmp_path / "a", steps=2))
    model = tmp_path / "a" / "model"
    calls = []
    real_train_critic = GANStep.train_critic
    monkeypatch.setattr(GANStep, "train_critic", lambda self, nb: calls.append(1) or real_train_critic(self, nb))
    cfg = load_config(None, model / "card.json", {
        "out": str(tmp_path / "b" / "model"), "run_dir": str(tmp_path / "b" / "run"), "init_from": str(model),
        "critic_warmup": 3, "lr_g": 0.0, "energy_weight": 0.0,
    })  # fmt: skip
    assert (cfg.latent_dim, cfg.g_hidden, cfg.steps) == (8, (16,), 2), "the card's training settings"
    summary = train_func(cfg)
    assert summary["steps"] == 2 and len(calls) == 3 + 2, "3 warm-up iterations, then one per step"
    before = load_file(str(model / "generator.safetensors"))
    after = load_file(str(tmp_path / "b" / "model" / "generator.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before), "lr_g = 0: the EMA is the model's generator"
    with pytest.raises(ConfigError, match="set the same architecture"):
        train_func({**cfg.to_dict(), "g_hidden": [32], "run_dir": str(tmp_path / "c")})


def test_warm_start_from_a_model_directory_may_change_the_output_stage_not_the_units(tiny_data, tmp_path):
    """A spot variant of calo's threshold units warm-starts from a threshold-units model; fraction units do not."""
    train_func(tiny_config(tiny_data, tmp_path / "a", steps=2, preprocessing="log1p_threshold"))
    spots = tiny_config(tiny_data, tmp_path / "b", steps=2, preprocessing="log1p_threshold_poisson_spots",
                        init_from=str(tmp_path / "a" / "model"))  # fmt: skip
    assert train_func(spots)["steps"] == 2
    with pytest.raises(ConfigError, match="same domain and units"):
        train_func({**spots, "preprocessing": "log1p_fraction", "run_dir": str(tmp_path / "c")})


def test_warm_start_from_a_missing_checkpoint_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="init_from"):
        train_func(tiny_config(tiny_data, tmp_path, init_from=str(tmp_path / "nope")))


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_balanced_batches_spread_evenly_over_condition_bins(fraction):
    feature = torch.cat([torch.full((100,), 0.05), torch.full((900,), 0.95)])  # 10 % low, 90 % high
    cdf = balanced_index_cdf(feature, 10, fraction)
    idx = torch.searchsorted(cdf, torch.rand(200_000, generator=torch.Generator().manual_seed(0)))
    low_share = (idx < 100).double().mean().item()
    assert low_share == pytest.approx((1 - fraction) * 0.1 + fraction * 0.5, abs=0.005)
    assert idx.min() >= 0 and idx.max() < 1000
    with pytest.raises(ConfigError, match="balance_fraction"):
        balanced_index_cdf(feature, 10, 1.5)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="emulator simulate"):
        train_func(tiny_config(tmp_path / "nope.h5", tmp_path))


def test_separate_response_head_trains_exports_and_samples(tiny_data, tmp_path):
    train_func(tiny_config(tiny_data, tmp_path, g_head_hidden=[8], energy_weight=1.0))
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["model_args"]["head_outputs"] == 1 and config["model_args"]["head_hidden"] == [8]
    sampler = Sampler.from_dir(tmp_path / "model", device="cpu")
    block = sampler.generate(50, parse_conditions(sampler.domain, 10.0, 50), seed=0)
    assert block.samples.shape == (50, 507) and (block.samples >= 0).all()


def test_preprocessing_variant_trains_exports_and_loads_with_it(tiny_data, tmp_path):
    train_func(tiny_config(tiny_data, tmp_path, preprocessing="log1p_threshold"))
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["preprocessing"]["name"] == "log1p_threshold"
    sampler = Sampler.from_dir(tmp_path / "model", device="cpu")
    assert sampler.domain.preprocessing == get_domain("calo", "log1p_threshold").preprocessing
    block = sampler.generate(50, parse_conditions(sampler.domain, 10.0, 50), seed=0)
    lit = block.samples[:, :504][block.samples[:, :504] > 0]
    assert lit.size and lit.min() >= 0.015  # the readout threshold, MeV
    with pytest.raises(ConfigError, match="log1p_nope"):
        train_func(tiny_config(tiny_data, tmp_path / "bad", preprocessing="log1p_nope"))
