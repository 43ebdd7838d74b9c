"""Decision quality against ground truth: greedy vs fixed-n vs ledgerlab's judge on the simulated A/B market.

At an equal visitor budget, the same campaign (knob proposer, marketing domain, market_seed = campaign seed =
campaign index, so every judge meets the same markets) runs once per judge through the real loop. Afterwards,
and only then, the market's hidden truth scores what each judge decided:

* false discoveries: accepted changes whose true conversion lift over the incumbent they replaced is at most
  +0.1% relative (`FD_TOLERANCE`: levers like button colour move conversion by a few tenths of a percent,
  nothing a test at this traffic can see, so "does nothing" means "below 0.1%"); the JSON also gives the strict
  (≤ 0) and a practical (≤ 0.5%) count;
* the true conversion lift of the final incumbent over the baseline page (relative);
* its gap to the best reachable page, estimated by coordinate ascent over every lever on the market's truth
  (from the baseline, sweeps until none changes anything), in percentage points of the baseline's rate;
* an A/A run on null markets (no lever matters): accepted changes per campaign;
* the true revenue-per-visitor lift of the final page: conversion-only judges buy conversions with price cuts,
  so the table adds `ledgerlab+guard`, the marketing default, whose accepts must not lose revenue per visitor
  significantly. The targets are checked on `ledgerlab` (conversion only, the objective greedy has too).

Intervals: false-discovery shares are Wilson 95% intervals over accepts (the JSON adds a bootstrap over whole
campaigns); means over campaigns are Student-t 95% intervals; "vs greedy" is the paired difference per market.

    python bench/decisions.py                       # 20 campaigns per judge at 2,000,000 visitors (~4-5 min)
    python bench/decisions.py --quick               # 5 campaigns, a smoke test
    python bench/decisions.py --budget 4000000 --no-aa --out bench/results/decisions_4M.json   # the README's 2nd row
    python bench/decisions.py --judge-option alpha_policy=fixed   # ours at α = 0.05 per hypothesis, not the FDR
    python bench/decisions.py --judges greedy ledgerlab --sweep 1e6 2e6 3e6 4e6 6e6   # lift by budget (~10 min)
    python bench/decisions.py --judges greedy ledgerlab --candidates-per-run 1   # one candidate per run (A/B)
    python bench/decisions.py --judges greedy ledgerlab --no-factorial   # A/B/n: 3 pages vs a shared control
    python bench/decisions.py --judges ledgerlab --campaigns 200 --no-aa --budget 1e9 --max-hypotheses 300 \
        --lengths 50 150 300   # false discoveries by campaign length

Runs: the marketing domain's design (factorial windows of up to 3 candidates: each visitor gets each
candidate's change at random; `--candidates-per-run 1` for A/B runs). Traffic: every run has its own visitors (the domain mixes the replicate seed with both
arms' ids and the market seed), as separate experiments in a real market are.
Writes bench/results/decisions.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ledgerlab.bench import _campaigns as cb
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.report import status_report
from ledgerlab.domains.marketing.market import Market
from ledgerlab.domains.marketing.variant import template_variant, variant_from_files

FD_TOLERANCE = 1e-3  # relative true lift at or below which an accepted change "does nothing"
TOLERANCES = {"strict_0": 0.0, "tol_0.1pct": 1e-3, "tol_0.5pct": 5e-3}
FD_TARGET = 0.10
# "ledgerlab" and "fixed-n5" judge conversion alone, like greedy: the targets compare judges on one objective.
# Both "ledgerlab" judges run the stats judge's default for A/B designs: online FDR control at 0.1 over the
# campaign (alpha_policy = "fdr", core/alpha.py); `--judge-option alpha_policy=fixed` tests each at 0.05.
# "ledgerlab+guard" is the product's default for marketing: the same judge, and no accepted change may lose
# revenue per visitor significantly (the revenue guardrail, core/guardrails.py).
JUDGES: dict[str, dict[str, Any]] = {
    "greedy": {"kind": "greedy"},
    "fixed-n5": {"kind": "fixed", "fixed_n": 5, "guardrails": False},
    "ledgerlab": {"kind": "stats", "guardrails": False},
    "ledgerlab+guard": {"kind": "stats"},
}
OURS, GREEDY = "ledgerlab", "greedy"


# ------------------------------------------------------------------------------------------- campaigns


def one_campaign(judge: dict[str, Any], index: int, null: bool, args: argparse.Namespace,
                 market: Market, optimum: dict[str, Any] | None) -> dict[str, Any]:
    """Run one campaign and score it against the market's truth."""
    options = {"market_seed": index, "null_market": null, "visitors_per_run": args.visitors_per_run}
    # the run design: the domain's defaults (factorial windows of 3) unless the command line names one
    options.update({k: v for k, v in (("candidates_per_run", args.candidates_per_run),
                                      ("factorial", args.factorial)) if v is not None})
    config = CampaignConfig(
        domain="marketing", seed=index, domain_options=options,
        budgets={"max_units": args.budget, "max_hypotheses": args.max_hypotheses},
        judge={**judge, **(args.ours_options if judge["kind"] == "stats" else {})},
        proposer={"kind": args.proposer},
    )
    domain = cb.marketing_domain(args.traffic, **options)
    started = time.perf_counter()
    try:
        state = cb.run_campaign(domain, config)
    finally:
        domain.close()
    seconds = time.perf_counter() - started

    def rate(files_or_variant: Any) -> dict[str, float]:
        return market.true_effects(files_or_variant)

    base = rate(template_variant())
    final = rate(cb.files_of(state, state.incumbent_id))
    accepts = []
    for parent, child, h in cb.accepted_steps(state):
        before, after = rate(parent)["conversion_rate"], rate(child)["conversion_rate"]
        accepts.append({
            "hypothesis": h.number, "changes": h.changes, "rationale": h.rationale,
            "true_lift_rel": after / before - 1.0, "true_lift_abs": after - before,
            "lift_rel_after": after / base["conversion_rate"] - 1.0,
            "estimated_effect": h.verdict.effect if h.verdict else None,
            "p_value": h.verdict.p_value if h.verdict else None,
        })
    row: dict[str, Any] = {
        "campaign": index, "market_seed": index, "null_market": null, "seconds": seconds,
        **cb.campaign_counts(state),
        "base_rate": base["conversion_rate"], "final_rate": final["conversion_rate"],
        "lift_rel": final["conversion_rate"] / base["conversion_rate"] - 1.0,
        "base_rpv": base["revenue_per_visitor"], "final_rpv": final["revenue_per_visitor"],
        "rpv_lift_rel": final["revenue_per_visitor"] / base["revenue_per_visitor"] - 1.0,
        "final_variant": variant_from_files(cb.files_of(state, state.incumbent_id)).to_dict(),
        "accepts": accepts,
    }
    row["reported"] = reported_improvement(state)
    for name, tol in TOLERANCES.items():
        row[f"fd_{name}"] = sum(a["true_lift_rel"] <= tol for a in accepts)
    if optimum is not None:
        opt = optimum["conversion_rate"]
        row["opt_rate"] = opt
        row["gap_pp"] = (opt - final["conversion_rate"]) / base["conversion_rate"]
        row["captured"] = (final["conversion_rate"] - base["conversion_rate"]) / (opt - base["conversion_rate"])
    return row


