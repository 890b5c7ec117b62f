"""The models one service instance serves: a thin view of ``emulator.registry`` with its settings applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator import registry
from emulator.sampler import Sampler

__all__ = ["ModelStore", "UnknownModel"]

UnknownModel = registry.UnknownModel


class ModelStore:
    """Lists models and loads their samplers from ``search_paths`` on ``device`` (samplers are cached)."""

    def __init__(self, search_paths: list[Path] | None = None, device: str = "auto") -> None:
        self.search_paths = list(search_paths) if search_paths else None
        self.device = device

    def list(self) -> list[registry.ModelInfo]:
        """Every servable model, sorted by name."""
        return sorted(registry.list_models(self.search_paths), key=lambda m: m.name)

    def info(self, name: str) -> registry.ModelInfo:
        """One model's info; raises :class:`UnknownModel` naming the available models."""
        return registry.get_model(name, self.search_paths)

    def sampler(self, name: str) -> Sampler:
        """The (cached) sampler of model ``name``."""
        return registry.load_sampler(name, device=self.device, search_paths=self.search_paths)

    def names(self) -> list[str]:
        """Names of the servable models."""
        return [m.name for m in self.list()]

    def describe(self) -> dict[str, Any]:
        """Search paths and device, for logs."""
        return {"search_paths": [str(p) for p in self.search_paths or []], "device": self.device}
