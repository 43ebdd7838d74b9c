"""A campaign simulator that plays hypotheses against a real judge the way the campaign loop does.

Shared by `bench/judge.py` and the judge's tests. A run's value is

    true + √ρ·σ·seed_effect(seed) + √(1−ρ)·σ·noise

so a candidate and the incumbent run on the same seed are correlated by ρ (the pairing correlation). The
metric is minimized (a loss) unless another is given; an effect of e means the candidate's true value is
e·σ better (lower for a loss, higher for a maximized metric). `noise` draws seed_effect and noise from a
distribution with mean 0 and variance 1: "normal"; "lognormal", exp(Z) centred and scaled (σ_log = 1,
skewness 6.2: a long right tail, like latency or revenue); "lognormal-0.5", exp(Z/2) alike (skewness
1.75: moderate); "t3", Student's t with 3 df scaled to unit
variance (symmetric, infinite kurtosis).

Like the loop: the incumbent starts with `calibration_runs` replicates; the k-th hypothesis on an incumbent
runs replicate i on seed seed_base + (k + i) mod `window` (the loop's own `planner.rotation_seeds`), the
incumbent on the matched seeds it lacks (counted apart); on "more" it runs candidate replicates up to
`need`; the incumbent's runs on other seeds are passed as `incumbent_only`. So the incumbent gathers up to
`window` replicates, each shared by the hypotheses that land on its seed. `window=None` instead starts
every hypothesis on seeds no earlier one used (one incumbent run beside each candidate run: the incumbent
never stops gathering), `window=1` starts every hypothesis on the same seed (one lucky incumbent run then
blocks, or an unlucky one waves through, every hypothesis of that incumbent). `history_diffs` holds earlier
hypotheses' differences when they had ≥ 2 pairs, `history_replicates` the incumbents' runs. On accept the
candidate becomes the incumbent with `confirm_runs` fresh replicates, and pairings move past every seed
used to select it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from ledgerlab.core.judge import Evidence, Judge, Judgement, JudgeSettings, judge_settings
from ledgerlab.core.planner import rotation_seeds
from ledgerlab.core.protocols import MetricSpec

LOSS = MetricSpec(name="loss", direction="minimize")
GAIN = MetricSpec(name="gain", direction="maximize")
RATE = MetricSpec(name="conversion", direction="maximize", kind="proportion")
CALIBRATION_RUNS = JudgeSettings().baseline_runs("independent")  # the loop's baseline replicates
WINDOW = JudgeSettings().seed_window  # the loop's seed rotation
MAX_REPLICATES = 64  # fresh seeds per hypothesis (window=None): more than any judge asks for
NOISES = ("normal", "lognormal", "lognormal-0.5", "t3")
_LN_MEAN, _LN_SD = math.exp(0.5), math.sqrt((math.e - 1.0) * math.e)  # exp(Z), Z ~ N(0, 1)
_LN5_MEAN, _LN5_SD = math.exp(0.125), math.sqrt((math.exp(0.25) - 1.0) * math.exp(0.25))  # exp(Z/2)


def standard_noise(rng: np.random.Generator, noise: str) -> float:
    """One draw of mean 0 and variance 1 from the `noise` family (see NOISES)."""
    if noise == "normal":
        return float(rng.standard_normal())
    if noise == "lognormal":
        return (math.exp(float(rng.standard_normal())) - _LN_MEAN) / _LN_SD
    if noise == "lognormal-0.5":
        return (math.exp(0.5 * float(rng.standard_normal())) - _LN5_MEAN) / _LN5_SD
    if noise == "t3":
        return float(rng.standard_t(3)) / math.sqrt(3.0)
    raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")


@dataclass
class Outcome:
    """One hypothesis as played: its true effect, the verdict and what it cost."""

    effect: float
    accepted: bool
    candidate_runs: int
    incumbent_runs: int  # new incumbent runs this hypothesis needed (matched seeds it lacked)
    looks: int
    alpha_spent: float


@dataclass
class Campaign:
    """State of one simulated campaign: the incumbent's runs, the seed effects and the history."""

    rng: np.random.Generator
    rho: float
    sigma: float = 1.0
    history_cap: int = 200  # recent groups passed to the judge (keeps the simulation fast)
    true_incumbent: float = 0.0
    seed_base: int = 0
    seed_effects: dict[int, float] = field(default_factory=dict)
    incumbent_runs: dict[int, float] = field(default_factory=dict)
    past_incumbents: list[tuple[float, ...]] = field(default_factory=list)
    history_diffs: list[tuple[float, ...]] = field(default_factory=list)
    window: int | None = WINDOW  # None: fresh seeds for every hypothesis
    next_seed: int = 0
    on_incumbent: int = 0  # hypotheses played on the current incumbent
    noise: str = "normal"  # see NOISES

    def value(self, true: float, seed: int) -> float:
        """One run's value on `seed`."""
        if seed not in self.seed_effects:
            self.seed_effects[seed] = standard_noise(self.rng, self.noise)
        shared = math.sqrt(self.rho) * self.seed_effects[seed]
        own = math.sqrt(1.0 - self.rho) * standard_noise(self.rng, self.noise)
        return true + self.sigma * (shared + own)

    def start(self, calibration_runs: int) -> None:
        """Run the baseline's calibration replicates."""
        for s in range(self.seed_base, self.seed_base + calibration_runs):
            self.incumbent_runs[s] = self.value(self.true_incumbent, s)
        self.next_seed = self.seed_base + calibration_runs

    def replicates(self) -> tuple[tuple[float, ...], ...]:
        """Incumbent replicate groups: past incumbents' and the current one's."""
        current = tuple(self.incumbent_runs.values())
        return tuple([*self.past_incumbents[-self.history_cap:], current])


