"""The CLI must start where only the core dependencies are installed (e.g. a bare GPU training box)."""

from __future__ import annotations

import subprocess
import sys


def test_cli_parser_builds_without_service_or_validation_extras():
    code = (
        "import sys\n"
        "for name in ('pydantic', 'pydantic_settings', 'fastapi', 'uvicorn', 'ot'):\n"
        "    sys.modules[name] = None  # importing any of them now raises ImportError\n"
        "from pipelines.cli import build_parser\n"
        "build_parser().parse_args(['simulate', 'calo', '--particle', 'e+', '--n', '1', '--seed', '1', '--out', 'x.h5'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
