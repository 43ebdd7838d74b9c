"""The marketing domain: each run is a concurrent randomized test of candidate pages against the incumbent.

By default a run tests up to three candidates factorially (each visitor gets each candidate's change at
random, domains/marketing/factorial.py); `candidates_per_run = 1` makes every run one A/B test, and
`factorial = false` an A/B/n test against one shared control.

    domain = MarketingDomain(visitors_per_run=25_000)          # starts its own market on first run
    domain = MarketingDomain(market_url="http://host:8765")    # or uses a running one
    result = domain.run(request)                               # value: treatment conversion rate
    domain.close()
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import httpx

from ledgerlab.core.domain_base import DomainBase
from ledgerlab.core.protocols import Files, Guardrail, Knob, MetricSpec, RunRequest, RunResult
from ledgerlab.domains.marketing import factorial
from ledgerlab.domains.marketing.client import MarketClient, MarketError
from ledgerlab.domains.marketing.variant import KNOBS, VARIANT_FILE, template_text, variant_from_files
from ledgerlab.errors import ConfigError, InvalidCandidate

SRM_ALPHA = 0.001  # a sample-ratio mismatch this unlikely means the split, not chance, is broken
CONTROL = "control"
MAX_CANDIDATES = 8
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
    # A/B/n: up to this many candidates n share one run's window and control arm (see `allocation`). A full
    # run gets (n + 1) / 2 times visitors_per_run, so a look at one candidate costs (n + 1) / 2n of an A/B
    # run's visitors (2/3 at n = 3) and measures its difference a little more precisely.
    candidates_per_run: int = 3
    # Each visitor gets each candidate's change at random and independently (a factorial run,
    # domains/marketing/factorial.py), so every candidate is compared on all the run's visitors: at 2M
    # visitors the final page converts +22% over the baseline instead of +15% with one candidate per run
    # (bench/decisions.py). False: each visitor sees one of the n + 1 pages (A/B/n against one control).
    factorial: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any], base: Settings | None = None) -> Settings:
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
        if not isinstance(self.factorial, bool):
            raise bad("factorial", "must be true or false")
        if not _is_int(self.candidates_per_run) or not 1 <= self.candidates_per_run <= MAX_CANDIDATES:
            raise bad("candidates_per_run", f"must be an integer from 1 (A/B) to {MAX_CANDIDATES} (A/B/n)")


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


class MarketingDomain(DomainBase):
    """A landing page (`variant.toml`) A/B-tested against a simulated market; metric: conversion rate."""

    name = "marketing"
    metric = METRICS["conversion_rate"]  # the `metric` option picks another one per instance
    guardrails: tuple[Guardrail, ...] = (REVENUE_GUARDRAIL,)
    design = "concurrent"
    runs_generated_code = False  # variant.toml is data read by our own code: nothing to sandbox
    budget_unit = "visitors"
    description = (Path(__file__).parent / "program.md").read_text(encoding="utf-8")

    def __init__(self, *, transport: httpx.BaseTransport | None = None, **options: Any) -> None:
        # `transport` is a test double for the HTTP client (httpx.MockTransport), not a user option.
        self.settings = Settings.from_options(options)
        self.metric = METRICS[self.settings.metric]
        guard = REVENUE_GUARDRAIL.model_copy(update={"margin": float(self.settings.revenue_margin)})
        self.guardrails = (guard,) if self.settings.metric == "conversion_rate" else ()
        self.candidates_per_run = self.settings.candidates_per_run  # read by the loop (A/B/n windows)
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

    def run_design(self) -> dict[str, Any]:
        """What the runs measure (a campaign keeps it when resumed): candidates per run, factorial or not."""
        return {"candidates_per_run": self.settings.candidates_per_run, "factorial": self.settings.factorial}

    def option_defaults(self) -> dict[str, Any]:
        """Every option as resolved (`ledgerlab init` writes them): the constructor takes **options."""
        return {f.name: getattr(self.settings, f.name) for f in fields(self.settings)}

    # ------------------------------------------------------------------------------------ runs

    def run(self, request: RunRequest) -> RunResult:
        """One randomized test in one window: the incumbent against the candidate (and `request.arms`)."""
        started = time.monotonic()
        names = arm_names(1 + len(request.arms))
        try:
            settings = Settings.from_options(request.options, base=self.settings) if request.options \
                else self.settings
            control_files = request.control_files if request.control_files is not None else self.baseline()
            base = variant_from_files(control_files).to_dict()
            files = (request.files, *(arm.files for arm in request.arms))
            variants = [variant_from_files(f).to_dict() for f in files]
        except (ConfigError, InvalidCandidate) as exc:
            return RunResult(status="crashed", error=str(exc), duration_s=time.monotonic() - started)
        # A factorial campaign runs every window factorially, one candidate too (then it is an even A/B
        # split), so a hypothesis's runs all compare equal on and off groups.
        plan = factorial.design(base, variants) if settings.factorial else None
        if plan is not None:
            arms, visitors, split = {c.name: c.variant for c in plan.cells}, settings.visitors_per_run, None
        else:
            arms = {CONTROL: base, **dict(zip(names, variants))}
            visitors, split = allocation(len(names), settings.candidates_per_run, settings.visitors_per_run)
        try:
            client = self._client(settings)
            fault = {"drop": {list(arms)[-1]: settings.srm_fault}} if settings.srm_fault else None
            seed = traffic_seed(request, settings.market_seed)
            experiment_id = client.create_experiment(
                arms, visitors=visitors, seed=seed, start_hour=random.Random(seed).randrange(WEEK_HOURS),
                fault=fault, split=split,
            )
            experiment = client.get_experiment(experiment_id)
        except (MarketError, OSError) as exc:
            return RunResult(status="crashed", error=f"market unavailable: {exc}",
                             duration_s=time.monotonic() - started)
        took = time.monotonic() - started
        result = _factorial_result(experiment, plan, took, self.metric.name, names) if plan is not None \
            else _result(experiment, took, self.metric.name, names)
        return result.model_copy(update={"arms": {arm.run_id: result.arms[name]
                                                   for arm, name in zip(request.arms, names[1:])
                                                   if name in result.arms}})

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
    key += "".join(f":{arm.candidate_id}@{arm.seed}" for arm in request.arms)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 2**31


def arm_names(candidates: int) -> list[str]:
    """The market's names for a run's candidate arms: `treatment`, then `treatment-2`, ... (A/B/n)."""
    return ["treatment", *(f"treatment-{i}" for i in range(2, candidates + 1))]


def allocation(candidates: int, per_run: int, visitors_per_run: int) -> tuple[int, dict[str, float] | None]:
    """A run's visitors and split: `candidates` arms in a campaign of up to `per_run` per run (A/B/n).

    Each candidate arm gets the same visitors in every run, and the control √per_run times as many (the
    share that minimises the variance of each candidate-vs-control difference for a run's visitors:
    Dunnett's square-root rule), so a window with fewer candidates keeps the ratio: pooling a hypothesis's
    runs with different ratios would weight the windows' conversion levels differently in the two arms
    (Simpson's paradox). A full window gets (per_run + 1) / 2 times `visitors_per_run`: each arm the
    visitors_per_run / 2 of an A/B arm on average. One candidate per run: the even A/B split (None).
    """
    if per_run <= 1:
        return visitors_per_run, None
    root = math.sqrt(per_run)
    arm = visitors_per_run * (per_run + 1) / (2 * (per_run + root))
    total = candidates + root
    return round(arm * total), {CONTROL: root / total, **{name: 1 / total for name in arm_names(candidates)}}


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


def _result(experiment: Mapping[str, Any], duration_s: float, metric: str = "conversion_rate",
            names: Sequence[str] = ("treatment",)) -> RunResult:
    """The first candidate's result, with the further candidates' in `arms` by their market names."""
    try:
        control = arm_metrics(experiment["arms"][CONTROL])
        treatments = [arm_metrics(experiment["arms"][name]) for name in names]
        split = experiment.get("split") or {name: 1 / (len(names) + 1) for name in (CONTROL, *names)}
        shares = [float(split[name]) for name in (CONTROL, *names)]
    except (KeyError, TypeError, ValueError) as exc:
        return _malformed(exc, duration_s)
    counts = [control["trials"], *(t["trials"] for t in treatments)]
    verdict = _invalid(counts, shares, [CONTROL, *names])
    # The control's visitors are spread over the candidates' runs, so the budget counts each visitor once.
    shares_of_control = _spread(control["trials"], len(names))
    sides = [(t, control, t["trials"] + share) for t, share in zip(treatments, shares_of_control)]
    return _window_result(names, sides, verdict, metric, duration_s)


def _factorial_result(experiment: Mapping[str, Any], plan: factorial.Design, duration_s: float, metric: str,
                      names: Sequence[str]) -> RunResult:
    """Each candidate's result from a factorial run: its change on against its factor off, over every cell."""
    try:
        cells = experiment["arms"]
        counts = [int(cells[c.name]["visitors"]) for c in plan.cells]
        halves = [factorial.split(cells, plan, i) for i in range(len(names))]
    except (KeyError, TypeError, ValueError) as exc:
        return _malformed(exc, duration_s)
    verdict = _invalid(counts, [1.0] * len(counts), [c.name for c in plan.cells])
    sides = [(arm_metrics(on), arm_metrics(off), units)
             for (on, off), units in zip(halves, _spread(sum(counts), len(names)))]
    return _window_result(names, sides, verdict, metric, duration_s)


def _window_result(names: Sequence[str], sides: Sequence[tuple[dict[str, Any], dict[str, Any], int]],
                   verdict: tuple[str, float | None], metric: str, duration_s: float) -> RunResult:
    """The first candidate's RunResult with the others' in `arms`; `sides`: (candidate, comparison, units)."""
    reason, p_value = verdict
    # A broken split voids the window's data, not the candidates: the loop runs it again on new traffic once
    # (traffic_seed), so a mismatch by chance (one window in a thousand at SRM_ALPHA) rejects a hypothesis only
    # when its retry mismatches too (one in a million).
    results = {}
    for name, (treatment, control, units) in zip(names, sides):
        metrics = {**treatment, "units": units, **({"srm_p_value": p_value} if p_value is not None else {})}
        results[name] = RunResult(
            status="invalid" if reason else "finished", error=reason, retryable=bool(reason), metrics=metrics,
            control_metrics={**control, "units": 0}, duration_s=duration_s, value=treatment[metric],
            control_value=control[metric],
        )
    first, *others = names
    return results[first].model_copy(update={"arms": {name: results[name] for name in others}})


def _spread(total: int, parts: int) -> list[int]:
    """`total` split into `parts` whole shares that add up to it."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def _malformed(exc: Exception, duration_s: float) -> RunResult:
    return RunResult(status="crashed", error=f"market sent a malformed experiment: {exc!r}",
                     duration_s=duration_s)


def _invalid(counts: Sequence[int], shares: Sequence[float], names: Sequence[str]) -> tuple[str, float | None]:
    """Why a run's split is invalid ("" if it is not), and the sample-ratio test's p-value."""
    if not all(counts):
        return "an arm received no visitors", None
    p_value = srm_p_value(counts, shares)
    if p_value >= SRM_ALPHA:
        return "", p_value
    observed = " vs ".join(f"{name} {count:,}" for name, count in zip(names, counts))
    intended = "/".join(f"{share / sum(shares):.0%}" for share in shares)
    return (f"sample ratio mismatch: {observed} visitors for an intended {intended} split "
            f"(chi-square p = {p_value:.2g})"), p_value
