"""Which models exist: shipped ones in the repo's ``models/`` plus user-trained ones on ``$EMULATOR_MODELS_PATH``.

A model is any directory holding ``config.json``, ``card.json`` and ``generator.safetensors``
(and optionally ``calibration.safetensors``, applied by the sampler: ``emulator.calibration``);
its name is the card's ``name`` (the directory name when absent). When two search paths
hold the same name, the earlier path wins.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from emulator.checkpoint import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
from emulator.sampler import Sampler, resolve_device

__all__ = ["DEFAULT_MODELS_DIR", "ModelInfo", "UnknownModel", "get_model", "list_models", "load_sampler"]

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
ENV_VAR = "EMULATOR_MODELS_PATH"


class UnknownModel(KeyError):
    """No model of that name on the search path."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


@dataclass
class ModelInfo:
    """A model directory found on the search path."""

    name: str
    domain: str
    version: str
    path: Path
    card: dict


def default_search_paths() -> list[Path]:
    """The repo's ``models/`` followed by the entries of ``$EMULATOR_MODELS_PATH``."""
    extra = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return [DEFAULT_MODELS_DIR, *extra]


def _is_model_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in (CONFIG_FILE, CARD_FILE, WEIGHTS_FILE))


def list_models(search_paths: list[Path] | None = None) -> list[ModelInfo]:
    """All models on the search path, sorted by name (a search path may itself be a model directory)."""
    found: dict[str, ModelInfo] = {}
    for root in search_paths if search_paths is not None else default_search_paths():
        root = Path(root)
        if not root.is_dir():
            continue
        candidates = [root] if _is_model_dir(root) else sorted(p for p in root.iterdir() if p.is_dir())
        for path in candidates:
            if not _is_model_dir(path):
                continue
            try:
                card = json.loads((path / CARD_FILE).read_text())
                config = json.loads((path / CONFIG_FILE).read_text())
            except json.JSONDecodeError:
                continue  # a broken directory must not hide the others; loading it reports the error
            name = card.get("name") or path.name
            found.setdefault(
                name,
                ModelInfo(
                    name,
                    config.get("domain", card.get("domain", "?")),
                    str(card.get("version", "?")),
                    path,
                    card,
                ),
            )
    return [found[k] for k in sorted(found)]


def get_model(name: str, search_paths: list[Path] | None = None) -> ModelInfo:
    """The model called ``name``; ``UnknownModel`` lists the available names."""
    models = list_models(search_paths)
    for info in models:
        if info.name == name:
            return info
    names = (
        ", ".join(m.name for m in models)
        or "none (train one with `emulator train` or set $EMULATOR_MODELS_PATH)"
    )
    raise UnknownModel(f"unknown model {name!r}; available: {names}")


_CACHE: dict[tuple, Sampler] = {}
_LOCK = threading.Lock()


def load_sampler(name: str, device: str = "auto", search_paths: list[Path] | None = None) -> Sampler:
    """A ``Sampler`` for model ``name``, cached per (name, device, model path)."""
    info = get_model(name, search_paths)
    dev = resolve_device(device)
    key = (name, str(dev), str(info.path.resolve()))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = Sampler.from_dir(info.path, device=str(dev))
        return _CACHE[key]
