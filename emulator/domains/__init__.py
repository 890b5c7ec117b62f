"""Name -> Domain registry. A new domain is one module plus one ``register_domain`` call.

>>> get_domain("calo").sample_shape
(507,)
"""

from __future__ import annotations

from emulator.domains.base import (
    Condition,
    Domain,
    SampleWriter,
    decode_samples,
    generator_output_size,
    network_sample,
)
from emulator.domains.calo import CaloDomain
from emulator.domains.cosmo import CosmoDomain

__all__ = [
    "Condition",
    "Domain",
    "SampleWriter",
    "available_domains",
    "decode_samples",
    "generator_output_size",
    "get_domain",
    "network_sample",
    "register_domain",
    "unregister_domain",
]

_DOMAINS: dict[str, Domain] = {}


def register_domain(domain: Domain) -> None:
    """Make ``domain`` available under ``domain.name`` (replacing any domain of that name)."""
    missing = [
        attr
        for attr in ("name", "sample_shape", "conditions", "layout", "file_formats", "to_network",
                     "from_network", "condition_features", "observables", "open_writer")
        if not hasattr(domain, attr)
    ]  # fmt: skip
    if missing:
        raise TypeError(f"{type(domain).__name__} is not a Domain: missing {', '.join(missing)}")
    _DOMAINS[domain.name] = domain


def unregister_domain(name: str) -> None:
    """Remove a registered domain (tests that register temporary ones clean up with this)."""
    _DOMAINS.pop(name, None)


def get_domain(name: str, preprocessing: str | None = None) -> Domain:
    """The registered domain called ``name``; KeyError lists the available ones.

    ``preprocessing`` names one of the domain's preprocessing variants (``with_preprocessing``);
    None or the registered domain's own gives the registered domain. ValueError if it has no such variant.
    """
    try:
        domain = _DOMAINS[name]
    except KeyError:
        raise KeyError(f"unknown domain {name!r}; available: {', '.join(available_domains())}") from None
    if preprocessing is None or preprocessing == getattr(domain, "preprocessing", {}).get("name"):
        return domain
    if not hasattr(domain, "with_preprocessing"):
        raise ValueError(f"domain {name!r} has no preprocessing variant {preprocessing!r}")
    return domain.with_preprocessing(preprocessing)


def available_domains() -> list[str]:
    """Names of the registered domains, sorted."""
    return sorted(_DOMAINS)


register_domain(CaloDomain())
register_domain(CosmoDomain())
