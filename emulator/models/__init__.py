"""Network architectures, one per module, each with its constructor-config dataclass beside it.

``build_model(class_name, args)`` rebuilds a network from the JSON saved in ``config.json``
(``{"model_class": ..., "model_args": {...}}``), so nothing is ever unpickled.
``build_for_training(class_name, sample_shape, cond_dim, **settings)`` makes a fresh one for a
domain from the trainer's generic settings (``hidden``, ``layer_norm``, ``latent_dim``, ...).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from torch import nn

from emulator.models.conv_critic import ConvCritic, ConvCriticConfig
from emulator.models.conv_generator import ConvGenerator, ConvGeneratorConfig
from emulator.models.mlp_critic import MLPCritic, MLPCriticConfig
from emulator.models.mlp_generator import MLPGenerator, MLPGeneratorConfig

__all__ = [
    "MODEL_CLASSES",
    "ConvCritic",
    "ConvCriticConfig",
    "ConvGenerator",
    "ConvGeneratorConfig",
    "MLPCritic",
    "MLPCriticConfig",
    "MLPGenerator",
    "MLPGeneratorConfig",
    "build_for_training",
    "build_model",
]

MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "MLPGenerator": MLPGenerator,
    "MLPCritic": MLPCritic,
    "ConvGenerator": ConvGenerator,
    "ConvCritic": ConvCritic,
}
"""Architectures that can be named in ``config.json`` (and by a domain's ``generator_class``/``critic_class``)."""


def _model_class(class_name: str) -> type[nn.Module]:
    try:
        return MODEL_CLASSES[class_name]
    except KeyError:
        raise ValueError(
            f"unknown model class {class_name!r}; known: {', '.join(sorted(MODEL_CLASSES))}"
        ) from None


def build_model(class_name: str, args: dict) -> nn.Module:
    """Instantiate ``class_name`` from its saved constructor arguments; unknown keys fail."""
    cls = _model_class(class_name)
    try:
        config = cls.config_class(**args)  # type: ignore[attr-defined]
    except TypeError as exc:
        raise ValueError(f"bad constructor arguments for {class_name}: {exc}") from None
    return cls(config)


def build_for_training(
    class_name: str, sample_shape: tuple[int, ...], cond_dim: int, extra_outputs: int = 0, **settings: Any
) -> nn.Module:
    """A freshly initialised ``class_name`` for samples of ``sample_shape``.

    Configs with a ``sample_shape`` field (the conv nets) get the shape; flat ones (the MLPs)
    get ``sample_dim``, its product plus ``extra_outputs`` (values a generator emits beyond the
    sample, see ``Domain.generator_extra_outputs``). ``settings`` are further config fields by name.
    """
    cls = _model_class(class_name)
    config_class = cls.config_class  # type: ignore[attr-defined]
    names = {f.name for f in dataclasses.fields(config_class)}
    if "sample_shape" in names:
        if extra_outputs:
            raise ValueError(f"{class_name} emits a fixed sample shape; it cannot add {extra_outputs} outputs")
        size: dict[str, Any] = {"sample_shape": tuple(sample_shape)}
    else:
        size = {"sample_dim": math.prod(sample_shape) + extra_outputs}
    try:
        config = config_class(**size, cond_dim=cond_dim, **settings)
    except TypeError as exc:
        raise ValueError(f"bad settings for {class_name}: {exc}") from None
    return cls(config)
