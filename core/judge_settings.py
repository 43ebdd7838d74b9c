"""The judge's settings: the `[judge]` table of ledgerlab.toml, and what the loop makes of it.

One model, `JudgeSettings`, is both the table (core/config.py's `CampaignConfig.judge`) and what the judge
runs on (core/judge.py). Each field's `description` is the comment `ledgerlab init` writes above it
(cli/init.py), and `examples` the value it shows for a field that is unset by default. A few fields mean
"derived" when unset (None): `alpha` and `alpha_policy` from the domain (`judge_settings`), `calibration_runs`
from the design (`baseline_runs`), `delta` from the metric, `fdr_decay` in core/alpha.py; `looks` None is the
default looks (old ledgers recorded it so). The loop resolves them with `judge_settings` before the first
event, and the resolved settings are what CampaignStarted.judge records and a resumed campaign reads back
(core/holdback.py's `recorded_settings`).

This module imports no statistics (scipy): core/config.py loads it to validate ledgerlab.toml.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from ledgerlab.core.config import CampaignConfig
    from ledgerlab.core.protocols import MetricSpec

DEFAULT_LOOKS = (1, 2, 3, 4, 6, 8)
SKEW_MAX = 1.0  # core/stats.py's SKEW_MAX (tests/test_config_fields.py checks they agree)
# autoresearch's loop, reproduced: one baseline run, no confirmation runs, no guardrail veto, no holdback
# (unless set).
GREEDY_DEFAULTS: dict[str, Any] = {"calibration_runs": 1, "confirm_runs": 0, "incumbent_seeds": 1,
                                   "guardrails": False, "holdback_max_runs": 0, "holdback_max_pairs": 0}
# The false discovery rate the default alpha policy of concurrent designs holds over a campaign (core/alpha.py).
FDR_TARGET = 0.1


class JudgeSettings(BaseModel):
    """The judge's settings (see core/judge.py for their meaning)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # A name in the `ledgerlab.judges` entry-point group (core/registry.py): built-in or a plug-in.
    kind: str = Field(default="stats", description=(
        "stats: sequential one-sided test that keeps a change only when it is shown to be better by more than "
        "delta; fixed: one test at fixed_n runs; greedy: autoresearch's rule (one run, keep if better; in "
        "campaigns of 50 it keeps about a quarter of useless changes, half with A/B runs); or a plug-in from the "
        "ledgerlab.judges entry-point group"))
    alpha: float | None = Field(default=None, gt=0, lt=1, examples=[0.01], description=(
        "false-accept level: per hypothesis (alpha_policy fixed) or the FDR target (fdr, lord); unset: 0.1 "
        "with fdr, else the domain's level (0.01, marketing 0.05)"))
    alpha_policy: Literal["fixed", "lord", "fdr"] | None = Field(default=None, examples=["fdr"], description=(
        "fdr: online false discovery rate control (ADDIS) over the campaign's stream of hypotheses, the share "
        "of useless accepts stays under alpha at any length; fixed: every hypothesis is tested at alpha (more "
        "accepts, and the useless share grows with length); lord: LORD++; unset: fdr for A/B designs, fixed "
        "otherwise"))
    # "fdr" (core/alpha.py, ADDIS): a decided hypothesis whose p-value is above fdr_tau (discarded) or at most
    # fdr_lambda (a candidate) costs nothing; initial wealth fdr_w0·alpha; the decay is flat over the first
    # fdr_flat costs, then falls as j^−fdr_decay (2 if unset; fdr_flat = 0 and no fdr_decay: LORD++'s γ).
    fdr_lambda: float = Field(default=0.05, gt=0, lt=1, description=(
        "fdr: a decided hypothesis with p at most this is a candidate and costs no wealth"))
    fdr_tau: float = Field(default=0.7, gt=0, le=1, description=(
        "fdr: a decided hypothesis with p above this is discarded (a clearly useless change) and costs no "
        "wealth"))
    fdr_w0: float = Field(default=0.9, gt=0, le=1, description="fdr: the share of alpha spent before the first accept")
    fdr_decay: float | None = Field(default=None, gt=1, examples=[2.0], description=(
        "fdr: the exponent of the decay after the flat stretch (unset: 2)"))
    fdr_flat: int = Field(default=20, ge=0, description=(
        "fdr: the levels stay flat over this many costly hypotheses, then decay"))
    looks: tuple[int, ...] = Field(default=DEFAULT_LOOKS, description=(
        "cumulative candidate runs at which the stats judge looks; alpha is split over them, so peeking is "
        "paid for"))
    fixed_n: int = Field(default=5, ge=2, description=(
        "runs per hypothesis for the fixed judge (at least 2: one run gives no variance)"))
    futility: bool = Field(default=True, description=(
        "stop a hypothesis early when it is unlikely to succeed (most bad ideas cost one run)"))
    futility_p: float = Field(default=0.2, gt=0, le=1, description=(
        "at the first look, drop a hypothesis whose p-value is above this (higher: more power, more runs per "
        "bad idea)"))
    futility_scale: Literal["effect", "p"] = Field(default="effect", description=(
        "effect: later looks keep the first look's bound on the effect, so their p bound tightens; "
        "p: every look drops at p > futility_p"))
    # With fewer residual df than this (the first looks of a campaign), a t p-value is too unsure to drop a
    # hypothesis on: futility then applies only when the effect is ≤ δ, and the levels are computed without
    # futility credit (non-binding), so α holds whichever way each futility check goes. 0: always binding.
    futility_min_df: int = Field(default=2, ge=0, description=(
        "below this many degrees of freedom a futility stop needs the effect to be <= delta (and the alpha "
        "boundaries take no credit for futility); 0: always binding"))
    spending: Literal["information", "equal"] = Field(default="information", description=(
        "how alpha is split over the looks: information (in proportion to runs) or equal"))
    robust: Literal["none", "trim", "winsor"] = Field(default="none", description=(
        "heavy-tailed metrics: none, trim (trimmed means) or winsor (winsorized means)"))
    trim: float = Field(default=0.2, ge=0, lt=0.5, description=(
        "share trimmed or winsorized at each end when robust is not none (below 0.5)"))
    delta: float | None = Field(default=None, examples=[0.01], description=(
        "practical margin: the smallest improvement worth keeping, in metric units (unset: the domain's own)"))
    min_diff_df: int = Field(default=8, ge=0, description=(
        "until this many paired-difference df exist, 2x the single-run variance stands in for the paired "
        "variance (conservative)"))
    min_expected: float = Field(default=5.0, ge=0, description=(
        "proportion metrics: Fisher's exact test instead of the score test when delta is 0 and an expected cell "
        "count is below this"))
    confirm_runs: int = Field(default=2, ge=0, description=(
        "fresh incumbent runs after an accept: the improvement reported comes from them, not from the runs that "
        "selected it"))
    # Unset: 5 for independent designs, whose variance history starts from them (4 df before the first
    # hypothesis), 3 for concurrent ones (each A/B run carries its own variance; the baseline's are A/A checks
    # that cost traffic).
    calibration_runs: int | None = Field(default=None, ge=1, examples=[5], description=(
        "baseline runs at the start of a campaign (unset: 5 for independent designs, 3 for A/B ones)"))
    # core/planner.py: each incumbent run is shared by several hypotheses.
    # 0 is how campaigns recorded before the rotation read back (storage/events.py's upcaster).
    incumbent_seeds: int = Field(default=16, ge=0, description=(
        "independent designs: hypotheses rotate over this many of the incumbent's seeds, so it gathers up to "
        "this many replicates, each shared by several hypotheses (0: no rotation, replicate i of every "
        "hypothesis on the incumbent's seed i)"))
    guardrails: bool = Field(default=True, description=(
        "reject a change the test accepts when one of the domain's guardrail metrics (marketing: revenue per "
        "visitor) is significantly worse; greedy does not check unless this is set"))
    # Concurrent designs: the improvement `status` reports is measured head to head, the incumbent against the
    # baseline in the same windows (a holdback), on runs no selection used (core/holdback.py), reserved from
    # `max_units` so a visitor budget never leaves it unmeasured.
    holdback_precision: float = Field(default=0.05, gt=0, description=(
        "the improvement `status` reports comes from a holdback (A/B: the incumbent vs the baseline in the same "
        "window; independent: both on fresh seeds), enough for a 95% interval of the relative lift of about ± "
        "this; its visitors, runs and time are reserved from the budgets"))
    holdback_max_runs: int = Field(default=12, ge=0, description=(
        "A/B designs: at most this many holdback windows per incumbent (0: no holdback; the improvement is then "
        "the sum of the confirmed effects)"))
    holdback_max_pairs: int = Field(default=6, ge=0, description=(
        "independent designs: the improvement `status` reports comes from k runs of the incumbent and k of the "
        "baseline on fresh seeds at the end, k for ± holdback_precision, at most this (0: none; the improvement "
        "then rests on runs later changes were also judged on, which favours the incumbent)"))
    # Looks below it only drop (futility) or continue, and α is spent over the later looks (pooled A/B counts
    # and per-unit sums are exempt: their test rests on the units, not on runs). With skewed or heavy-tailed
    # noise single-run accepts took 4% of useless changes at α = 1% (docs/judge.md). 1: accepts from look 1.
    accept_from: int = Field(default=3, ge=1, description=(
        "no accept on per-run values before this many candidate runs (one or two runs of a skewed or "
        "heavy-tailed metric cannot carry a change)"))
    # The mean of 3–8 runs of a right-skewed maximized metric (revenue, reward) has a long right tail that the
    # comparison with the incumbent's mean takes for an effect; the paired difference is symmetric under a
    # useless change whatever the noise (stats.skew_below). inf: the comparison whenever its error is smaller.
    skew_max: float = Field(default=SKEW_MAX, gt=0, description=(
        "independent designs: compare the candidate's mean with the incumbent's mean only while the "
        "incumbents' runs are skewed toward improvement by at most this (inf: always)"))

    # Imported discoveries (core/discoveries.py) come with another campaign's accept behind them, so far more of
    # them are real than of a campaign's own ideas. Tested in the campaign's own ADDIS stream they met its first
    # levels (≈ 0.0015) and importers kept 9% of real imports; in an ADDIS stream of their own (v4), 29%; both
    # far behind blind adoption (docs/discoveries.md). Alpha-investing (v5, core/alpha.py's `investing_level`)
    # stakes a share of a wealth that each accepted import refills and each failed one pays from, so a stream of
    # real imports is tested near 0.2 and a flood of useless ones drains it: the imports' marginal FDR stays
    # E[V]/(E[R] + import_wealth/import_alpha) ≤ import_alpha, whatever the imports are.
    import_alpha_policy: Literal["investing", "fdr", "lord", "fixed"] | None = Field(
        default="investing", examples=["investing"], description=(
            "how imported discoveries are tested, in a stream of their own: investing (alpha-investing: each "
            "import stakes import_bet of a wealth that starts at import_wealth, grows by import_alpha per "
            "accepted import and pays for each failed one), fdr or lord (online FDR at import_alpha), fixed "
            "(each import at import_alpha)"))
    import_alpha: float = Field(default=0.1, ge=0, lt=1, description=(
        "the imports' stream: investing, the reward per accepted import and the level of its marginal FDR; "
        "fdr, lord: its FDR target; fixed: each import's level; 0: imports are tested in the campaign's own "
        "stream like its own ideas"))
    import_wealth: float = Field(default=0.5, gt=0, description=(
        "investing: the imports' alpha wealth before any import (a stream of useless imports, however long, "
        "gets at most import_wealth / (1 - import_alpha) of them accepted on average)"))
    import_bet: float = Field(default=0.5, gt=0, lt=1, description=(
        "investing: the share of the imports' wealth one import stakes (0.5 with the defaults: the first "
        "import is tested at 0.2)"))
    import_flat: int = Field(default=2, ge=1, description=(
        "import_alpha_policy fdr: the imports' stream keeps its levels flat over this many costly imports, then "
        "decays"))
    import_futility_p: float = Field(default=0.5, gt=0, le=1, description=(
        "an import is dropped at its first look only when its p-value is above this (0.5: its effect points "
        "the wrong way); its claimed effect earns it the runs to show it"))
    # One 25,000-visitor run shows a +4.6% change at about 0.8 standard errors, so p > 0.5 dropped a real import
    # one time in five (23 of 76 in bench/swarm.py). A laxer bound costs runs on useless imports, so it follows
    # the imports' wealth: the runs go to imports while imports have been paying off (docs/discoveries.md).
    import_futility_trust: float = Field(default=0.9, gt=0, le=1, description=(
        "investing: an import's first-look futility bound while the imports' stream is at its starting level "
        "(0.9: dropped only when its effect is significantly the wrong way); it falls toward "
        "import_futility_p in proportion to the import's level, so failing imports are dropped as before"))

    @field_validator("kind")
    @classmethod
    def _installed(cls, value: str) -> str:
        from ledgerlab.core.registry import JUDGE_GROUP, known_name

        return known_name(JUDGE_GROUP, value, "judge")

    @field_validator("looks", mode="before")
    @classmethod
    def _default_looks(cls, value: Any) -> Any:
        return DEFAULT_LOOKS if value is None else value  # None: what configs recorded before it had a default

    @model_validator(mode="after")
    def _consistent(self) -> JudgeSettings:
        if not self.looks or self.looks[0] < 1 or any(b <= a for a, b in zip(self.looks, self.looks[1:])):
            raise ValueError(f"looks must be positive and strictly increasing, got {list(self.looks)}")
        if self.fdr_lambda >= self.fdr_tau:
            raise ValueError(f"fdr_lambda must be below fdr_tau, got {self.fdr_lambda} and {self.fdr_tau}")
        return self

    def baseline_runs(self, design: str) -> int:
        """The baseline's calibration replicates for a domain of `design` (independent or concurrent)."""
        if self.calibration_runs is not None:
            return self.calibration_runs
        return 5 if design == "independent" else 3

    @property
    def first_accept_look(self) -> int:
        """Index of the first look that may accept: the first at ≥ `accept_from` replicates, else the last."""
        return next((i for i, m in enumerate(self.looks) if m >= self.accept_from), len(self.looks) - 1)

    @property
    def seed_window(self) -> int:
        """The seed rotation's width: `incumbent_seeds`, widened to the most replicates a hypothesis can get
        (1, no rotation, when `incumbent_seeds` is 0)."""
        if self.incumbent_seeds == 0:
            return 1
        from ledgerlab.core.registry import judge_class

        most = judge_class(self.kind).most_runs(self)
        return max(self.incumbent_seeds, most)


