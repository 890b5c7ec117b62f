"""docker-compose.yml: every command is a real command line, ports, volumes and the env file exist.

No Docker engine is needed: the file is parsed with PyYAML and each command is parsed by the
real CLI parsers (``emulator``'s argparse, ``ray``'s click). If a ``docker-compose`` binary is
on PATH (or $DOCKER_COMPOSE names one; v1.29 from PyPI works without an engine), the test also
runs ``docker-compose config`` on a copy with ``.env`` made from ``.env.example``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
EXPECTED = {"api", "ray-head", "ray-worker"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def command_lines(service: dict) -> list[list[str]]:
    """The command lines a service runs (``sh -c "a && exec b"`` gives [a, b]), as argv lists."""
    cmd = service["command"]
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if argv[:2] == ["sh", "-c"]:
        return [
            [w for w in shlex.split(part) if w != "exec"] for part in " ".join(argv[2:]).split("&&")
        ]
    return [argv]


def test_services_volumes_ports_and_env_file(compose):
    services = compose["services"]
    assert EXPECTED <= set(services)
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for vol in svc["volumes"]:
            source, target = vol.split(":")[:2]
            assert source in declared, f"{name}: volume {source} is not declared"
            assert target == "/data"
        for env_file in [svc["env_file"]] if isinstance(svc.get("env_file"), str) else svc.get("env_file", []):
            assert env_file == ".env"  # made from the committed example, never committed itself
            assert "EMULATOR_API_KEYS=" in (ROOT / ".env.example").read_text()
        for port in svc.get("ports", []):
            host, container = (int(p) for p in str(port).split(":"))
            assert 1 <= host < 65536 and 1 <= container < 65536
        assert "healthcheck" in svc, f"{name} has no health check"
    assert services["api"]["ports"] == ["8000:8000"]
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert (ROOT / services["api"]["build"]["context"] / "Dockerfile").exists()


def test_emulator_commands_are_real(compose):
    """Each ``emulator`` command parses with the real CLI, and its subcommand's --help runs."""
    from pipelines.cli import build_parser

    parser = build_parser()
    seen = set()
    for svc in compose["services"].values():
        for argv in command_lines(svc):
            if argv[0] != "emulator":
                continue
            args = parser.parse_args(argv[1:])  # exits (SystemExit) on an unknown option
            assert callable(args.func)
            seen.add(argv[1])
    assert seen == {"serve"}
    for sub in seen:
        help_run = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", sub, "--help"], capture_output=True, text=True, cwd=ROOT
        )
        assert help_run.returncode == 0, help_run.stderr
        assert "--host" in help_run.stdout and "--ray" in help_run.stdout


def test_ray_commands_parse(compose):
    """``ray start`` / ``ray health-check`` options exist in the installed Ray (click parses them)."""
    pytest.importorskip("ray")
    from ray.scripts.scripts import cli

    n = 0
    for svc in compose["services"].values():
        lines = [*command_lines(svc), [w for w in svc["healthcheck"]["test"] if w != "CMD"]]
        for argv in lines:
            if argv[0] != "ray":
                continue
            command = cli.commands[argv[1]]
            command.make_context(argv[1], argv[2:])  # raises click.UsageError on an unknown option
            n += 1
    assert n >= 3  # head start, worker start, worker health check


def test_docker_compose_config(tmp_path):
    binary = os.environ.get("DOCKER_COMPOSE") or shutil.which("docker-compose")
    if not binary:
        pytest.skip("no docker-compose binary (pip install --no-deps docker-compose==1.29.2 + its deps)")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    run = subprocess.run(
        [binary, "-f", "docker-compose.yml", "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert all(f"  {name}:" in run.stdout for name in EXPECTED)
