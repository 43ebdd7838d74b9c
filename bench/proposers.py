"""The knob proposer against uniform random knob changes, at an equal number of hypotheses.

Both proposers drive the real loop with ledgerlab's judge (the shipped defaults) for the same `--hypotheses`
per campaign (patch-rejected proposals count: the proposer spent a turn on them), over `--seeds` campaign
seeds each, on two domains:

* toy: the in-test domain (testing/toy_domain.py): minimize a quadratic bowl in X and Y plus noise; scored by
  the final incumbent's noise-free `true_loss` (baseline 1.0, optimum 0.0; lower is better);
* marketing: the simulated A/B market with market_seed = campaign seed; scored by the final incumbent's true
  conversion lift over the baseline page (higher is better), and its gap to the best page coordinate ascent
  finds on the truth. Runs draw fresh visitors (see bench/decisions.py, `--traffic`).

Means carry Student-t 95% intervals; "knob − random" is the paired difference per seed. The JSON also holds
the incumbent's true value after every `--checkpoint` hypotheses (how fast each gets there).

    python bench/proposers.py                      # 10 seeds, 40 hypotheses, both domains (~1 min)
    python bench/proposers.py --quick              # 3 seeds, a smoke test
    python bench/proposers.py --seeds 30 --hypotheses 80 --domains marketing

Writes bench/results/proposers.json (or --out).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ledgerlab.bench import _campaigns as cb
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.knobs import read_knob
from ledgerlab.core.registry import close_domain
from ledgerlab.core.state import CampaignState

PROPOSERS = ("knob", "random")


# -------------------------------------------------------------------------------------------- domains


class Toy:
    """The in-test toy domain, scored by its noise-free loss."""

    name, better = "toy", "lower"

    def __init__(self, args: argparse.Namespace) -> None:
        from ledgerlab.testing import KNOBS, ToyDomain, true_loss

        self._make, self._knobs, self._loss = ToyDomain, KNOBS, true_loss

    def domain(self, seed: int) -> Any:
        return self._make()

    def options(self, seed: int) -> dict[str, Any]:
        return {}

    def value(self, seed: int, files: dict[str, str]) -> float:
        return self._loss(float(read_knob(files, self._knobs[0])), int(read_knob(files, self._knobs[1])))

    def extra(self, seed: int, files: dict[str, str]) -> dict[str, Any]:
        return {"x": read_knob(files, self._knobs[0]), "y": read_knob(files, self._knobs[1])}


class Marketing:
    """The simulated market, scored by the true conversion lift over the baseline page."""

    name, better = "marketing", "higher"

    def __init__(self, args: argparse.Namespace) -> None:
        from ledgerlab.domains.marketing.market import Market

        self.args, self._market = args, Market.seeded
        self._optima: dict[int, dict[str, Any]] = {}  # seed -> the market's optimum

    def options(self, seed: int) -> dict[str, Any]:
        return {"market_seed": seed, "visitors_per_run": self.args.visitors_per_run}

    def domain(self, seed: int) -> Any:
        return cb.marketing_domain(self.args.traffic, **self.options(seed))

    def _rates(self, seed: int, files: dict[str, str]) -> tuple[float, float]:
        from ledgerlab.domains.marketing.variant import template_variant

        market = self._market(seed)
        return market.true_effects(files)["conversion_rate"], market.true_effects(template_variant())["conversion_rate"]

    def value(self, seed: int, files: dict[str, str]) -> float:
        rate, base = self._rates(seed, files)
        return rate / base - 1.0

    def extra(self, seed: int, files: dict[str, str]) -> dict[str, Any]:
        if seed not in self._optima:
            self._optima[seed] = cb.coordinate_ascent_optimum(self._market(seed))
        rate, base = self._rates(seed, files)
        return {"true_rate": rate, "gap_pp": (self._optima[seed]["conversion_rate"] - rate) / base}


# ------------------------------------------------------------------------------------------- campaigns


def trajectory(state: CampaignState, score: Any, checkpoints: list[int]) -> dict[int, float]:
    """The incumbent's true value after the first k hypotheses, for each checkpoint k."""
    incumbent_after: list[tuple[int, str]] = [(0, state.started.baseline_candidate_id)]  # type: ignore[union-attr]
    for h in state.hypotheses.values():
        if h.status == "accepted" and h.candidate_id is not None:
            incumbent_after.append((h.number, h.candidate_id))
    out = {}
    for k in checkpoints:
        cid = [c for n, c in incumbent_after if n <= k][-1]
        out[k] = score(cb.files_of(state, cid))
    return out