def reported_improvement(state: Any) -> dict[str, Any]:
    """What `ledgerlab status` reports as the improvement (core/report.py), to score against the truth."""
    gain = status_report(state, now=state.last_at)["improvement"]
    return {k: gain.get(k) for k in ("status", "effect", "ci_low", "ci_high", "method", "relative",
                                     "relative_ci_low", "relative_ci_high")}


def improvement_quality(rs: list[dict]) -> dict[str, Any]:
    """How the reported improvement met the truth: coverage, width, and how often it shows a real lift."""
    changed = [r for r in rs if r["reported"]["status"] != "baseline_is_incumbent"]
    rel = [r for r in changed if r["reported"].get("relative_ci_low") is not None]
    cover = sum(r["reported"]["relative_ci_low"] <= r["lift_rel"] <= r["reported"]["relative_ci_high"] for r in rel)
    big = [r for r in rel if r["lift_rel"] >= 0.10]
    shown = sum(r["reported"]["relative_ci_low"] > 0 for r in big)
    return {
        "campaigns_changed": len(changed), "relative_measured": len(rel),
        "not_measured": sum(r["reported"]["status"] == "not_measured" for r in changed),
        "coverage": cb.wilson(cover, len(rel)),
        "half_width": cb.mean_ci([(r["reported"]["relative_ci_high"] - r["reported"]["relative_ci_low"]) / 2
                                  for r in rel]) if len(rel) > 1 else None,
        "bias": cb.mean_ci([r["reported"]["relative"] - r["lift_rel"] for r in rel]) if len(rel) > 1 else None,
        "true_lift_ge_10pct": len(big), "excludes_0_when_ge_10pct": cb.wilson(shown, len(big)),
    }


