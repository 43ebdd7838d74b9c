"""ledgerlab.toml: the campaign configuration, validated into frozen models; the command line overrides it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledgerlab.core.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Budgets(_Section):
    """Stop conditions, each checked before starting work (0 or None: no limit)."""

    max_hypotheses: int | None = Field(default=20, ge=0)
    max_runs: int | None = Field(default=None, ge=0)
    time_limit: float | None = Field(default=None, ge=0, description="seconds; '30m', '2h' accepted")
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_units: float | None = Field(default=None, ge=0, description="domain units, e.g. visitors")

    @field_validator("time_limit", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class ProposerConfig(_Section):
    """Which proposer writes hypotheses, and the LLM settings when it is `llm`."""

    kind: str = "knob"
    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float = 0.7
    max_tokens: int = 2000
    timeout_s: float = 120.0
    retries: int = 3
    history_tokens: int = 3000
    phone_home: bool = False


class AgentConfig(ProposerConfig):
    """One of several concurrent agents (`[[agents]]`)."""

    name: str


class ExecutorConfig(_Section):
    """Where runs execute."""

    kind: Literal["local", "ray"] = "local"
    workers: int = Field(default=1, ge=1)
    ray_address: str | None = None
    run_timeout_s: float | None = None
    # Sandboxing of generated code: auto (bubblewrap where it works, else a child process with a warning),
    # strict (refuse to run without the sandbox), process (never sandbox). See README "Safe runs".
    isolation: Literal["auto", "strict", "process"] = "auto"
    keep_workdirs: bool = False  # keep each run's working copy after it ends


class JudgeConfig(_Section):
    """The judge's settings (see core/judge.py for their meaning)."""

    kind: Literal["stats", "greedy", "fixed"] = "stats"
    alpha: float | None = Field(default=None, gt=0, lt=1)  # unset: the domain metric's level, else 0.01
    alpha_policy: Literal["fixed", "lord", "fdr"] | None = None  # unset: fdr for concurrent designs, else fixed
    fdr_lambda: float = Field(default=0.05, gt=0, lt=1)
    fdr_tau: float = Field(default=0.7, gt=0, le=1)
    fdr_w0: float = Field(default=0.9, gt=0, le=1)
    fdr_decay: float | None = Field(default=None, gt=1)
    fdr_flat: int = Field(default=20, ge=0)
    looks: tuple[int, ...] | None = None
    fixed_n: int = Field(default=5, ge=1)
    futility: bool = True
    futility_p: float = Field(default=0.2, gt=0, le=1)
    futility_scale: Literal["effect", "p"] = "effect"
    futility_min_df: int = Field(default=2, ge=0)
    spending: Literal["information", "equal"] = "information"
    min_diff_df: int = Field(default=8, ge=0)
    robust: Literal["none", "trim", "winsor"] = "none"
    trim: float = 0.2
    delta: float | None = None
    confirm_runs: int = Field(default=2, ge=0)
    calibration_runs: int | None = Field(default=None, ge=1)  # unset: 5 independent, 3 concurrent
    incumbent_seeds: int = Field(default=16, ge=1)
    guardrails: bool = True
    accept_from: int = Field(default=3, ge=1)  # no run-level accept before this many replicates
    skew_max: float = Field(default=1.0, gt=0)  # inf: compare with the incumbent's mean even on skewed runs
    holdback_precision: float = Field(default=0.05, gt=0)
    holdback_max_runs: int = Field(default=12, ge=0)
    holdback_max_pairs: int = Field(default=6, ge=0)


class CampaignConfig(_Section):
    """The whole of ledgerlab.toml."""

    domain: str | None = None
    seed: int = 0
    domain_options: dict[str, Any] = Field(default_factory=dict, alias="domain_options")
    budgets: Budgets = Budgets()
    judge: JudgeConfig = JudgeConfig()
    proposer: ProposerConfig = ProposerConfig()
    executor: ExecutorConfig = ExecutorConfig()
    agents: tuple[AgentConfig, ...] = ()

    def merged(self, overrides: dict[str, Any]) -> CampaignConfig:
        """A copy with dotted-key overrides applied (`budgets.max_runs`), None values skipped.

        Only keys that were set carry over, so the copy still tells a default from a value someone chose.
        """
        data = self.model_dump(by_alias=True, exclude_unset=True)
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        return validate_config(data, source="the command line")


def parse_duration(text: str) -> float:
    """'90', '90s', '30m', '2h', '1h30m' → seconds."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        return float(cleaned)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ConfigError(f"cannot read the duration {text!r}: write e.g. 90s, 30m, 2h or 1h30m")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return sum(float(n) * scale[u] for n, u in parts)


def validate_config(data: dict[str, Any], source: str) -> CampaignConfig:
    """Validate a config dict; the first problem becomes one line that names the key and the fix."""
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        hint = "remove it (see `ledgerlab init` for the known keys)" if err["type"] == "extra_forbidden" else "fix the value"
        raise ConfigError(f"{source}: {where}: {err['msg']}; {hint}") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: Path) -> CampaignConfig:
    """Read ledgerlab.toml; a missing file gives the defaults, a corrupt one a one-line ConfigError."""
    if not path.exists():
        return CampaignConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name} is not valid TOML ({exc}); fix that line or run `ledgerlab init` in a new folder") from None
    if "domain" in data and isinstance(data["domain"], dict):
        # `[domain]` table: name plus options, the friendlier spelling.
        table = dict(data.pop("domain"))
        data["domain"] = table.pop("name", None)
        data["domain_options"] = {**table, **data.get("domain_options", {})}
    return validate_config(data, source=path.name)