def play(judge: Judge, camp: Campaign, effect: float, alpha: float, metric: MetricSpec = LOSS,
         confirm_runs: int = 2) -> Outcome:
    """Play one hypothesis of true improvement `effect`·σ to a final verdict."""
    better = 1.0 if metric.direction == "maximize" else -1.0
    true = camp.true_incumbent + better * effect * camp.sigma
    if camp.window is None:
        seeds = list(range(camp.next_seed, camp.next_seed + MAX_REPLICATES))
    else:
        seeds = rotation_seeds(camp.seed_base, camp.on_incumbent, camp.window)
    camp.on_incumbent += 1
    cand: list[float] = []
    new_inc = 0
    need = judge.first_n()
    while True:
        for k in range(len(cand), need):
            seed = seeds[k]
            cand.append(camp.value(true, seed))
            if seed not in camp.incumbent_runs:
                camp.incumbent_runs[seed] = camp.value(camp.true_incumbent, seed)
                new_inc += 1
        pairs = tuple((c, camp.incumbent_runs[seeds[i]]) for i, c in enumerate(cand))
        matched = set(seeds[: len(cand)])
        others = tuple(v for s, v in camp.incumbent_runs.items() if s not in matched)[-camp.history_cap:]
        ev = Evidence(metric=metric, design="independent", pairs=pairs, incumbent_only=others,
                      history_diffs=tuple(camp.history_diffs[-camp.history_cap:]),
                      history_replicates=camp.replicates())
        j: Judgement = judge.judge(ev, alpha)
        if j.decision == "more":
            if j.need <= len(cand) or j.need > len(seeds):
                raise AssertionError(f"judge asked for {j.need} with {len(cand)} run, {len(seeds)} seeds")
            need = j.need
            continue
        break
    if len(pairs) >= 2:
        camp.history_diffs.append(tuple(c - i for c, i in pairs))
    camp.next_seed = max(camp.next_seed, max(seeds[: len(cand)]) + 1)
    accepted = j.decision == "accept"
    if accepted:
        camp.past_incumbents.append(tuple(camp.incumbent_runs.values()))
        camp.true_incumbent = true
        camp.seed_base = max(camp.incumbent_runs) + 1  # pairings move past every seed used so far
        camp.incumbent_runs, camp.on_incumbent = {}, 0
        camp.start(confirm_runs)
    return Outcome(effect, accepted, len(cand), new_inc, j.look, j.alpha_spent)


def simulate(judge: Judge, *, effects: Sequence[tuple[float, float]], hypotheses: int, rho: float,
             alpha: float, seed: int, per_campaign: int = 50, calibration_runs: int = CALIBRATION_RUNS,
             window: int | None = WINDOW, noise: str = "normal", metric: MetricSpec = LOSS,
             confirm_runs: int = 2) -> list[Outcome]:
    """Play `hypotheses` hypotheses, in campaigns of `per_campaign`; effects: (probability, effect·σ)."""
    rng = np.random.default_rng(seed)
    probs = np.array([p for p, _ in effects], float)
    sizes = [e for _, e in effects]
    out: list[Outcome] = []
    while len(out) < hypotheses:
        camp = Campaign(rng=rng, rho=rho, window=window, noise=noise)
        camp.start(calibration_runs)
        for _ in range(min(per_campaign, hypotheses - len(out))):
            e = sizes[int(rng.choice(len(sizes), p=probs / probs.sum()))]
            out.append(play(judge, camp, e, alpha, metric, confirm_runs))
    return out