def print_improvement(summary: dict[str, dict]) -> None:
    pct: dict[str, Any] = dict(scale=100, digits=1)
    rows = []
    for name, s in summary.items():
        q = s.get("improvement")
        if not q or not q["relative_measured"]:
            continue
        rows.append([name, f"{q['relative_measured']}/{q['campaigns_changed']}",
                     cb.fmt_ci(q["coverage"], suffix="%", **pct),
                     cb.fmt_ci(q["half_width"], suffix="%", **pct) if q["half_width"] else "-",
                     cb.fmt_ci(q["bias"], suffix="%", **pct) if q["bias"] else "-",
                     f"{q['true_lift_ge_10pct']}: " + cb.fmt_ci(q["excludes_0_when_ge_10pct"], suffix="%", **pct)])
    if rows:
        print("\nThe improvement `status` reports (relative lift over the baseline, 95% interval) against the truth")
        print(cb.table(rows, ["judge", "measured", "covers the truth", "half-width", "bias",
                              "true lift >= 10%: interval > 0"]))


def run_judges(args: argparse.Namespace, null: bool, campaigns: int) -> tuple[dict[str, list[dict]], dict]:
    """Every judge on the same `campaigns` markets (null ones for A/A)."""
    markets = {i: Market.seeded(i, null=null) for i in range(campaigns)}
    optima = {} if null else {i: cb.coordinate_ascent_optimum(markets[i]) for i in range(campaigns)}
    rows: dict[str, list[dict]] = {}
    for name in args.judges:
        rows[name] = []
        for i in range(campaigns):
            row = one_campaign(JUDGES[name], i, null, args, markets[i], optima.get(i))
            rows[name].append(row)
            print(f"  {'A/A ' if null else ''}{name:9} campaign {i:3}: {row['accepted']:2} accepted of "
                  f"{row['tested']:2} tested, lift {row['lift_rel']:+.1%}, {row['seconds']:.1f}s",
                  file=sys.stderr, flush=True)
    return rows, optima


# ------------------------------------------------------------------------------------------- summaries


