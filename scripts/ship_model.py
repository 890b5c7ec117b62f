"""Ship a trained, validated model: replace ``models/<name>`` with an exported model directory.

    python scripts/ship_model.py runs/g16/models/calo-gamma models/calo-gamma \\
        --version 1.6.0 --report /tmp/val/gamma16 --history "Trained from scratch with recipe 1.6.0 ..."

1. copies the export (``emulator train --out``: weights, config.json, card.json) beside the target;
2. sets the version in the card and config and the card's ``training.history`` (how the weights came
   to be: recipe, steps, what they continue);
3. copies the validation report (``emulator validate --out``) into ``<target>/report`` and records its
   summary in the card (``emulator.checkpoint.record_validation``);
4. swaps the new directory in with two renames, so a crash never leaves a half-copied model.

Prints whether every threshold passed. The model is shipped whatever the verdict: deciding whether
to ship is the maintainer's call, made on the numbers the card then carries.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from emulator.checkpoint import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, atomic_write_text, record_validation


def _set_version(model_dir: Path, version: str, history: str) -> None:
    card = json.loads((model_dir / CARD_FILE).read_text())
    card["version"] = version
    card.setdefault("hyperparameters", {}).setdefault("train", {})["version"] = version
    card.setdefault("training", {})["history"] = history
    atomic_write_text(model_dir / CARD_FILE, json.dumps(card, indent=2, default=str) + "\n")
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    if "version" in config:
        config["version"] = version
        atomic_write_text(model_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")


def ship(export: Path, target: Path, version: str, history: str, report: Path) -> dict:
    """Replace ``target`` by ``export`` with ``version``, ``history`` and ``report``; return the validation summary."""
    for need in (export / WEIGHTS_FILE, export / CONFIG_FILE, export / CARD_FILE):
        if not need.is_file():
            raise FileNotFoundError(f"{need} is missing: is {export} a model exported by `emulator train --out`?")
    if not (report / "metrics.json").is_file():
        raise FileNotFoundError(f"{report / 'metrics.json'} is missing: run `emulator validate --out {report}` first")
    staging = target.with_name(f".{target.name}.shipping")
    retired = target.with_name(f".{target.name}.retired")
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(export, staging, ignore=shutil.ignore_patterns("report"))
    _set_version(staging, version, history)
    shutil.copytree(report, staging / "report")
    summary = record_validation(staging, staging / "report" / "metrics.json")
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", type=Path, help="model directory written by `emulator train --out`")
    ap.add_argument("target", type=Path, help="shipped model directory to replace, e.g. models/calo-gamma")
    ap.add_argument("--version", required=True, help="version recorded in the card and config, e.g. 1.6.0")
    ap.add_argument("--history", required=True, help="how these weights were trained (card training.history)")
    ap.add_argument("--report", type=Path, required=True, help="directory written by `emulator validate --out`")
    args = ap.parse_args(argv)
    try:
        summary = ship(args.export, args.target, args.version, args.history, args.report)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = [c["name"] for c in summary["checks"] if not c["passed"]]
    print(f"shipped {args.target} {args.version}: thresholds {'all passed' if not failed else 'failed: ' + ', '.join(failed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
