"""How much power at 2σ any group-sequential design can buy at ≤ 1.5 runs per hypothesis, by incumbent precision.

`bench/judge.py` measures the judge inside simulated campaigns. This benchmark asks what is possible at all in
the setting where ledgerlab's targets are hardest: no pairing (ρ = 0), so a candidate's runs are compared with
the incumbent's mean, and that mean is known only from the incumbent's m runs. The model is the judge's own
test with the nuisances removed (σ known, so no t-quantile penalty): run values are N(μ, σ²), and at a look with
n candidate runs z = (mean − incumbent mean) / σ√(1/n + 1/m). The incumbent's error is shared by every look.

Designs searched (Monte Carlo on common random numbers): look schedules (1,2,3,4,6,8), (1..8), (1,2,3,5,8);
accept boundaries c·(n/n_K)^−s for s ∈ {0, 0.25, 0.5} (Pocock to O'Brien–Fleming shapes), c calibrated so
that a null hypothesis is accepted with probability α exactly (binding futility credit, the most lenient
valid choice); futility at look k: z < f·(n_k/n_1)^g. The shipped judge's boundaries (`stats.sequential_levels`,
non-binding, and `stats.futility_levels`) are evaluated the same way. "Runs" is the mean number of candidate
runs per hypothesis when 90% are null, 5% are 1σ and 5% 2σ improvements (the runs target's setting).

    python bench/judge_frontier.py            # ~2 min; --paths 50000 for a quick look

Prints, for m = ∞, 30, 10, 5: the shipped design's false accepts, power at 2σ and runs, and the most powerful
design found within 1.5 runs. Writes bench/results/judge_frontier.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

from ledgerlab.core import stats
from ledgerlab.core.judge import JudgeSettings

RESULTS = Path(__file__).resolve().parent / "results" / "judge_frontier.json"
MIX = ((0.9, 0.0), (0.05, 1.0), (0.05, 2.0))  # (share, effect in σ) of the runs target's setting
SCHEDULES = ((1, 2, 3, 4, 6, 8), (1, 2, 3, 4, 5, 6, 7, 8), (1, 2, 3, 5, 8))


@dataclass(frozen=True)
class Design:
    """Boundaries on z per look: accept at z ≥ accept[k]; drop at z < futility[k] (before the last look)."""

    looks: tuple[int, ...]
    accept: tuple[float, ...]
    futility: tuple[float, ...]
    label: str


@dataclass(frozen=True)
class Outcome:
    false_accept: float
    power_2sigma: float
    runs: float


class Paths:
    """Common random numbers: per-run noise and the incumbent mean's error, shared by every design."""

    def __init__(self, paths: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.noise = np.cumsum(rng.standard_normal((paths, 8)), axis=1)  # Σ of the first n runs' noise
        self.incumbent = rng.standard_normal(paths)

    def play(self, d: Design, effect: float, m: float) -> tuple[float, float]:
        """(accept rate, mean candidate runs) of hypotheses with true improvement `effect`·σ."""
        err = self.incumbent / math.sqrt(m) if math.isfinite(m) else 0.0
        alive = np.ones(len(self.incumbent), bool)
        accepted = np.zeros_like(alive)
        runs = np.zeros(len(alive))
        for k, n in enumerate(d.looks):
            z = ((self.noise[:, n - 1] / n + effect) - err) / math.sqrt(1.0 / n + 1.0 / m)
            runs[alive] = n
            hit = alive & (z >= d.accept[k])
            accepted |= hit
            alive &= ~hit
            if k < len(d.looks) - 1:
                alive &= z >= d.futility[k]
        return float(accepted.mean()), float(runs.mean())

    def outcome(self, d: Design, m: float) -> Outcome:
        played = {effect: self.play(d, effect, m) for _, effect in MIX}
        runs = sum(share * played[effect][1] for share, effect in MIX)
        return Outcome(played[0.0][0], played[2.0][0], runs)


def shipped(settings: JudgeSettings) -> Design:
    """The judge's own boundaries for `settings` (non-binding levels, effect-scale futility)."""
    looks = settings.looks
    levels = stats.sequential_levels(settings.alpha, looks, None, settings.spending)
    fut = stats.futility_levels(settings.futility_p, looks, settings.futility_scale)
    return Design(looks, tuple(float(sps.norm.isf(a)) for a in levels),
                  tuple(float(sps.norm.isf(p)) for p in fut), f"shipped (futility_p {settings.futility_p})")


def calibrated(paths: Paths, looks: tuple[int, ...], shape: float, f1: float, growth: float, alpha: float,
               m: float) -> Design:
    """Accept boundaries of `shape` scaled so that a null hypothesis is accepted with probability `alpha`."""
    n = np.asarray(looks, float)
    fut = tuple(float(x) for x in f1 * (n / n[0]) ** growth)
    lo, hi = 1.0, 6.0
    for _ in range(22):
        c = (lo + hi) / 2.0
        d = Design(looks, tuple(float(x) for x in c * (n / n[-1]) ** -shape), fut, "")
        lo, hi = (c, hi) if paths.play(d, 0.0, m)[0] > alpha else (lo, c)
    label = f"looks {looks}, shape {shape}, futility z {f1}·(n/n1)^{growth}"
    return Design(looks, tuple(float(x) for x in hi * (n / n[-1]) ** -shape), fut, label)


def frontier(paths: Paths, m: float, alpha: float, max_runs: float) -> tuple[Design, Outcome] | None:
    """The most powerful searched design whose runs stay within `max_runs`."""
    best: tuple[Design, Outcome] | None = None
    for looks, shape, f1, growth in itertools.product(SCHEDULES, (0.0, 0.25, 0.5), (0.5, 0.6, 0.7, 0.84, 1.0),
                                                      (0.5, 0.75, 1.0)):
        d = calibrated(paths, looks, shape, f1, growth, alpha, m)
        o = paths.outcome(d, m)
        if o.runs <= max_runs and (best is None or o.power_2sigma > best[1].power_2sigma):
            best = (d, o)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=200_000)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--max-runs", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    paths = Paths(args.paths, args.seed)
    rows = []
    print(f"{'incumbent runs m':>16} | {'shipped: FA':>11} {'power 2σ':>8} {'runs':>5} | "
          f"{'best ≤ ' + str(args.max_runs) + ' runs: FA':>20} {'power 2σ':>8} {'runs':>5} | design")
    for m in (math.inf, 30.0, 10.0, 5.0):
        ours = shipped(JudgeSettings(alpha=args.alpha))
        mine = paths.outcome(ours, m)
        best = frontier(paths, m, args.alpha, args.max_runs)
        rows.append({"m": None if math.isinf(m) else m, "shipped": asdict(mine), "shipped_design": asdict(ours),
                     "best": asdict(best[1]) if best else None, "best_design": asdict(best[0]) if best else None})
        b = f"{best[1].false_accept:20.4f} {best[1].power_2sigma:8.3f} {best[1].runs:5.2f} | {best[0].label}" \
            if best else f"{'none within budget':>36} |"
        print(f"{'known' if math.isinf(m) else int(m):>16} | {mine.false_accept:11.4f} {mine.power_2sigma:8.3f} "
              f"{mine.runs:5.2f} | {b}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"alpha": args.alpha, "max_runs": args.max_runs, "paths": args.paths,
                                   "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