def summarize(rows: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per judge: false discoveries, lift, gap, and the paired difference in lift against greedy."""
    out: dict[str, dict[str, Any]] = {}
    for name, rs in rows.items():
        accepts = sum(r["accepted"] for r in rs)
        s: dict[str, Any] = {
            "campaigns": len(rs), "accepts": accepts,
            "accepts_per_campaign": cb.mean_ci([r["accepted"] for r in rs]),
            "tested_per_campaign": cb.mean_ci([r["tested"] for r in rs]),
            "runs_per_campaign": cb.mean_ci([r["runs"] for r in rs]),
            "visitors_per_campaign": cb.mean_ci([r["units"] for r in rs]),
            "lift_rel": cb.mean_ci([r["lift_rel"] for r in rs]),
            "rpv_lift_rel": cb.mean_ci([r["rpv_lift_rel"] for r in rs]),
            "seconds_per_campaign": sum(r["seconds"] for r in rs) / len(rs),
        }
        for tol in TOLERANCES:
            k = sum(r[f"fd_{tol}"] for r in rs)
            s[f"fd_{tol}"] = {"count": k, "share_wilson": cb.wilson(k, accepts),
                              "share_campaign_bootstrap": cb.cluster_bootstrap_ratio(
                                  [(r[f"fd_{tol}"], r["accepted"]) for r in rs])}
        s["any_accept_share"] = cb.wilson(sum(r["accepted"] > 0 for r in rs), len(rs))
        s["improvement"] = improvement_quality(rs)
        if "gap_pp" in rs[0]:
            s["gap_pp"] = cb.mean_ci([r["gap_pp"] for r in rs])
            s["captured"] = cb.mean_ci([r["captured"] for r in rs])
            s["opt_lift_rel"] = cb.mean_ci([r["opt_rate"] / r["base_rate"] - 1 for r in rs])
        if GREEDY in rows and name != GREEDY:
            diffs = [r["lift_rel"] - g["lift_rel"] for r, g in zip(rs, rows[GREEDY])]
            s["lift_minus_greedy"] = cb.mean_ci(diffs)
            s["lift_wins_vs_greedy"] = sum(d > 0 for d in diffs)
        out[name] = s
    return out


def print_tables(summary: dict[str, dict], aa: dict[str, dict] | None, args: argparse.Namespace) -> None:
    pct: dict[str, Any] = dict(scale=100, digits=1)
    header = ["judge", "accepts/camp.", "false disc. (share of accepts)", "true lift of final",
              "gap to optimum (pp)", "reachable lift captured", "vs greedy (lift, pp)", "tested/camp."]
    rows = []
    for name, s in summary.items():
        fd = s["fd_tol_0.1pct"]
        rows.append([
            name, cb.fmt_ci(s["accepts_per_campaign"], digits=1),
            f"{fd['count']}/{s['accepts']} = " + cb.fmt_ci(fd["share_wilson"], suffix="%", **pct),
            cb.fmt_ci(s["lift_rel"], suffix="%", **pct), cb.fmt_ci(s["gap_pp"], **pct),
            cb.fmt_ci(s["captured"], suffix="%", **pct),
            cb.fmt_ci(s["lift_minus_greedy"], **pct) if "lift_minus_greedy" in s else "-",
            cb.fmt_ci(s["tested_per_campaign"], digits=1),
        ])
    any_s = next(iter(summary.values()))
    print(f"\nDecisions at {args.budget:,.0f} visitors per campaign ({args.visitors_per_run:,} per run), "
          f"{any_s['campaigns']} markets, traffic={args.traffic}, proposer={args.proposer}"
          + f", {_design(args)}"
          + (f", ours with {args.ours_options}" if args.ours_options else ""))
    print(f"best reachable page (coordinate ascent on the truth): "
          f"{cb.fmt_ci(any_s['opt_lift_rel'], suffix='%', **pct)} over the baseline")
    print(cb.table(rows, header))
    print("false discovery: true lift over the replaced incumbent <= +0.1% relative; 95% intervals "
          "(Wilson for shares, t for means)")
    extra = [[name, *(f"{s[f'fd_{t}']['count']}/{s['accepts']} = "
                      + cb.fmt_ci(s[f'fd_{t}']['share_wilson'], suffix='%', **pct) for t in TOLERANCES),
              cb.fmt_ci(s["rpv_lift_rel"], suffix="%", **pct)] for name, s in summary.items()]
    print(cb.table(extra, ["judge", "FD (<= 0)", "FD (<= 0.1%)", "FD (<= 0.5%)", "true revenue/visitor lift"]))
    if aa:
        print(f"\nA/A (null markets: no lever matters), {next(iter(aa.values()))['campaigns']} campaigns")
        print(cb.table([[name, cb.fmt_ci(s["accepts_per_campaign"], digits=2),
                         cb.fmt_ci(s["any_accept_share"], suffix="%", **pct),
                         cb.fmt_ci(s["tested_per_campaign"], digits=1)] for name, s in aa.items()],
                       ["judge", "accepted changes/campaign", "campaigns with any accept", "tested/campaign"]))


def by_length(rows: dict[str, list[dict]], lengths: list[int]) -> dict[str, dict[str, Any]]:
    """Per judge and campaign length L: what the campaigns had decided by their L-th hypothesis.

    A campaign's first L hypotheses are the campaign it would have been at `max_hypotheses = L` (the loop
    proposes in the same order; only the few in flight at the cut would have been decided too), so one long
    campaign per market measures every length.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, rs in rows.items():
        out[name] = {}
        for length in lengths:
            kept = [[a for a in r["accepts"] if a["hypothesis"] <= length] for r in rs]
            accepts = sum(len(k) for k in kept)
            fd = sum(a["true_lift_rel"] <= FD_TOLERANCE for k in kept for a in k)
            lifts = [k[-1]["lift_rel_after"] if k else 0.0 for k in kept]
            out[name][str(length)] = {"accepts": accepts, "fd": fd, "fd_share_wilson": cb.wilson(fd, accepts),
                                      "accepts_per_campaign": cb.mean_ci([len(k) for k in kept]),
                                      "lift_rel": cb.mean_ci(lifts)}
    return out