def one_campaign(kind: Any, proposer: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    config = CampaignConfig(
        domain=kind.name, seed=seed, domain_options=kind.options(seed),
        budgets={"max_hypotheses": args.hypotheses}, judge={"kind": args.judge}, proposer={"kind": proposer},
    )
    domain = kind.domain(seed)
    started = time.perf_counter()
    try:
        state = cb.run_campaign(domain, config)
    finally:
        close_domain(domain)
    final = cb.files_of(state, state.incumbent_id)
    checkpoints = sorted({*range(args.checkpoint, args.hypotheses + 1, args.checkpoint), args.hypotheses})
    return {
        "seed": seed, "proposer": proposer, "seconds": time.perf_counter() - started,
        **cb.campaign_counts(state), "value": kind.value(seed, final), **kind.extra(seed, final),
        "trajectory": trajectory(state, lambda f: kind.value(seed, f), checkpoints),
    }


def summarize(rows: dict[str, list[dict]], better: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rs in rows.items():
        out[name] = {
            "value": cb.mean_ci([r["value"] for r in rs]),
            "accepted": cb.mean_ci([r["accepted"] for r in rs]),
            "hypotheses": cb.mean_ci([r["hypotheses"] for r in rs]),
            "tested": cb.mean_ci([r["tested"] for r in rs]),
            "exhausted": sum(r["finish_reason"] == "proposer_exhausted" for r in rs),
            "patch_rejected": cb.mean_ci([r["patch_rejected"] for r in rs]),
            "runs": cb.mean_ci([r["runs"] for r in rs]),
            "seconds_per_campaign": sum(r["seconds"] for r in rs) / len(rs),
        }
        if "gap_pp" in rs[0]:
            out[name]["gap_pp"] = cb.mean_ci([r["gap_pp"] for r in rs])
    knob, rand = rows["knob"], rows["random"]
    diffs = [k["value"] - r["value"] for k, r in zip(knob, rand)]
    sign = 1 if better == "higher" else -1
    out["knob_minus_random"] = cb.mean_ci(diffs)
    out["knob_better_seeds"] = sum(sign * d > 0 for d in diffs)
    out["knob_worse_seeds"] = sum(sign * d < 0 for d in diffs)
    mean, low, high = out["knob_minus_random"]
    out["knob_better"] = sign * mean > 0
    gains = (sign * low, sign * high)  # the interval, as "how much better knob is"
    significant = min(gains) > 0 if out["knob_better"] else max(gains) < 0
    out["significant"] = significant
    out["verdict"] = (("reaches a better incumbent" if significant else
                       "reaches a better incumbent on average, but the 95% interval includes no difference")
                      if out["knob_better"] else
                      ("reaches a WORSE incumbent" if significant else
                       "does NOT reach a better incumbent (worse on average; the interval includes no difference)"))
    return out


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", "--campaigns", dest="seeds", type=int, default=10, help="campaigns per proposer")
    ap.add_argument("--hypotheses", "--budget", dest="hypotheses", type=int, default=40,
                    help="hypotheses per campaign (the equal budget; default 40)")
    ap.add_argument("--domains", nargs="+", choices=("toy", "marketing"), default=["toy", "marketing"])
    ap.add_argument("--judge", choices=("stats", "greedy", "fixed"), default="stats")
    ap.add_argument("--visitors-per-run", type=int, default=50_000)
    ap.add_argument("--traffic", choices=("fresh",), default="fresh")
    ap.add_argument("--checkpoint", type=int, default=10, help="record the incumbent every N hypotheses")
    ap.add_argument("--quick", action="store_true", help="3 seeds: a smoke test")
    ap.add_argument("--out", type=Path, default=cb.RESULTS / "proposers.json")
    args = ap.parse_args()
    if args.quick:
        args.seeds = min(args.seeds, 3)

    started, code = time.perf_counter(), cb.code_versions()  # as imported: files may change later
    results: dict[str, Any] = {}
    for name in args.domains:
        kind = Toy(args) if name == "toy" else Marketing(args)
        rows: dict[str, list[dict]] = {p: [] for p in PROPOSERS}
        for proposer in PROPOSERS:
            for seed in range(args.seeds):
                row = one_campaign(kind, proposer, seed, args)
                rows[proposer].append(row)
                print(f"  {name:9} {proposer:6} seed {seed:3}: value {row['value']:+.4f}, "
                      f"{row['accepted']} accepted of {row['tested']} tested, {row['seconds']:.1f}s",
                      file=sys.stderr, flush=True)
        results[name] = {"better": kind.better, "summary": summarize(rows, kind.better), "campaigns": rows}
    elapsed = time.perf_counter() - started

    print(f"\nKnob vs random proposer: {args.hypotheses} hypotheses per campaign, {args.seeds} seeds, "
          f"judge={args.judge}; 95% t-intervals")
    table = []
    for name, res in results.items():
        s = res["summary"]
        unit: dict[str, Any] = dict(scale=1, digits=3, suffix="") if name == "toy" else dict(scale=100, digits=1,
                                                                                            suffix="%")
        label = "true loss (lower is better)" if name == "toy" else "true conversion lift (higher is better)"
        for p in PROPOSERS:
            table.append([name, p, label, cb.fmt_ci(s[p]["value"], **unit),
                          cb.fmt_ci(s[p]["gap_pp"], 100, 1) if "gap_pp" in s[p] else "-",
                          cb.fmt_ci(s[p]["accepted"], digits=1), cb.fmt_ci(s[p]["hypotheses"], digits=1),
                          cb.fmt_ci(s[p]["tested"], digits=1), f"{s[p]['exhausted']}/{args.seeds}",
                          cb.fmt_ci(s[p]["runs"], digits=1)])
        d = s["knob_minus_random"]
        diff_unit = {**unit, "suffix": " pp"} if name == "marketing" else unit
        table.append([name, "knob − random", "paired difference", cb.fmt_ci(d, **diff_unit), "-",
                      f"knob better on {s['knob_better_seeds']}/{args.seeds}", "", "", "", ""])
    print(cb.table(table, ["domain", "proposer", "score", "final incumbent", "gap to optimum (pp)",
                           "accepted", "hypotheses used", "tested", "ran out", "runs"]))
    print("hypotheses used < the budget: the proposer ran out of ideas (returned None) before it; tested excludes "
          "patch-rejected proposals (duplicates of a candidate already tested)")
    for name, res in results.items():
        s = res["summary"]
        d = s["knob_minus_random"]
        scale = (1, 3, "") if name == "toy" else (100, 1, " pp")
        print(f"{name}: the knob proposer {s['verdict']} (knob − random = {cb.fmt_ci(d, *scale)}; "
              f"{res['better']} is better; knob better on {s['knob_better_seeds']} of {args.seeds} seeds)")
    print(f"\n{elapsed:.0f} s in all")
    cb.write_json(args.out, {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                             "results": results, "seconds": elapsed, "code": code})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
