"""Service settings: one pydantic-settings ``Settings`` read from ``EMULATOR_*`` environment variables.

Every field can be set in the environment, e.g. ``EMULATOR_API_KEYS=key1,key2`` or
``EMULATOR_MAX_N=50000000``. The validator refuses the one unsafe combination: no API keys on a
host other than loopback (anyone on the network could then use the service's compute).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from emulator.sampler import default_torch_threads

__all__ = ["Settings", "default_torch_threads", "is_loopback"]

_LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address) only accepts connections from this machine."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_list(value: object, sep: str) -> object:
    """Accept ``"a,b"`` strings from the environment as well as real lists."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(sep) if item.strip()]
    return value


class Settings(BaseSettings):
    """Configuration of the sample service (environment prefix ``EMULATOR_``)."""

    model_config = SettingsConfigDict(env_prefix="EMULATOR_", extra="ignore")

    host: str = "127.0.0.1"  # bind address; anything but loopback requires api_keys
    port: int = Field(8000, ge=0, le=65535)
    # Accepted keys, sent as "Authorization: Bearer KEY" or "X-API-Key: KEY"; empty = no auth (loopback only).
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_n: int = Field(10_000_000, ge=1)  # largest n one request may ask for
    json_max_n: int = Field(10_000, ge=1)  # largest n for format=json (JSON is ~10x bigger and slower)
    max_concurrent: int = Field(2, ge=1)  # generations running at once (each uses all CPU threads)
    queue_size: int = Field(8, ge=0)  # requests allowed to wait for a slot; beyond that -> 429
    queue_timeout_s: float = Field(30.0, gt=0)  # longest wait for a slot before 429
    retry_after_s: int = Field(5, ge=1)  # Retry-After header sent with 429
    # Directories searched for model folders (os.pathsep-separated in the environment); empty = registry default.
    models_path: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    device: str = "auto"  # torch device for generation: auto, cpu, cuda, cuda:1, ...
    # torch CPU threads, set when the server starts; None leaves torch's default (`emulator serve`
    # passes default_torch_threads(): all cores).
    torch_threads: int | None = Field(None, ge=1)
    tmp_dir: Path | None = None  # where HDF5 responses are built before streaming (default: system temp)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        return _split_list(value, ",")

    @field_validator("models_path", mode="before")
    @classmethod
    def _parse_paths(cls, value: object) -> object:
        return _split_list(value, os.pathsep)

    @model_validator(mode="after")
    def _refuse_open_network(self) -> Settings:
        if not self.api_keys and not is_loopback(self.host):
            raise ValueError(
                f"refusing to serve on {self.host!r} without API keys: set EMULATOR_API_KEYS=key1,key2 "
                "(clients send 'Authorization: Bearer KEY' or 'X-API-Key: KEY') or bind to 127.0.0.1"
            )
        return self