def print_by_length(got: dict[str, dict[str, Any]]) -> None:
    pct: dict[str, Any] = dict(scale=100, digits=1)
    rows = [[name, length, cb.fmt_ci(s["accepts_per_campaign"], digits=1),
             f"{s['fd']}/{s['accepts']} = " + cb.fmt_ci(s["fd_share_wilson"], suffix="%", **pct),
             cb.fmt_ci(s["lift_rel"], suffix="%", **pct)]
            for name, by in got.items() for length, s in by.items()]
    print("\nBy campaign length (decisions among each campaign's first L hypotheses)")
    print(cb.table(rows, ["judge", "L", "accepts/camp.", "false disc. (share of accepts)", "true lift"]))


def verdicts(summary: dict[str, dict]) -> dict[str, Any]:
    """The issue's targets, checked."""
    if OURS not in summary:
        return {}
    ours = summary[OURS]
    fd = ours["fd_tol_0.1pct"]["share_wilson"]
    out: dict[str, Any] = {"fd_share": fd, "fd_target": FD_TARGET,
                           "fd_met": fd[0] is not None and fd[0] <= FD_TARGET}
    if GREEDY in summary:
        out["greedy_fd_share"] = summary[GREEDY]["fd_tol_0.1pct"]["share_wilson"]
        out["lift_ours"], out["lift_greedy"] = ours["lift_rel"], summary[GREEDY]["lift_rel"]
        out["lift_minus_greedy"] = ours["lift_minus_greedy"]
        out["lift_met"] = ours["lift_rel"][0] >= summary[GREEDY]["lift_rel"][0]
    return out


def print_verdicts(v: dict[str, Any]) -> None:
    if not v:
        return
    fd = v["fd_share"]
    g = v.get("greedy_fd_share")
    print(f"\nTarget 1: ledgerlab's false discoveries <= {v['fd_target']:.0%} of accepts: "
          f"{'MET' if v['fd_met'] else 'MISSED'} ({cb.fmt_ci(fd, 100, 1, '%')}"
          + (f"; greedy {cb.fmt_ci(g, 100, 1, '%')})" if g else ")"))
    if "lift_met" in v:
        d = v["lift_minus_greedy"]
        short = v["lift_greedy"][0] - v["lift_ours"][0]
        print(f"Target 2: ledgerlab's true lift >= greedy's: "
              f"{'MET' if v['lift_met'] else f'MISSED by {100 * short:.1f} pp'} "
              f"(ours {v['lift_ours'][0]:+.1%}, greedy {v['lift_greedy'][0]:+.1%}; paired difference "
              f"{cb.fmt_ci(d, 100, 1)} pp)")


# ------------------------------------------------------------------------------------------------ sweep


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """The judges at each budget in `args.sweep` (no A/A): where ours overtakes greedy."""
    out: dict[str, Any] = {}
    for budget in args.sweep:
        args.budget = budget
        rows, _ = run_judges(args, null=False, campaigns=args.campaigns)
        out[f"{budget:.0f}"] = {"summary": summarize(rows), "targets": verdicts(summarize(rows))}
    pct: dict[str, Any] = dict(scale=100, digits=1)
    header = ["visitors", *(f"{name} lift" for name in args.judges), "ours - greedy (pp)",
              *(f"{name} false disc." for name in args.judges)]
    table = []
    for budget, got in out.items():
        s = got["summary"]
        diff = s[OURS].get("lift_minus_greedy") if OURS in s else None
        lifts = [cb.fmt_ci(s[n]["lift_rel"], suffix="%", **pct) for n in args.judges]
        fds = [cb.fmt_ci(s[n]["fd_tol_0.1pct"]["share_wilson"], suffix="%", **pct) for n in args.judges]
        table.append([f"{float(budget):,.0f}", *lifts, cb.fmt_ci(diff, **pct) if diff else "-", *fds])
    print(f"\nTrue conversion lift of the final page by visitor budget ({args.campaigns} markets each, "
          f"{args.visitors_per_run:,} visitors per run); 95% intervals, the difference paired by market")
    print(cb.table(table, header))
    return out


# ------------------------------------------------------------------------------------------------ main


def _design(args: argparse.Namespace) -> str:
    """The run design the campaigns used, in words."""
    from ledgerlab.domains.marketing.domain import Settings

    n = args.candidates_per_run if args.candidates_per_run is not None else Settings.candidates_per_run
    factorial = args.factorial if args.factorial is not None else Settings.factorial
    if n <= 1:
        return "A/B runs"
    return f"{'factorial' if factorial else 'A/B/n'} runs of up to {n} candidates"


