"""Benchmark the judges (greedy, fixed-n, ours) on simulated campaigns at the same seed noise.

Run: python bench/judge.py [--hypotheses N] [--mix-hypotheses N] [--rho 0.0] [--alpha 0.01]  (~6 min)
Prints a table and writes bench/results/judge.json. `--noise lognormal|t3` plays every stream on that noise
(see bench/_judge_sim.py); `--skew` instead measures false accepts of useless changes on lognormal and t(3)
noise, both directions, at each ρ, and runs per hypothesis of the 90%-null stream on normal noise, for
the defaults and for `accept_from = 1` (accepts from a single run, the behaviour before) in the same run
(writes bench/results/judge_skew.json; ~1 min at the defaults' sizes). Rates carry Clopper–Pearson 95% intervals, mean runs
t-intervals. Effects are in units of the single-run seed noise σ.

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
from pathlib import Path

from ledgerlab.bench import _judge_sim as sim
from ledgerlab.core.judge import JudgeSettings, make_judge

RESULTS = Path(__file__).resolve().parent / "results" / "judge.json"


def bench_one(settings: JudgeSettings, hypotheses: int, rho: float, alpha: float, seed: int,
              mix_hypotheses: int, noise: str = "normal") -> dict:
    """False-accept rate, power (alone, and of 2σ changes among 90% null ones) and mean runs, for one judge."""
    judge = make_judge(settings)
    null = sim.simulate(judge, effects=[(1.0, 0.0)], hypotheses=hypotheses, rho=rho, alpha=alpha, seed=seed,
                        noise=noise)
    power = sim.simulate(judge, effects=[(1.0, 1.0)], hypotheses=hypotheses, rho=rho, alpha=alpha,
                         seed=seed + 1, noise=noise)
    power2 = sim.simulate(judge, effects=[(1.0, 2.0)], hypotheses=hypotheses, rho=rho, alpha=alpha,
                          seed=seed + 2, noise=noise)
    mix = sim.simulate(judge, effects=[(0.9, 0.0), (0.05, 1.0), (0.05, 2.0)], hypotheses=mix_hypotheses, rho=rho,
                       alpha=alpha, seed=seed + 3, noise=noise)
    # The ceiling: each 2σ change alone against an incumbent measured 30 times (its mean all but known).
    known = sim.simulate(judge, effects=[(1.0, 2.0)], hypotheses=hypotheses, rho=rho, alpha=alpha,
                         seed=seed + 4, per_campaign=1, calibration_runs=30, noise=noise)
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


def bench_skew(settings: JudgeSettings, hypotheses: int, rho: float, alpha: float, seed: int,
               mix_hypotheses: int) -> dict:
    """False accepts of useless changes on skewed and heavy-tailed noise, both directions; normal-noise runs."""
    judge = make_judge(settings)
    row: dict = {}
    for i, (noise, metric) in enumerate((n, m) for n in ("lognormal", "t3") for m in (sim.GAIN, sim.LOSS)):
        null = sim.simulate(judge, effects=[(1.0, 0.0)], hypotheses=hypotheses, rho=rho, alpha=alpha,
                            seed=seed + 10 * i, noise=noise, metric=metric)
        row[f"false_accept_{noise}_{metric.direction}"] = sim.rate(null)
    mix = sim.simulate(judge, effects=[(0.9, 0.0), (0.05, 1.0), (0.05, 2.0)], hypotheses=mix_hypotheses,
                       rho=rho, alpha=alpha, seed=seed + 3)
    row["runs_90pct_null"] = sim.mean_ci([o.candidate_runs for o in mix])
    row["power_2sigma_in_mix"] = sim.rate([o for o in mix if o.effect == 2.0])[:3]
    return row


def skew_main(args: argparse.Namespace) -> None:
    """`--skew`: before (accept_from = 1) and after (the defaults), each ρ, on the same seeds."""
    rows = []
    for rho in args.rho:
        for name, s in (("before", JudgeSettings(accept_from=1)), ("defaults", JudgeSettings()),
                        ("trim", JudgeSettings(robust="trim"))):
            row = bench_skew(s, args.hypotheses, rho, args.alpha, args.seed, args.mix_hypotheses)
            row.update(judge=name, rho=rho, alpha=args.alpha, hypotheses=args.hypotheses,
                       mix_hypotheses=args.mix_hypotheses, settings=s.model_dump())
            rows.append(row)
    cols = [f"false_accept_{n}_{d}" for n in ("lognormal", "t3") for d in ("maximize", "minimize")]
    heads = ["lognormal max", "lognormal min", "t3 max", "t3 min"]
    print(f"{'judge':8} {'rho':>4} | " + " | ".join(f"{h:>22}" for h in heads)
          + f" | {'runs, 90% null normal':>22} | {'power 2σ in mix':>22}")
    for r in rows:
        cells = [f"{r[c][0]:.2%} [{r[c][1]:.2%}, {r[c][2]:.2%}]" for c in cols]
        print(f"{r['judge']:8} {r['rho']:4.1f} | " + " | ".join(f"{c:>22}" for c in cells)
              + f" | {_cell(r['runs_90pct_null']):>22} | {_cell(r['power_2sigma_in_mix']):>22}")
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
                    help="false accepts on lognormal and t(3) noise, before and after, instead of the table")
    args = ap.parse_args()
    if args.skew:
        skew_main(args)
        return
    rows = []
    for rho in args.rho:
        for s in (JudgeSettings(kind="greedy"), JudgeSettings(kind="fixed", fixed_n=5), JudgeSettings()):
            row = bench_one(s, args.hypotheses, rho, args.alpha, args.seed, args.mix_hypotheses, args.noise)
            row.update(noise=args.noise, rho=rho, alpha=args.alpha, hypotheses=args.hypotheses, mix_hypotheses=args.mix_hypotheses,
                       settings=s.model_dump())
            rows.append(row)
    print(f"{'judge':7} {'rho':>4} | {'false accept (null)':>26} | {'power 1σ':>24} | {'power 2σ':>24} | "
          f"{'power 2σ among nulls':>24} | {'power 2σ, inc. known':>24} | {'cand. runs, 90% null':>20}")
    for r in rows:
        print(f"{r['judge']:7} {r['rho']:4.1f} | {_cell(r['false_accept']):>26} | {_cell(r['power_1sigma']):>24} | "
              f"{_cell(r['power_2sigma']):>24} | {_cell(r['power_2sigma_in_mix']):>24} | "
              f"{_cell(r['power_2sigma_known_incumbent']):>24} | {_cell(r['runs_90pct_null']):>20}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
