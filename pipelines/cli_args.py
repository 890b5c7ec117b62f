"""Argument types and small helpers shared by the ``emulator`` subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from pipelines.cli import CLIError

__all__ = ["check_output", "compression", "positive_int", "progress_bar", "seed_int"]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a non-negative integer seed."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def compression(text: str) -> str | None:
    """argparse type: an HDF5 compression name; ``"none"`` becomes ``None``."""
    if text not in ("lzf", "gzip", "none"):
        raise argparse.ArgumentTypeError(f"{text!r} is not one of lzf, gzip, none")
    return None if text == "none" else text


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse to clobber an existing file (unless ``overwrite``) or write onto a directory."""
    if out.exists() and not overwrite:
        raise CLIError(f"{out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise CLIError(f"--out {out} is a directory; give a file name such as {out / 'showers.h5'}")
    out.parent.mkdir(parents=True, exist_ok=True)


def progress_bar(total: int, unit: str, quiet: bool) -> tqdm:
    """A tqdm bar on stderr (hidden with ``quiet`` or when stderr is not a terminal)."""
    return tqdm(total=total, unit=f" {unit}", unit_scale=True, disable=quiet or None, file=sys.stderr)
