"""Checkpoints on disk: training checkpoints (resume) and shipped model directories (sampling).

Nothing is ever pickled: tensors go to safetensors, everything else to JSON.

Shipped model directory (``models/<name>/``)::

    config.json            {"format_version", "model_class", "model_args", "domain", "sample_shape",
                            "condition_names", "preprocessing"} — enough to rebuild the generator
    generator.safetensors  EMA generator weights, float32
    card.json              name, domain, version, conditions, training recipe, hyperparameters,
                           training time and hardware, validation summary
    MODEL_CARD.md          the card for humans (YAML header + body), rendered from card.json
    report/                the validation report (written by ``emulator validate``)

Training checkpoint (``<run_dir>/checkpoints/step-XXXXXXXX/``)::

    tensors.safetensors    "generator.*", "ema.*", "critic.*", "optim_g.*", "optim_d.*", "rng.*"
    state.json             step, resolved training config, optimizer hyperparameters, numpy RNG state, ...

plus ``<run_dir>/checkpoints/latest.json`` naming the newest complete one. A checkpoint
directory is written under a temporary name and renamed into place, and ``latest.json``
is replaced atomically, so an interruption at any moment leaves the previous one usable.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from emulator.domains import Domain, get_domain
from emulator.models import build_model

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "InvalidModelDir",
    "LoadedModel",
    "atomic_write_text",
    "export_model",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model_dir",
    "optimizer_from_tensors",
    "optimizer_to_tensors",
    "record_validation",
    "render_model_card",
    "save_checkpoint",
    "validation_summary",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "generator.safetensors"
CARD_FILE = "card.json"
CARD_MD_FILE = "MODEL_CARD.md"


class InvalidModelDir(ValueError):
    """A model directory is missing a file or has an unreadable/incompatible config."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` as safetensors to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata={"format": "pt", **(metadata or {})}
        )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- shipped model directories ----------------------------------------------------------------


@dataclass
class LoadedModel:
    """A generator rebuilt from a model directory, in eval mode."""

    generator: nn.Module
    config: dict
    card: dict
    domain: Domain
    path: Path


def export_model(path: str | Path, generator: nn.Module, domain: Domain, card: dict) -> Path:
    """Write ``generator`` (float32) with its config and card into the shipped layout at ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "model_class": type(generator).__name__,
        "model_args": generator.config.to_dict(),
        "domain": domain.name,
        "sample_shape": list(domain.sample_shape),
        "condition_names": [c.name for c in domain.conditions],
        "preprocessing": getattr(domain, "preprocessing", {}),
    }
    state = {k: v.float() for k, v in generator.state_dict().items()}
    atomic_save_tensors(state, path / WEIGHTS_FILE)
    atomic_write_text(path / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    write_card(path, card)
    return path


def write_card(model_dir: str | Path, card: dict) -> None:
    """Write ``card`` as the model directory's ``card.json`` and its rendering ``MODEL_CARD.md`` (atomically each)."""
    model_dir = Path(model_dir)
    atomic_write_text(model_dir / CARD_FILE, json.dumps(card, indent=2, default=str) + "\n")
    atomic_write_text(model_dir / CARD_MD_FILE, render_model_card(card))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidModelDir(f"{path.parent}: missing {path.name}; is this a model directory?") from None
    except json.JSONDecodeError as exc:
        raise InvalidModelDir(f"{path}: not valid JSON ({exc})") from None