def cli_settings(kind: str = "stats") -> JudgeSettings:
    """The judge's settings as `ledgerlab run --judge KIND` makes them with no `[judge]` keys set.

    Greedy then reproduces autoresearch's loop (core/judge_settings.py's GREEDY_DEFAULTS): one baseline run, no
    confirmation runs, every hypothesis on the incumbent's one seed (`incumbent_seeds = 1`).
    """
    from ledgerlab.core.config import CampaignConfig

    return judge_settings(CampaignConfig(judge=JudgeSettings(kind=kind)))  # the loop's own mapping


def loop_params(settings: JudgeSettings) -> dict:
    """`simulate`'s keywords for how the loop plays an independent design under `settings`."""
    return {"calibration_runs": settings.baseline_runs("independent"), "confirm_runs": settings.confirm_runs,
            "window": settings.seed_window}


def greedy_useless_kept(per_campaign: int, grid: int = 4001) -> float:
    """The expected share of useless changes greedy keeps in a campaign of `per_campaign` on normal noise,
    all of them useless, as the CLI plays it (one incumbent run, a fresh one only after an accept).

    With the incumbent's run at x (in units of the run-specific noise, whatever ρ: the seed's share is
    common to both runs), a change is kept with probability Φ(−x). The density of x over campaigns that
    have reached hypothesis k, f_k, starts at φ and is carried forward: f_{k+1} = f_k·Φ(x) + A_k·φ, A_k = ∫f_k·Φ(−x),
    the chance hypothesis k is kept. Returns ΣA_k / per_campaign.
    """
    x = np.linspace(-9.0, 9.0, grid)
    phi, keep = sps.norm.pdf(x), sps.norm.sf(x)
    f, total = phi.copy(), 0.0
    for _ in range(per_campaign):
        a = float(np.trapezoid(f * keep, x))
        total += a
        f = f * (1.0 - keep) + a * phi
    return total / per_campaign


# -------------------------------------------------------------------------------- proportions (A/B)


def play_proportion(judge: Judge, rng: np.random.Generator, p_inc: float, lift: float, trials: int,
                    alpha: float) -> Outcome:
    """One concurrent A/B hypothesis: each run measures both arms on `trials` visitors each."""
    counts: list[tuple[int, int, int, int]] = []
    need = judge.first_n()
    while True:
        while len(counts) < need:
            counts.append((int(rng.binomial(trials, p_inc + lift)), trials,
                           int(rng.binomial(trials, p_inc)), trials))
        j = judge.judge(Evidence(metric=RATE, design="concurrent", counts=tuple(counts)), alpha)
        if j.decision != "more":
            break
        need = j.need
    return Outcome(lift, j.decision == "accept", len(counts), len(counts), j.look, j.alpha_spent)


# ------------------------------------------------------------------------------------ summaries


def rate(outcomes: Sequence[Outcome], level: float = 0.95) -> tuple[float, float, float, int]:
    """Accept rate with its Clopper–Pearson interval: (rate, low, high, accepts)."""
    k, n = sum(o.accepted for o in outcomes), len(outcomes)
    ci = sps.binomtest(k, n).proportion_ci(level, method="exact")
    return k / n, float(ci.low), float(ci.high), k


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean with its t-interval: (mean, low, high)."""
    x = np.asarray(values, float)
    m = float(x.mean())
    if len(x) < 2 or x.std() == 0:
        return m, m, m
    h = float(sps.t.isf((1 - level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def clustered_rate(outcomes: Sequence[Outcome], per_campaign: int, effect: float = 0.0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """Accept rate among hypotheses of true `effect` with a normal interval that treats campaigns (chunks of
    `per_campaign`, as `simulate` plays them) as the independent units: within one campaign the verdicts
    share incumbent runs (greedy's all meet one), so a binomial interval would be too narrow.
    """
    kept, seen = [], []
    for c in range(0, len(outcomes), per_campaign):
        chunk = [o for o in outcomes[c:c + per_campaign] if o.effect == effect]
        kept.append(sum(o.accepted for o in chunk))
        seen.append(len(chunk))
    k, n = np.asarray(kept, float), np.asarray(seen, float)
    r = float(k.sum() / n.sum())
    m = len(k)
    se = math.sqrt(m / (m - 1) * float(np.sum((k - r * n) ** 2))) / float(n.sum()) if m > 1 else math.nan
    z = float(sps.norm.isf((1 - level) / 2))
    return r, r - z * se, r + z * se

