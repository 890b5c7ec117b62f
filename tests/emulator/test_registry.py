"""The model registry: discovery on the search path, lookup errors, cached samplers."""

from __future__ import annotations

import pytest

from emulator.registry import UnknownModel, get_model, list_models, load_sampler
from emulator.testing import make_tiny_model


@pytest.fixture
def models_dir(tmp_path):
    make_tiny_model(tmp_path / "tiny-a", seed=0)
    make_tiny_model(tmp_path / "tiny-b", seed=1)
    (tmp_path / "not-a-model").mkdir()
    return tmp_path


def test_lists_tiny_models(models_dir):
    infos = list_models([models_dir])
    assert [m.name for m in infos] == ["tiny-a", "tiny-b"]
    assert infos[0].domain == "calo" and infos[0].version == "0.0.0-test"
    assert infos[0].card["conditions"][0]["name"] == "energy"


def test_environment_search_path(models_dir, monkeypatch):
    monkeypatch.setenv("EMULATOR_MODELS_PATH", str(models_dir))
    assert {"tiny-a", "tiny-b"} <= {m.name for m in list_models()}


def test_unknown_model_lists_available(models_dir):
    with pytest.raises(UnknownModel, match="available: tiny-a, tiny-b"):
        get_model("nope", [models_dir])


def test_load_sampler_is_cached(models_dir):
    s1 = load_sampler("tiny-a", device="cpu", search_paths=[models_dir])
    s2 = load_sampler("tiny-a", device="cpu", search_paths=[models_dir])
    assert s1 is s2 and s1.name == "tiny-a"
    assert load_sampler("tiny-b", device="cpu", search_paths=[models_dir]) is not s1