def load_model_dir(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the generator of a shipped model directory from config.json + generator.safetensors."""
    path = Path(path)
    if not path.is_dir():
        raise InvalidModelDir(f"{path}: not a directory")
    config = _read_json(path / CONFIG_FILE)
    card = _read_json(path / CARD_FILE)
    if config.get("format_version") != FORMAT_VERSION:
        raise InvalidModelDir(
            f"{path}: config format_version {config.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    try:
        domain = get_domain(config["domain"], (config.get("preprocessing") or {}).get("name"))
        generator = build_model(config["model_class"], config["model_args"])
    except KeyError as exc:
        raise InvalidModelDir(f"{path / CONFIG_FILE}: {exc}") from None
    except ValueError as exc:
        raise InvalidModelDir(f"{path / CONFIG_FILE}: {exc}") from None
    if list(domain.sample_shape) != list(config.get("sample_shape", domain.sample_shape)):
        raise InvalidModelDir(
            f"{path}: sample_shape {config['sample_shape']} != domain's {list(domain.sample_shape)}"
        )
    expected = json.loads(json.dumps(getattr(domain, "preprocessing", {})))  # normalise tuples/floats as JSON
    if config.get("preprocessing", expected) != expected:
        raise InvalidModelDir(
            f"{path}: trained with preprocessing {config['preprocessing']}, but the {domain.name!r} domain now uses "
            f"{expected}; retrain or check out the code version the model was trained with"
        )
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise InvalidModelDir(f"{path}: missing {WEIGHTS_FILE}")
    try:
        generator.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as exc:
        raise InvalidModelDir(f"{weights}: weights do not match the config ({exc})") from None
    generator.to(device).eval().requires_grad_(False)
    return LoadedModel(generator=generator, config=config, card=card, domain=domain, path=path)


def _yaml_scalar(v: Any) -> str:
    return json.dumps(v) if isinstance(v, str) else json.dumps(v, default=str)


def render_model_card(card: dict) -> str:
    """MODEL_CARD.md: a YAML header (domain, conditions, data, metrics, report link) and a short body."""
    head = {
        "name": card.get("name"),
        "domain": card.get("domain"),
        "version": card.get("version"),
        "conditions": card.get("conditions"),
        "training_data": card.get("training_data"),
        "validation": card.get("validation"),
        "report": card.get("report", "report/"),
    }
    lines = ["---"] + [f"{k}: {_yaml_scalar(v)}" for k, v in head.items()] + ["---", ""]
    lines.append(f"# {card.get('name', 'model')}")
    lines.append("")
    lines.append(card.get("description", "Conditional WGAN-GP emulator."))
    lines.append("")
    validation = card.get("validation")
    if validation:
        verdict = "all met" if validation.get("passed") else "NOT all met"
        lines += [f"**Quality thresholds ({validation.get('thresholds')}): {verdict}** "
                  f"(report: `{validation.get('report')}`)", "",
                  "| check | threshold | measured | where | |", "| --- | --- | --- | --- | --- |"]
        for c in validation.get("checks", []):
            mark = "pass" if c.get("passed") else "FAIL"
            value = c.get("value")
            shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
            if isinstance(c.get("value_err"), (int, float)):
                shown += f" ± {c['value_err']:.2g}"
            if c.get("resolved") is False:  # the samples cannot show a deviation of the threshold's size
                mark += " (unresolved: in some bin the statistical error cannot resolve the threshold)"
            lines.append(f"| {c.get('name')} | {c.get('threshold')} | {shown} | {c.get('where') or ''} | {mark} |")
        lines.append("")
    for title, key in (("Training data", "training_data"), ("Hyperparameters", "hyperparameters"),
                       ("Training", "training"), ("Output calibration", "calibration"),
                       ("Validation", "validation")):  # fmt: skip
        if card.get(key):
            lines += [f"## {title}", "", "```json", json.dumps(card[key], indent=2, default=str), "```", ""]
    lines += [
        "## Limitations",
        "",
        card.get(
            "limitations",
            "Valid only inside the trained condition ranges; extrapolation is refused unless explicitly "
            "allowed and is then unvalidated. Quality numbers refer to the reference simulator, not to data.",
        ),
        "",
    ]
    return "\n".join(lines)


def validation_summary(metrics: dict, report: str) -> dict:
    """The card's ``validation`` entry: the headline numbers and every threshold check of a report."""
    checks = [
        {k: c.get(k) for k in ("name", "description", "threshold", "value", "value_err", "where", "passed", "resolved")}
        for c in metrics.get("checks", [])
    ]
    return {
        "passed": bool(metrics.get("passed")),
        "thresholds": metrics.get("thresholds", {}).get("name"),
        "samples": metrics.get("samples"),
        "auc_high_level": metrics.get("auc_high_level"),
        "auc_high_level_err": metrics.get("auc_high_level_err"),
        "auc_low_level": metrics.get("auc_low_level"),
        "auc_low_level_err": metrics.get("auc_low_level_err"),
        "fpd_x1e3": metrics.get("fpd_x1e3"),
        "kpd_x1e3": metrics.get("kpd_x1e3"),
        "checks": checks,
        "report": report,
    }


def record_validation(model_dir: str | Path, metrics_path: str | Path) -> dict:
    """Copy a validation report's summary into the model's ``card.json`` and ``MODEL_CARD.md``.

    The report (``metrics.json`` + ``report.html``) stays where ``emulator validate`` wrote it;
    the card links to it relative to the model directory when it lies inside it.
    """
    model_dir, metrics_path = Path(model_dir), Path(metrics_path)
    card = _read_json(model_dir / CARD_FILE)
    metrics = json.loads(metrics_path.read_text())
    report = metrics_path.parent.resolve()
    try:
        report_ref = str(report.relative_to(model_dir.resolve()) / "report.html")
    except ValueError:
        report_ref = str(report / "report.html")
    card["validation"] = validation_summary(metrics, report_ref)
    card["report"] = report_ref
    write_card(model_dir, card)
    return card["validation"]


# -- training checkpoints ----------------------------------------------------------------------


def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON metadata."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}.{idx}.{key}"] = val
            else:
                scalars[f"{idx}.{key}"] = val
    # a learning rate kept in a tensor (a schedule inside a CUDA graph) is stored as its value
    groups = [
        {k: (float(v) if k == "lr" and isinstance(v, torch.Tensor) else v) for k, v in group.items()}
        for group in sd["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, prefix: str
) -> None:
    """Inverse of ``optimizer_to_tensors``: load the state into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if key.startswith(prefix + "."):
            idx, name = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[name] = val
    for key, val in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    run_dir: str | Path, step: int, tensors: dict[str, torch.Tensor], state: dict, keep: int = 2
) -> Path:
    """Write checkpoint ``step`` atomically under ``run_dir/checkpoints`` and keep the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / "tensors.safetensors")
        )
        (tmp / "state.json").write_text(json.dumps(state, indent=1, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest.json", json.dumps({"step": step, "path": final.name}) + "\n")
    old = sorted(p for p in root.glob("step-*") if p.is_dir())
    for p in old[: max(0, len(old) - keep)]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``run_dir`` (via latest.json), or None."""
    root = Path(run_dir) / "checkpoints"
    try:
        latest = json.loads((root / "latest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    path = root / latest["path"]
    return path if (path / "state.json").exists() else None


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a training checkpoint directory: (tensors on ``device``, state dict)."""
    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "tensors.safetensors"), device=str(device))
    return tensors, state
