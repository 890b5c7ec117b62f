"""``emulator models``: list the available models (shipped in models/ and on $EMULATOR_MODELS_PATH)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parser", "run", "summarise"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``emulator models``."""
    p = subparsers.add_parser(
        "models",
        help="list available models and their cards",
        description=__doc__
        + "\nSearch path: the repo's models/ then $EMULATOR_MODELS_PATH (os.pathsep-separated).",
    )
    p.add_argument("--path", type=Path, action="append", help="search these directories instead (repeatable)")
    p.add_argument("--json", action="store_true", help="print the full cards as JSON")
    p.set_defaults(func=run)


def _conditions(card: dict) -> str:
    return ", ".join(
        f"{c['name']} {c['low']:g}-{c['high']:g} {c['unit']}" for c in card.get("conditions") or []
    )


def _validation(card: dict) -> str:
    """One line: the headline validation metrics when present, else the training quick-val score."""
    val = card.get("validation")
    if isinstance(val, dict) and val:
        items = [(k, v) for k, v in val.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return ", ".join(f"{k}={v:.3g}" for k, v in items[:4]) or "see report/"
    score = (card.get("training") or {}).get("quick_val_score")
    return f"quick-val {score:.3g} (no report)" if isinstance(score, (int, float)) else "not validated"


def summarise(infos: list) -> list[dict]:
    """Rows of the table: name, domain, version, particle, conditions, validation, path."""
    return [
        {
            "name": i.name,
            "domain": i.domain,
            "version": i.version,
            "particle": i.card.get("particle") or "-",
            "conditions": _conditions(i.card),
            "validation": _validation(i.card),
            "path": str(i.path),
        }
        for i in infos
    ]


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON)."""
    from emulator.registry import list_models

    infos = list_models(args.path)
    if args.json:
        print(
            json.dumps(
                [{"name": i.name, "path": str(i.path), "card": i.card} for i in infos], indent=2, default=str
            )
        )
        return 0
    if not infos:
        print(
            "no models found (train one with `emulator train`, or add a directory to $EMULATOR_MODELS_PATH)"
        )
        return 0
    rows = summarise(infos)
    cols = ("name", "domain", "version", "particle", "conditions", "validation")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols))
    return 0
