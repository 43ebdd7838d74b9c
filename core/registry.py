"""Plug-ins found through entry-point groups: domains (`ledgerlab.domains`) and proposers (`ledgerlab.proposers`)."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from ledgerlab.core.domain_base import as_domain
from ledgerlab.core.protocols import Domain, Proposer
from ledgerlab.errors import ConfigError, DomainError, UnknownDomainError

if TYPE_CHECKING:
    from ledgerlab.core.config import ProposerConfig

GROUP = "ledgerlab.domains"


def domain_entry_points() -> dict[str, EntryPoint]:
    """Installed domains by name, without importing them."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_domain(name: str, options: dict[str, Any] | None = None) -> Domain:
    """Instantiate the domain `name` with its options from ledgerlab.toml."""
    found = domain_entry_points()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UnknownDomainError(
            f"unknown domain {name!r} (installed: {known}); see `ledgerlab domains`, or install a package "
            f"that registers one under the entry-point group {GROUP!r}"
        )
    factory = found[name].load()
    try:
        domain = factory(**(options or {}))
    except TypeError as exc:
        raise ConfigError(f"domain {name!r}: bad option in [domain] of ledgerlab.toml: {exc}") from None
    if not isinstance(domain, Domain):
        raise DomainError(f"domain {name!r} ({found[name].value}) does not implement the Domain protocol")
    return domain


def close_domain(domain: Domain) -> None:
    """Release what a domain holds (servers, pools): its `close()` hook."""
    as_domain(domain).close()


PROPOSER_GROUP = "ledgerlab.proposers"


def proposer_entry_points() -> dict[str, EntryPoint]:
    """Installed proposers by name, without importing them."""
    return {ep.name: ep for ep in entry_points(group=PROPOSER_GROUP)}


def load_proposer(settings: ProposerConfig) -> Proposer:
    """Instantiate the proposer `settings.kind` (knob, random, llm, or a plug-in) with its settings."""
    found = proposer_entry_points()
    if settings.kind not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ConfigError(
            f"unknown proposer {settings.kind!r} (installed: {known}); set [proposer] kind in ledgerlab.toml "
            f"or pass --proposer with one of those"
        )
    return found[settings.kind].load()(settings)