def _value(text: str) -> Any:
    """A --judge-option value: JSON where it parses (numbers, true/false, [1,2,4]), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=20, help="seeded markets per judge (default 20)")
    ap.add_argument("--budget", type=float, default=2_000_000, help="visitors per campaign (default 2,000,000)")
    ap.add_argument("--visitors-per-run", type=int, default=25_000)
    ap.add_argument("--candidates-per-run", type=int, default=None,
                    help="candidates tested in one run, for every judge (default: the domain's, 3; 1: A/B runs)")
    ap.add_argument("--factorial", action=argparse.BooleanOptionalAction, default=None,
                    help="factorial runs, each visitor getting each change at random (the domain's default); "
                         "--no-factorial: A/B/n runs, one page per visitor against a shared control")
    ap.add_argument("--aa-campaigns", type=int, default=None, help="A/A campaigns per judge (default: --campaigns)")
    ap.add_argument("--no-aa", action="store_true", help="skip the A/A run")
    ap.add_argument("--quick", action="store_true", help="5 campaigns (and 5 A/A): a smoke test")
    ap.add_argument("--judges", nargs="+", choices=list(JUDGES), default=list(JUDGES))
    ap.add_argument("--judge-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a [judge] setting for ledgerlab's judge only, e.g. alpha=0.05 or alpha_policy=lord "
                         "(default: the shipped defaults)")
    ap.add_argument("--proposer", default="knob")
    ap.add_argument("--max-hypotheses", type=int, default=2000, help="a safety cap; the visitor budget binds")
    ap.add_argument("--traffic", choices=("fresh",), default="fresh",
                    help="fresh: every run its own visitors (default); shared: runs as the loop seeds them")
    ap.add_argument("--sweep", type=float, nargs="+", metavar="VISITORS",
                    help="run the judges at each of these budgets instead (no A/A) and print lift by budget; "
                         "writes bench/results/decisions_sweep.json unless --out")
    ap.add_argument("--lengths", type=int, nargs="+", metavar="L",
                    help="also score each campaign's first L hypotheses (e.g. 50 150 300 with --max-hypotheses 300 "
                         "--budget 1e9: false discoveries by campaign length)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.out is None:
        args.out = cb.RESULTS / ("decisions_sweep.json" if args.sweep else "decisions.json")
    args.ours_options = {k: _value(v) for k, v in (o.split("=", 1) for o in args.judge_option)}
    if args.quick:
        args.campaigns = min(args.campaigns, 5)
    aa_campaigns = 0 if args.no_aa else (args.aa_campaigns if args.aa_campaigns is not None else args.campaigns)
    if args.quick:
        aa_campaigns = min(aa_campaigns, 5)

    started, code = time.perf_counter(), cb.code_versions()  # as imported: files may change later
    if args.sweep:
        by_budget = sweep(args)
        print(f"\n{time.perf_counter() - started:.0f} s in all")
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        cb.write_json(args.out, {"settings": settings, "by_budget": by_budget, "code": code})
        print(f"wrote {args.out}")
        return
    rows, optima = run_judges(args, null=False, campaigns=args.campaigns)
    summary = summarize(rows)
    aa_rows: dict[str, list[dict]] = {}
    aa_summary = None
    if aa_campaigns:
        aa_rows, _ = run_judges(args, null=True, campaigns=aa_campaigns)
        aa_summary = summarize(aa_rows)
    elapsed = time.perf_counter() - started
    lengths = by_length(rows, args.lengths) if args.lengths else None
    print_tables(summary, aa_summary, args)
    print_improvement(summary)
    if lengths:
        print_by_length(lengths)
    checked = verdicts(summary)
    print_verdicts(checked)
    print(f"\n{elapsed:.0f} s in all")
    cb.write_json(args.out, {
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "aa_campaigns": aa_campaigns, "fd_tolerance_rel": FD_TOLERANCE, "judges": {
                         name: JUDGES[name] for name in args.judges}},
        "targets": checked, "summary": summary, "aa_summary": aa_summary, "by_length": lengths,
        "optima": {str(i): o for i, o in optima.items()},
        "campaigns": rows, "aa_campaigns": aa_rows, "seconds": elapsed, "code": code,
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
