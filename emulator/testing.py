"""Test helpers: a tiny randomly initialised model in the exact shipped layout, and the repo's scripts as modules.

>>> import tempfile
>>> from emulator.sampler import Sampler
>>> d = make_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
>>> Sampler.from_dir(d, device="cpu").domain.name
'calo'
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch

from emulator.checkpoint import export_model
from emulator.domains import generator_output_size, get_domain
from emulator.models import MLPGenerator, MLPGeneratorConfig

__all__ = ["load_script", "make_tiny_model"]


def make_tiny_model(
    dir: Path, domain: str = "calo", seed: int = 0, name: str | None = None, preprocessing: str | None = None
) -> Path:
    """Write a seeded, untrained tiny generator (a few thousand parameters) as a model directory at ``dir``
    (``preprocessing``: a named variant of the domain's, default its default)."""
    dom = get_domain(domain, preprocessing)
    torch.manual_seed(seed)
    cfg = MLPGeneratorConfig(sample_dim=generator_output_size(dom), cond_dim=len(dom.conditions), latent_dim=8, hidden=(16,))
    gen = MLPGenerator(cfg)
    with torch.no_grad():  # shift outputs so about half the values are non-zero after a final ReLU
        gen.out.bias.fill_(0.1)
    name = name or Path(dir).name
    card = {
        "name": name,
        "domain": dom.name,
        "version": "0.0.0-test",
        "description": "Untrained tiny test model (random weights); for tests only.",
        "conditions": [
            {"name": c.name, "unit": c.unit, "low": c.low, "high": c.high, "description": c.description}
            for c in dom.conditions
        ],
        "training_data": None,
        "hyperparameters": {"model": cfg.to_dict()},
        "validation": None,
    }
    return export_model(dir, gen, dom, card)


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` of this repository as a module (the scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
