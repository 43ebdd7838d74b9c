"""Benchmark the judges (greedy, fixed-n, ours) on simulated campaigns at the same seed noise.

Run: python bench/judge.py [--hypotheses N] [--mix-hypotheses N] [--rho 0.0] [--alpha 0.01]  (~6 min)
Prints a table and writes bench/results/judge.json. Each judge is played the way `ledgerlab run --judge
KIND` plays it with no `[judge]` keys set (testing/judge_sim.py's `cli_settings`, `loop_params`): ours and
fixed-n from 5 baseline runs with 2 confirmation runs and the 16-seed rotation; greedy as autoresearch's
loop, one baseline run, no confirmation runs, and every hypothesis compared with the incumbent's single run
on its one seed (a fresh one only after an accept). `--noise lognormal|t3` plays every stream on that noise
(see testing/judge_sim.py). Rates carry Clopper–Pearson 95% intervals, mean runs t-intervals. Effects are in
units of the single-run seed noise σ.

Greedy's "false accept" is a campaign's share of useless changes kept, and it depends on the design and the
campaign's length: every change is compared with the same incumbent run, so a lucky incumbent run blocks
every useless change after it and an unlucky one waves them through until one is kept (then the new
incumbent gets a fresh run). The rate falls with the number of hypotheses per incumbent run, and the table
after the main one gives it at 10, 50 and 200 hypotheses per campaign; an A/B design (each run measures
both arms in its own window) compares every change with a fresh control and keeps about half.

`--skew` instead measures false accepts of useless changes on lognormal (σ_log = 1) and t(3) noise, both
directions, and a maximized lognormal metric with σ_log = 0.5, at each ρ, and next to them the cost on normal noise (runs per hypothesis of the 90%-null
stream, power at 2σ there and in a stream of real 2σ changes), for the defaults and the earlier judges on
the same seeds: `accept_from = 1, skew_max = inf` (before issue 17), `accept_from = 3, skew_max = inf`
(accepts from 3 runs only), `robust = "trim"` (writes bench/results/judge_skew.json; `--jobs 2` runs the
judges in parallel).

Power at 2σ is given three ways, because it depends on how well the incumbent is known: "power 2σ" plays a
stream in which every hypothesis is a real 2σ change (so the incumbent is replaced after most of them and has
only its confirmation runs plus the runs beside the next candidate); "among nulls" is the same change in a
stream where 90% are null (the runs target's setting: incumbents accumulate runs); "inc. known" is the
ceiling, one change against an incumbent measured 30 times. At ρ = 0 and a first look of one run, the
futility bound that keeps null hypotheses near 1.5 runs (p > 0.2) also drops the 2σ changes whose first
z falls below 0.84: about 12% of them when the incumbent is known, 19% when its mean rests on 3 runs.
`bench/judge_frontier.py` shows how much of that any design of this family could win back (little).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ledgerlab.core.judge import JudgeSettings, make_judge
from ledgerlab.testing import judge_sim as sim

RESULTS = Path(__file__).resolve().parent / "results" / "judge.json"
MIX = [(0.9, 0.0), (0.05, 1.0), (0.05, 2.0)]  # the 90%-null stream: 5% at 1σ, 5% at 2σ


def bench_one(settings: JudgeSettings, hypotheses: int, rho: float, alpha: float, seed: int,
              mix_hypotheses: int, noise: str = "normal") -> dict:
    """False-accept rate, power (alone, and of 2σ changes among 90% null ones) and mean runs, for one judge."""
    judge, loop = make_judge(settings), sim.loop_params(settings)

    def play(effects: list[tuple[float, float]], n: int, offset: int, **kw: object) -> list[sim.Outcome]:
        return sim.simulate(judge, effects=effects, hypotheses=n, rho=rho, alpha=alpha, seed=seed + offset,
                            noise=noise, **{**loop, **kw})

    null, power, power2 = play([(1.0, 0.0)], hypotheses, 0), play([(1.0, 1.0)], hypotheses, 1), \
        play([(1.0, 2.0)], hypotheses, 2)
    mix = play(MIX, mix_hypotheses, 3)
    # The ceiling: each 2σ change alone against an incumbent measured 30 times (its mean all but known).
    known = play([(1.0, 2.0)], hypotheses, 4, per_campaign=1, calibration_runs=30)
    return {
        "judge": judge.name,
        "false_accept": sim.rate(null)[:3],
        "power_1sigma": sim.rate(power)[:3],
        "power_2sigma": sim.rate(power2)[:3],
        "power_2sigma_in_mix": sim.rate([o for o in mix if o.effect == 2.0])[:3],
        "power_2sigma_known_incumbent": sim.rate(known)[:3],
        "runs_90pct_null": sim.mean_ci([o.candidate_runs for o in mix]),
        "incumbent_runs_90pct_null": sim.mean_ci([o.incumbent_runs for o in mix]),
    }


def bench_greedy(hypotheses: int, alpha: float, seed: int) -> list[dict]:
    """Greedy's share of useless changes kept, as the CLI runs it, by design and campaign length.

    Independent designs: every change meets the incumbent's one run (ρ plays no part: the candidate's
    run shares the seed's noise with it, so only the run-specific noise decides, scaled alike). A/B: each
    run has its own control arm (conversion 5%, 25,000 visitors per arm and run: a tie is not "better").
    """
    s = sim.cli_settings("greedy")
    judge = make_judge(s)
    rows: list[dict[str, Any]] = []
    for i, per_campaign in enumerate((10, 50, 200)):
        for name, effects in (("all useless", [(1.0, 0.0)]), ("90% useless", MIX)):
            # At least 200 campaigns: the campaign is the unit of its interval (clustered_rate).
            out = sim.simulate(judge, effects=effects, hypotheses=max(hypotheses, 200 * per_campaign), rho=0.0,
                               alpha=alpha, seed=seed + 100 + 10 * i + len(rows), per_campaign=per_campaign,
                               **sim.loop_params(s))
            exact = sim.greedy_useless_kept(per_campaign) if name == "all useless" else None
            rows.append({"design": "independent", "stream": name, "per_campaign": per_campaign,
                         "useless_kept": sim.clustered_rate(out, per_campaign), "exact": exact})
    rng = np.random.default_rng(seed + 200)
    ab = [sim.play_proportion(judge, rng, 0.05, 0.0, 25_000, alpha) for _ in range(hypotheses)]
    rows.append({"design": "A/B", "stream": "all useless", "per_campaign": None, "useless_kept": sim.rate(ab)[:3],
                 "exact": None})
    return rows


def print_greedy(rows: list[dict]) -> None:
    """The greedy table, with what its rate means."""
    print("\ngreedy as `ledgerlab run --judge greedy` plays it: share of useless changes kept "
          "(95% intervals over campaigns)")
    print(f"{'design':12} {'stream':12} {'hypotheses/campaign':>19} | {'useless kept':>24} | {'exact':>6}")
    for r in rows:
        n = "-" if r["per_campaign"] is None else str(r["per_campaign"])
        exact = "" if r["exact"] is None else f"{r['exact']:.4f}"
        print(f"{r['design']:12} {r['stream']:12} {n:>19} | {_cell(r['useless_kept']):>24} | {exact:>6}")
    print("Independent designs compare every change with the incumbent's single run: after a lucky one every "
          "useless change\nis dropped until a real one wins, so the share kept falls with the campaign's length "
          "(it tends to 0, slowly;\n'exact': sim.greedy_useless_kept). A/B runs compare each change with its own "
          "control: about half are 'better'\n(a tie is not).")


# (noise, metric) of the --skew false-accept cells: both directions of the two families, and a
# moderately skewed maximized metric (skewness 1.75), where the skew check has less to go on.
SKEW_CELLS = [(n, m) for n in ("lognormal", "t3") for m in (sim.GAIN, sim.LOSS)] + [("lognormal-0.5", sim.GAIN)]
SKEW_JUDGES: dict[str, dict[str, Any]] = {  # the --skew rows: the defaults and the judges before them, on the same seeds
    "accept_from=1": {"accept_from": 1, "skew_max": float("inf")},
    "accept_from=3": {"skew_max": float("inf")},
    "defaults": {},
    "trim": {"robust": "trim"},
}


def bench_skew(settings: JudgeSettings, hypotheses: int, rho: float, alpha: float, seed: int,
               mix_hypotheses: int) -> dict:
    """False accepts of useless changes on skewed and heavy-tailed noise, both directions; normal-noise cost."""
    judge = make_judge(settings)
    row: dict = {}
    for i, (noise, metric) in enumerate(SKEW_CELLS):
        null = sim.simulate(judge, effects=[(1.0, 0.0)], hypotheses=hypotheses, rho=rho, alpha=alpha,
                            seed=seed + 10 * i, noise=noise, metric=metric)
        row[f"false_accept_{noise}_{metric.direction}"] = sim.rate(null)
    normal = sim.simulate(judge, effects=[(1.0, 0.0)], hypotheses=hypotheses, rho=rho, alpha=alpha, seed=seed + 5)
    row["false_accept_normal"] = sim.rate(normal)
    mix = sim.simulate(judge, effects=MIX, hypotheses=mix_hypotheses, rho=rho, alpha=alpha, seed=seed + 3)
    row["runs_90pct_null"] = sim.mean_ci([o.candidate_runs for o in mix])
    row["power_2sigma_in_mix"] = sim.rate([o for o in mix if o.effect == 2.0])[:3]
    real = sim.simulate(judge, effects=[(1.0, 2.0)], hypotheses=max(hypotheses // 5, 500), rho=rho, alpha=alpha,
                        seed=seed + 2)
    row["power_2sigma"] = sim.rate(real)[:3]
    return row


def _skew_row(job: tuple[str, float, argparse.Namespace]) -> dict:
    name, rho, args = job
    s = JudgeSettings(**SKEW_JUDGES[name])
    row = bench_skew(s, args.hypotheses, rho, args.alpha, args.seed, args.mix_hypotheses)
    row.update(judge=name, rho=rho, alpha=args.alpha, hypotheses=args.hypotheses,
               mix_hypotheses=args.mix_hypotheses, settings=s.model_dump(mode="json"))
    return row


def skew_main(args: argparse.Namespace) -> None:
    """`--skew`: each judge of SKEW_JUDGES at each ρ, on the same seeds."""
    jobs = [(name, rho, args) for rho in args.rho for name in SKEW_JUDGES]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(_skew_row, jobs))
    cols = [f"false_accept_{n}_{m.direction}" for n, m in SKEW_CELLS]
    heads = ["lognormal max", "lognormal min", "t3 max", "t3 min", "lognormal-0.5 max", "normal"]
    print("false accepts of useless changes (Clopper–Pearson 95%); cost on normal noise")
    print(f"{'judge':14} {'rho':>4} | " + " | ".join(f"{h:>20}" for h in heads)
          + f" | {'runs, 90% null':>20} | {'power 2σ in mix':>18} | {'power 2σ, all real':>18}")
    for r in rows:
        cells = [f"{r[c][0]:.2%} [{r[c][1]:.2%}, {r[c][2]:.2%}]" for c in [*cols, "false_accept_normal"]]
        print(f"{r['judge']:14} {r['rho']:4.1f} | " + " | ".join(f"{c:>20}" for c in cells)
              + f" | {_cell(r['runs_90pct_null']):>20} | {_cell(r['power_2sigma_in_mix']):>18}"
              f" | {_cell(r['power_2sigma']):>18}")
    out = RESULTS.with_name("judge_skew.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")


def _cell(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}]" if v[0] < 1 else f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hypotheses", type=int, default=5000)
    ap.add_argument("--mix-hypotheses", type=int, default=20000,
                    help="hypotheses of the 90%%-null stream (runs and power among nulls)")
    ap.add_argument("--rho", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--noise", choices=sim.NOISES, default="normal", help="seed noise of every stream")
    ap.add_argument("--skew", action="store_true",
                    help="false accepts on lognormal and t(3) noise, per judge, instead of the table")
    ap.add_argument("--jobs", type=int, default=1, help="--skew: processes")
    args = ap.parse_args()
    if args.skew:
        skew_main(args)
        return
    rows = []
    for rho in args.rho:
        for s in (sim.cli_settings("greedy"), JudgeSettings(kind="fixed", fixed_n=5), JudgeSettings()):
            row = bench_one(s, args.hypotheses, rho, args.alpha, args.seed, args.mix_hypotheses, args.noise)
            row.update(noise=args.noise, rho=rho, alpha=args.alpha, hypotheses=args.hypotheses,
                       mix_hypotheses=args.mix_hypotheses, settings=s.model_dump(mode="json"))
            rows.append(row)
    print(f"{'judge':7} {'rho':>4} | {'false accept (null)':>26} | {'power 1σ':>24} | {'power 2σ':>24} | "
          f"{'power 2σ among nulls':>24} | {'power 2σ, inc. known':>24} | {'cand. runs, 90% null':>20}")
    for r in rows:
        print(f"{r['judge']:7} {r['rho']:4.1f} | {_cell(r['false_accept']):>26} | {_cell(r['power_1sigma']):>24} | "
              f"{_cell(r['power_2sigma']):>24} | {_cell(r['power_2sigma_in_mix']):>24} | "
              f"{_cell(r['power_2sigma_known_incumbent']):>24} | {_cell(r['runs_90pct_null']):>20}")
    print("false accept: share of useless changes kept (50 hypotheses per campaign; greedy's depends on that, "
          "see below);\npower: share of real changes kept; runs: candidate runs per hypothesis.")
    greedy = bench_greedy(args.hypotheses, args.alpha, args.seed)
    print_greedy(greedy)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"judges": rows, "greedy": greedy}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
