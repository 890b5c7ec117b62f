"""Network architectures, one per module, each with its constructor-config dataclass beside it.

``build_model(class_name, args)`` rebuilds a network from the JSON saved in ``config.json``
(``{"model_class": ..., "model_args": {...}}``), so nothing is ever unpickled.
"""

from __future__ import annotations

from torch import nn

from emulator.models.mlp_critic import MLPCritic, MLPCriticConfig
from emulator.models.mlp_generator import MLPGenerator, MLPGeneratorConfig

__all__ = [
    "MODEL_CLASSES",
    "MLPCritic",
    "MLPCriticConfig",
    "MLPGenerator",
    "MLPGeneratorConfig",
    "build_model",
]

MODEL_CLASSES: dict[str, type[nn.Module]] = {"MLPGenerator": MLPGenerator, "MLPCritic": MLPCritic}
"""Architectures that can be named in ``config.json``."""


def build_model(class_name: str, args: dict) -> nn.Module:
    """Instantiate ``class_name`` from its saved constructor arguments; unknown keys fail."""
    try:
        cls = MODEL_CLASSES[class_name]
    except KeyError:
        raise ValueError(
            f"unknown model class {class_name!r}; known: {', '.join(sorted(MODEL_CLASSES))}"
        ) from None
    try:
        config = cls.config_class(**args)  # type: ignore[attr-defined]
    except TypeError as exc:
        raise ValueError(f"bad constructor arguments for {class_name}: {exc}") from None
    return cls(config)
