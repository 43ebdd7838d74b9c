"""The marketing domain: each run is a concurrent A/B test of a candidate page against the incumbent.

    domain = MarketingDomain(visitors_per_run=25_000)          # starts its own market on first run
    domain = MarketingDomain(market_url="http://host:8765")    # or uses a running one
    result = domain.run(request)                               # value: treatment conversion rate
    domain.close()
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import httpx

from ledgerlab.core.errors import ConfigError, InvalidCandidate
from ledgerlab.core.protocols import Files, Guardrail, Knob, MetricSpec, RunRequest, RunResult
from ledgerlab.domains.marketing.client import MarketClient, MarketError
from ledgerlab.domains.marketing.variant import KNOBS, VARIANT_FILE, template_text, variant_from_files

SRM_ALPHA = 0.001  # a sample-ratio mismatch this unlikely means the split, not chance, is broken
ARMS = ("control", "treatment")
WEEK_HOURS = 168  # a run starts at an hour of the week drawn from its seed


@dataclass(frozen=True)
class Settings:
    """The domain's options (constructor keywords, or `[domain.options]` in ledgerlab.toml)."""

    market_url: str | None = None  # None: start an embedded market service on 127.0.0.1
    # Both arms; ~6.3% relative standard error per run at a 4% rate. Small runs are cheap looks: a sequential
    # judge drops most bad ideas after one, and keeps adding runs to the promising ones.
    visitors_per_run: int = 25_000
    market_seed: int | None = None  # None: the canonical market; an int draws another market
    null_market: bool = False  # A/A mode: no lever matters
    timeout_s: float = 10.0
    retries: int = 3
    srm_fault: float = 0.0  # testing aid: drop this share of the treatment's visitors to trigger SRM
    metric: str = "conversion_rate"  # or "revenue_per_visitor" (judged on winsorized revenue; no guardrail)
    revenue_margin: float = 0.0  # the revenue guardrail tolerates a loss of this share of revenue per visitor

    @classmethod
    def from_options(cls, options: Mapping[str, Any], base: "Settings | None" = None) -> "Settings":
        """Validated settings; ConfigError for an unknown option or a bad value."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"marketing: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        settings = replace(base or cls(), **options)
        settings._check()
        return settings

    def _check(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"marketing: option {name} = {getattr(self, name)!r} {why}")

        if self.market_url is not None and not (isinstance(self.market_url, str)
                                                and self.market_url.startswith(("http://", "https://"))):
            raise bad("market_url", "must be an http(s) URL")
        if not _is_int(self.visitors_per_run) or not 2 <= self.visitors_per_run <= 10_000_000:
            raise bad("visitors_per_run", "must be an integer from 2 to 10,000,000")
        if self.market_seed is not None and not _is_int(self.market_seed):
            raise bad("market_seed", "must be an integer")
        if not isinstance(self.null_market, bool):
            raise bad("null_market", "must be true or false")
        if not _is_number(self.timeout_s) or self.timeout_s <= 0:
            raise bad("timeout_s", "must be a positive number")
        if not _is_int(self.retries) or not 0 <= self.retries <= 10:
            raise bad("retries", "must be an integer from 0 to 10")
        if not _is_number(self.srm_fault) or not 0 <= self.srm_fault < 1:
            raise bad("srm_fault", "must be a share in [0, 1)")
        if self.metric not in METRICS:
            raise bad("metric", f"is not one of {', '.join(METRICS)}")
        if not _is_number(self.revenue_margin) or not 0 <= self.revenue_margin < 1:
            raise bad("revenue_margin", "must be a share in [0, 1), e.g. 0.01 to tolerate a 1% loss")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Revenue per order is lognormal, so revenue is tested winsorized at the market's cap (the heavy-tail-aware
# test), both as a metric and as conversion's guardrail: a price cut can buy conversions at a loss.
_REVENUE_SUMS = ("trials", "revenue_wsum", "revenue_wsumsq")
METRICS = {
    # α: A/B practice; at this traffic 0.01 keeps too few real changes.
    "conversion_rate": MetricSpec(name="conversion_rate", direction="maximize", kind="proportion", delta=0.0,
                                  alpha=0.05),
    "revenue_per_visitor": MetricSpec(name="revenue_per_visitor", direction="maximize", delta=0.0, unit="$",
                                      alpha=0.05, sums=_REVENUE_SUMS),
}
REVENUE_GUARDRAIL = Guardrail(name="revenue_per_visitor", direction="maximize", n_key=_REVENUE_SUMS[0],
                              sum_key=_REVENUE_SUMS[1], sumsq_key=_REVENUE_SUMS[2], alpha=0.05, unit="$")


class MarketingDomain:
    """A landing page (`variant.toml`) A/B-tested against a simulated market; metric: conversion rate."""

    name = "marketing"
    metric = METRICS["conversion_rate"]  # the `metric` option picks another one per instance
    guardrails: tuple[Guardrail, ...] = (REVENUE_GUARDRAIL,)
    design = "concurrent"
    budget_unit = "visitors"
    description = (Path(__file__).parent / "program.md").read_text(encoding="utf-8")

    def __init__(self, *, transport: httpx.BaseTransport | None = None, **options: Any) -> None:
        # `transport` is a test double for the HTTP client (httpx.MockTransport), not a user option.
        self.settings = Settings.from_options(options)
        self.metric = METRICS[self.settings.metric]
        guard = REVENUE_GUARDRAIL.model_copy(update={"margin": float(self.settings.revenue_margin)})
        self.guardrails = (guard,) if self.settings.metric == "conversion_rate" else ()
        self._transport = transport
        self._lock = threading.Lock()
        self._servers: dict[tuple[int | None, bool], Any] = {}  # (seed, null) -> MarketServer
        self._clients: dict[tuple[str, float, int], MarketClient] = {}

    # ------------------------------------------------------------------------------------ artifact

    def baseline(self) -> dict[str, str]:
        return {VARIANT_FILE: template_text()}

    def knobs(self) -> Sequence[Knob]:
        return KNOBS

    def validate(self, files: Files) -> None:
        variant_from_files(files)

    def environment(self) -> dict[str, Any]:
        """What a campaign records about the market it ran against."""
        s = self.settings
        with self._lock:
            server = self._servers.get((s.market_seed, s.null_market))
        url = s.market_url or (server.url if server else None)
        return {"market": "remote" if s.market_url else "embedded", "market_url": url,
                "market_seed": s.market_seed, "null_market": s.null_market, "visitors_per_run": s.visitors_per_run}

    # ------------------------------------------------------------------------------------ runs

    def run(self, request: RunRequest) -> RunResult:
        """One A/B test: control = the incumbent, treatment = the candidate, same traffic window."""
        started = time.monotonic()
        try:
            settings = Settings.from_options(request.options, base=self.settings) if request.options \
                else self.settings
            control_files = request.control_files if request.control_files is not None else self.baseline()
            arms = {"control": variant_from_files(control_files).to_dict(),
                    "treatment": variant_from_files(request.files).to_dict()}
        except (ConfigError, InvalidCandidate) as exc:
            return RunResult(status="crashed", error=str(exc), duration_s=time.monotonic() - started)
        try:
            client = self._client(settings)
            fault = {"drop": {"treatment": settings.srm_fault}} if settings.srm_fault else None
            seed = traffic_seed(request, settings.market_seed)
            experiment_id = client.create_experiment(
                arms, visitors=settings.visitors_per_run, seed=seed,
                start_hour=random.Random(seed).randrange(WEEK_HOURS), fault=fault,
            )
            experiment = client.get_experiment(experiment_id)
        except (MarketError, OSError) as exc:
            return RunResult(status="crashed", error=f"market unavailable: {exc}",
                             duration_s=time.monotonic() - started)
        return _result(experiment, time.monotonic() - started, self.metric.name)

    def close(self) -> None:
        """Stop the embedded market service and close connections."""
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        for server in servers:
            server.stop()

    def _client(self, settings: Settings) -> MarketClient:
        url = settings.market_url or self._embedded_url(settings)
        key = (url, float(settings.timeout_s), settings.retries)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = MarketClient(url, timeout_s=settings.timeout_s, retries=settings.retries,
                                                  transport=self._transport)
            return self._clients[key]

    def _embedded_url(self, settings: Settings) -> str:
        """The URL of this domain's own market service, started on first use."""
        key = (settings.market_seed, settings.null_market)
        with self._lock:
            if key not in self._servers:
                from ledgerlab.domains.marketing.service import start_market_server  # numpy only when needed

                self._servers[key] = start_market_server(seed=key[0], null=key[1])
            return self._servers[key].url