def judge_settings(config: CampaignConfig, metric: MetricSpec | None = None,
                   design: str | None = None) -> JudgeSettings:
    """The settings a new campaign's judge runs on: the `[judge]` table with what it leaves unset derived.

    An unset `alpha_policy` is "fdr" for the stats judge on concurrent designs, whose campaigns run hundreds of
    hypotheses (the share of false accepts would grow with their number), else "fixed". An unset `alpha` is
    then FDR_TARGET, else the domain metric's level, if it has one, else 0.01. Greedy takes GREEDY_DEFAULTS
    where a key was not set.
    """
    from ledgerlab.core.config import validated
    from ledgerlab.core.registry import judge_class

    table = config.judge
    judge = judge_class(table.kind)  # its traits: `fdr_by_default`, `defaults` (core/judge.py's JudgeBase)
    data = table.model_dump()
    if data["alpha_policy"] is None:
        data["alpha_policy"] = "fdr" if design == "concurrent" and judge.fdr_by_default else "fixed"
    if data["alpha"] is None:
        fdr = data["alpha_policy"] == "fdr"
        data["alpha"] = FDR_TARGET if fdr else metric.alpha if metric is not None and metric.alpha is not None \
            else 0.01
    data.update({k: v for k, v in judge.defaults.items() if k not in table.model_fields_set})
    return validated(JudgeSettings, data, "[judge]")
