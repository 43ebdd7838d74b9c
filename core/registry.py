"""Plug-ins found through entry-point groups, one per kind; the built-ins register the same way (pyproject.toml).

    ledgerlab.domains     a Domain class, called with the [domain] options          load_domain(name, options)
    ledgerlab.proposers   a Proposer class, called with its ProposerConfig          load_proposer(config)
    ledgerlab.judges      a Judge class (core/judge.py's JudgeBase), called with    load_judge(settings)
                          the resolved JudgeSettings
    ledgerlab.executors   a factory (config, domain, domain_name, domain_options,   load_executor(config, ...)
                          **extra) -> Executor

An unknown name is a one-line ConfigError (UnknownDomainError for domains) that lists the installed ones.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from ledgerlab.core.domain_base import as_domain
from ledgerlab.core.protocols import Domain, Executor, Proposer
from ledgerlab.errors import ConfigError, DomainError, UnknownDomainError

if TYPE_CHECKING:
    from ledgerlab.core.config import ExecutorConfig, ProposerConfig
    from ledgerlab.core.judge import Judge, JudgeBase
    from ledgerlab.core.judge_settings import JudgeSettings

GROUP = "ledgerlab.domains"
PROPOSER_GROUP = "ledgerlab.proposers"
JUDGE_GROUP = "ledgerlab.judges"
EXECUTOR_GROUP = "ledgerlab.executors"
# An empty group means the installed metadata predates it (or a stale ledgerlab.egg-info in the working folder
# shadows it): even the built-ins register by entry point.
STALE = "reinstall ledgerlab (`pip install -e .` in a checkout) to register its own"


def installed(group: str) -> dict[str, EntryPoint]:
    """The plug-ins of one group by name, without importing them."""
    return {ep.name: ep for ep in entry_points(group=group)}


@cache  # names only, for validating settings (JudgeSettings is built often): entry_points() scans every package
def _names(group: str) -> tuple[str, ...]:
    return tuple(sorted(installed(group)))


def known_name(group: str, name: str, what: str) -> str:
    """`name` when a plug-in of `group` has it; else ValueError listing the installed ones (for a validator)."""
    if name not in _names(group) and name not in installed(group):  # installed(): one installed since
        known = ", ".join(map(repr, _names(group))) or f"none: {STALE}"
        raise ValueError(f"unknown {what} {name!r} (installed: {known})")
    return name


def _entry_point(group: str, name: str, what: str, hint: str) -> EntryPoint:
    found = installed(group)
    if name not in found:
        known = ", ".join(sorted(found)) or f"none: {STALE}"
        raise ConfigError(f"unknown {what} {name!r} (installed: {known}); {hint}")
    return found[name]


def _load(entry: EntryPoint, what: str) -> Any:
    """Import what an entry point names; a broken plug-in is one ConfigError line naming its package."""
    try:
        return entry.load()
    except Exception as exc:  # noqa: BLE001 - any failure inside a plug-in's import is that plug-in's
        package = f" of package {entry.dist.name!r}" if entry.dist is not None else ""
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"{what} {entry.name!r} ({entry.value}{package}) cannot be loaded: "
                          f"{type(exc).__name__}: {detail}; fix or reinstall that package") from None


# ------------------------------------------------------------------------------------------ domains


def domain_entry_points() -> dict[str, EntryPoint]:
    """Installed domains by name, without importing them."""
    return installed(GROUP)


def load_domain(name: str, options: dict[str, Any] | None = None) -> Domain:
    """Instantiate the domain `name` with its options from ledgerlab.toml."""
    found = domain_entry_points()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UnknownDomainError(
            f"unknown domain {name!r} (installed: {known}); see `ledgerlab domains`, or install a package "
            f"that registers one under the entry-point group {GROUP!r}"
        )
    factory = _load(found[name], "domain")
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


# ---------------------------------------------------------------------------------------- proposers


def proposer_entry_points() -> dict[str, EntryPoint]:
    """Installed proposers by name, without importing them."""
    return installed(PROPOSER_GROUP)


def load_proposer(settings: ProposerConfig) -> Proposer:
    """Instantiate the proposer `settings.kind` (knob, random, llm, or a plug-in) with its settings."""
    hint = "set [proposer] kind in ledgerlab.toml or pass --proposer with one of those"
    return _load(_entry_point(PROPOSER_GROUP, settings.kind, "proposer", hint), "proposer")(settings)


# ------------------------------------------------------------------------------------------- judges


@cache  # the loop reads a judge's traits on every pass (JudgeSettings.seed_window): look the class up once
def judge_class(kind: str) -> type[JudgeBase]:
    """The judge class `kind` names (stats, fixed, greedy, or a plug-in), imported."""
    hint = "set [judge] kind in ledgerlab.toml or pass --judge with one of those"
    return _load(_entry_point(JUDGE_GROUP, kind, "judge", hint), "judge")


def load_judge(settings: JudgeSettings) -> Judge:
    """The judge `settings.kind` names, built on the resolved settings."""
    return judge_class(settings.kind)(settings)


# ---------------------------------------------------------------------------------------- executors


def load_executor(config: ExecutorConfig, domain: Domain | None, domain_name: str,
                  domain_options: dict[str, Any] | None = None, **extra: Any) -> Executor:
    """The executor `config.kind` names (local, ray, or a plug-in), with `config.workers` slots."""
    hint = "set [executor] kind in ledgerlab.toml or pass --executor with one of those"
    factory = _load(_entry_point(EXECUTOR_GROUP, config.kind, "executor", hint), "executor")
    return factory(config, domain, domain_name, dict(domain_options or {}), **extra)
