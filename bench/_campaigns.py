"""Shared helpers for the campaign benchmarks (bench/decisions.py, bench/proposers.py).

Campaigns run through the real loop (core/campaign.py) on an in-memory ledger; the ground truth of the
marketing market is read only here, after a campaign finished, never by the loop.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from scipy.stats import binomtest

from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.lineage import candidate_files
from ledgerlab.core.protocols import Domain
from ledgerlab.core.registry import load_proposer
from ledgerlab.core.state import CampaignState
from ledgerlab.storage.memory import InMemoryLedger
from ledgerlab.testing import judge_sim as _judge_sim

RESULTS = Path(__file__).resolve().parent / "results"

# ------------------------------------------------------------------------------------------- campaigns


def run_campaign(domain: Domain, config: CampaignConfig) -> CampaignState:
    """One campaign to its end on a fresh in-memory ledger, with the proposer `config.proposer` names."""
    with tempfile.TemporaryDirectory(prefix="ledgerlab-bench-") as tmp:
        campaign = Campaign(
            InMemoryLedger(), domain, config, agents=[Agent("agent-0", load_proposer(config.proposer))],
            executor=LocalExecutor(domain), runs_dir=Path(tmp) / "runs", campaign_id=f"bench-{config.seed}",
        )
        state = campaign.run()
    if state.status != "finished":
        raise RuntimeError(f"campaign seed {config.seed} did not finish: {state.status} ({state.pause_reason})")
    return state


_FILES: dict[str, dict[str, str]] = {}  # candidate id -> files; ids hash the files, so any campaign may share it


def files_of(state: CampaignState, cid: str) -> dict[str, str]:
    """A candidate's files, rebuilt from the ledger (memoised: long lineages would repeat work)."""
    if len(_FILES) > 50_000:
        _FILES.clear()
    return candidate_files(state, cid, _FILES)


def accepted_steps(state: CampaignState) -> list[tuple[dict[str, str], dict[str, str], Any]]:
    """Every accepted change in order: (the incumbent it replaced, the new incumbent, its hypothesis)."""
    steps = []
    for h in state.hypotheses.values():
        if h.status == "accepted" and h.candidate_id is not None:
            steps.append((files_of(state, h.parent_candidate_id), files_of(state, h.candidate_id), h))
    return steps


def campaign_counts(state: CampaignState) -> dict[str, Any]:
    """What a campaign spent and decided."""
    statuses = [h.status for h in state.hypotheses.values()]
    return {
        "hypotheses": len(statuses),
        "tested": sum(s in ("accepted", "rejected") for s in statuses),
        "patch_rejected": statuses.count("patch_rejected"),
        "accepted": statuses.count("accepted"),
        "runs": state.n_runs,
        "units": state.units,
        "finish_reason": state.finish_reason,
    }


# ------------------------------------------------------------------------------------------ statistics

def wilson(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    """k/n with its Wilson score 95% interval (scipy's); (None, None, None) when n = 0."""
    if n == 0:
        return None, None, None
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def mean_ci(xs: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """Mean with a Student-t 95% interval (the interval collapses to the mean for n < 2); Nones when empty."""
    return _judge_sim.mean_ci(xs) if len(xs) else (None, None, None)


def cluster_bootstrap_ratio(pairs: Sequence[tuple[int, int]], reps: int = 4000,
                            seed: int = 0) -> tuple[float | None, float | None, float | None]:
    """Σk/Σn over clusters (campaigns) with a percentile 95% interval from resampling whole clusters.

    Accepts within one campaign share a market and a trajectory, so they are resampled together. A resample
    with no accepts at all has no ratio and is skipped (scipy's `bootstrap` would make the interval nan).
    """
    total = sum(n for _, n in pairs)
    if total == 0:
        return None, None, None
    rng = random.Random(seed)
    ratios = []
    for _ in range(reps):
        draw = [pairs[rng.randrange(len(pairs))] for _ in pairs]
        n = sum(d[1] for d in draw)
        if n:
            ratios.append(sum(d[0] for d in draw) / n)
    ratios.sort()
    lo, hi = ratios[int(0.025 * len(ratios))], ratios[min(len(ratios) - 1, int(0.975 * len(ratios)))]
    return sum(k for k, _ in pairs) / total, lo, hi


# -------------------------------------------------------------------------------------------- printing


def fmt_ci(v: tuple[float | None, float | None, float | None], scale: float = 1.0, digits: int = 2,
           suffix: str = "") -> str:
    """'12.3% [4.5, 20.1]'-style cell."""
    if v[0] is None:
        return "n/a"
    m, lo, hi = (x * scale for x in v)  # type: ignore[operator]
    return f"{m:.{digits}f}{suffix} [{lo:.{digits}f}, {hi:.{digits}f}]"


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain fixed-width table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


CODE = ("core/campaign.py", "core/planner.py", "core/judge.py", "core/stats.py", "core/alpha.py",
        "core/proposers/knob.py", "domains/marketing/domain.py", "domains/marketing/market.py",
        "domains/marketing/truth.py")


def code_versions() -> dict[str, str]:
    """The git commit and a short hash of each file the results depend on (several are still changing)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    out = {}
    try:
        out["git_head"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                         text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for rel in CODE:
        path = root / rel
        if path.exists():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return out


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(x: Any) -> Any:
    if isinstance(x, (set, frozenset, tuple)):
        return list(x)
    return str(x)


# ------------------------------------------------------------------------------------ marketing domain


def marketing_domain(traffic: str = "fresh", **options: Any) -> Any:
    """The marketing domain as shipped: every A/B test draws its own visitors (see `traffic_seed`)."""
    from ledgerlab.domains.marketing.domain import MarketingDomain

    if traffic != "fresh":
        raise ValueError("the marketing domain gives every run its own traffic; only traffic='fresh' exists")
    return MarketingDomain(**options)


# ------------------------------------------------------------------------------ marketing ground truth


def coordinate_ascent_optimum(market: Any, sweeps: int = 6, price_step: float = 0.1,
                              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The best page found by coordinate ascent over every lever on the market's truth, from the template.

    Each sweep tries every value of each lever in declared order (prices on a grid of `price_step` dollars,
    every integer for integer levers) and keeps the best; it stops when a sweep changes nothing or after
    `sweeps` sweeps. Deterministic. Levers act additively on the log-odds of each segment (only price and
    discount interact, through the effective price), so this is at or very near the true optimum.
    """
    from ledgerlab.domains.marketing.variant import KNOBS, template_variant

    def values(knob: Any) -> list[Any]:
        if knob.kind in ("choice", "bool"):
            return list(knob.choices)
        if knob.kind == "int":
            return list(range(int(knob.low), int(knob.high) + 1))
        count = int(round((knob.high - knob.low) / price_step))
        return [round(knob.low + i * price_step, 6) for i in range(count + 1)]

    grid = {knob.name: values(knob) for knob in KNOBS}
    best = template_variant()
    best_rate = market.true_effects(best)["conversion_rate"]
    done = 0
    for done in range(1, sweeps + 1):  # noqa: B007 (the sweeps taken are reported after the loop)
        changed = False
        for knob in KNOBS:
            for value in grid[knob.name]:
                trial = replace(best, **{knob.name: value})
                rate = market.true_effects(trial)["conversion_rate"]
                if rate > best_rate + 1e-15:
                    best, best_rate, changed = trial, rate, True
        if not changed:
            break
    return {"variant": best.to_dict(), "conversion_rate": best_rate, "sweeps": done,
            "revenue_per_visitor": market.true_effects(best)["revenue_per_visitor"]}
