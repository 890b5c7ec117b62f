"""The ``emulator`` command: one entry point whose subcommands are thin wrappers over library calls.

Each subcommand lives in its own module under ``pipelines/`` and exposes
``add_parser(subparsers)``, which registers its options and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ("simulate", "train", "calibrate", "serve", "generate", "models", "validate")


class CLIError(Exception):
    """A user error: printed as ``emulator: error: ...`` with exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="emulator",
        description="Fast, validated surrogate samples of calorimeter showers and cosmic-web density "
        "fields: simulate references, train WGAN-GP emulators, generate, validate and serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"pipelines.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"emulator {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