# ---------------------------------------------------------------------------------------- results


def traffic_seed(request: RunRequest, market_seed: int | None) -> int:
    """The visitors' seed: each A/B test gets its own traffic (the replicate seed alone would make every
    hypothesis tested on one incumbent replay the same visitors, so their errors would be shared); a retry
    (attempt > 1) gets new visitors, so an invalid run (sample-ratio mismatch) is not repeated verbatim."""
    key = f"{request.seed}:{request.candidate_id}:{request.control_candidate_id}:{market_seed}"
    if request.attempt > 1:
        key += f":{request.attempt}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 2**31


def arm_metrics(arm: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics of one arm: successes/trials for the proportion test, revenue sums for the others."""
    visitors, conversions = int(arm["visitors"]), int(arm["conversions"])
    return {
        "successes": conversions,
        "trials": visitors,
        "conversion_rate": conversions / visitors if visitors else None,
        "revenue_per_visitor": float(arm["revenue_sum"]) / visitors if visitors else None,
        "revenue_sum": float(arm["revenue_sum"]),
        "revenue_sumsq": float(arm["revenue_sumsq"]),
        "revenue_wsum": float(arm["revenue_wsum"]),
        "revenue_wsumsq": float(arm["revenue_wsumsq"]),
    }


def srm_p_value(observed: Sequence[int], shares: Sequence[float]) -> float:
    """Chi-square goodness-of-fit p-value of the arms' visitor counts against the intended split."""
    from scipy.stats import chisquare  # scipy only when a run finishes

    total = sum(observed)
    expected = [total * share / sum(shares) for share in shares]
    return float(chisquare(observed, expected).pvalue)


def _result(experiment: Mapping[str, Any], duration_s: float, metric: str = "conversion_rate") -> RunResult:
    try:
        control, treatment = (arm_metrics(experiment["arms"][name]) for name in ARMS)
        split = experiment.get("split") or {name: 0.5 for name in ARMS}
        shares = [float(split[name]) for name in ARMS]
    except (KeyError, TypeError, ValueError) as exc:
        return RunResult(status="crashed", error=f"market sent a malformed experiment: {exc!r}",
                         duration_s=duration_s)
    units = control["trials"] + treatment["trials"]
    # The run's units (both arms) are counted once, on the treatment side, so a budget summing both is right.
    metrics, control_metrics = {**treatment, "units": units}, {**control, "units": 0}
    base = dict(metrics=metrics, control_metrics=control_metrics, duration_s=duration_s,
                value=treatment[metric], control_value=control[metric])
    if not control["trials"] or not treatment["trials"]:
        return RunResult(status="invalid", error="an arm received no visitors", **base)
    p_value = srm_p_value([control["trials"], treatment["trials"]], shares)
    metrics["srm_p_value"] = p_value
    if p_value < SRM_ALPHA:
        return RunResult(status="invalid", **base, error=(
            f"sample ratio mismatch: control {control['trials']:,} vs treatment {treatment['trials']:,} "
            f"visitors for an intended {shares[0]:.0%}/{shares[1]:.0%} split (chi-square p = {p_value:.2g})"))
    return RunResult(status="finished", **base)
