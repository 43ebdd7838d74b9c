"""ledgerlab.toml: the campaign configuration, validated into frozen models; the command line overrides it.

One model per table (`[budgets]`, `[judge]` in core/judge_settings.py, `[proposer]`, `[executor]`); each
field's `description` is the comment `ledgerlab init` writes above it. `validated` is the one place a pydantic
ValidationError becomes a one-line ConfigError.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledgerlab.core.judge_settings import JudgeSettings
from ledgerlab.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Budgets(_Section):
    """Stop conditions, each checked before starting work (0 or None: no limit)."""

    max_hypotheses: int | None = Field(default=20, ge=0, description="stop after this many hypotheses (0: no limit)")
    max_runs: int | None = Field(default=None, ge=0, examples=[200], description=(
        "stop after this many runs, incumbent replicates included (unset: no limit)"))
    time_limit: float | None = Field(default=None, ge=0, examples=["2h"], description=(
        "stop after this much active wall-clock time: seconds, or '90s', '30m', '2h', '1h30m'"))
    max_cost_usd: float | None = Field(default=None, ge=0, examples=[5.0], description=(
        "stop once language-model calls have cost this many US dollars (LLM proposers)"))
    max_units: float | None = Field(default=None, ge=0, examples=[1000000], description=(
        "stop after this many domain units have been used (e.g. visitors for marketing)"))

    @field_validator("time_limit", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class ProposerConfig(_Section):
    """Which proposer writes hypotheses, and the LLM settings when it is `llm`."""

    kind: str = Field(default="knob", description=(
        "who writes hypotheses: knob (offline, no API key), random (random knob changes), llm, or a plug-in "
        "from the ledgerlab.proposers entry-point group"))
    model: str | None = Field(default=None, examples=["gpt-4o-mini"], description="llm: the model, as litellm names it")
    api_base: str | None = Field(default=None, examples=["http://localhost:11434"], description=(
        "llm: the provider's URL, e.g. a local server"))
    api_key_env: str | None = Field(default=None, examples=["OPENAI_API_KEY"], description=(
        "llm: the environment variable that holds the API key (the key itself never goes in this file)"))
    temperature: float = Field(default=0.7, description="llm: sampling temperature")
    max_tokens: int = Field(default=2000, description="llm: the longest answer, in tokens")
    timeout_s: float = Field(default=120.0, description="llm: seconds to wait for one answer")
    retries: int = Field(default=3, description="llm: retries when the provider fails, before the campaign pauses")
    history_tokens: int = Field(default=3000, description=(
        "llm: how much of the campaign history (in tokens) the prompt carries"))
    phone_home: bool = Field(default=False, description=(
        "llm: allow the client library's telemetry (off: nothing leaves but the calls)"))


class AgentConfig(ProposerConfig):
    """One of several concurrent agents (`[[agents]]`)."""

    name: str = Field(description="the agent's name in the ledger (hypotheses.agent)")


class ExecutorConfig(_Section):
    """Where runs execute."""

    kind: str = Field(default="local", description=(
        "where runs execute: local (a process pool on this machine), ray (a cluster), or a plug-in from the "
        "ledgerlab.executors entry-point group"))
    workers: int = Field(default=1, ge=1, description="runs in flight at once (one per GPU on GPU machines)")
    ray_address: str | None = Field(default=None, examples=["ray://head-node:10001"], description=(
        "ray: the cluster's address"))
    run_timeout_s: float | None = Field(default=None, examples=[600], description=(
        "kill a run after this many seconds (unset: the domain's own limit)"))
    # See README "Safe runs".
    isolation: Literal["auto", "strict", "process"] = Field(default="auto", description=(
        "how generated code runs: auto (a bubblewrap sandbox where it works, else a plain child process with a "
        "warning), strict (refuse to run without the sandbox), or process (never sandbox)"))
    keep_workdirs: bool = Field(default=False, description=(
        "keep each run's working copy after it ends (for debugging; logs are kept either way)"))

    @field_validator("kind")
    @classmethod
    def _installed(cls, value: str) -> str:
        from ledgerlab.core.registry import EXECUTOR_GROUP, known_name

        return known_name(EXECUTOR_GROUP, value, "executor")


class CampaignConfig(_Section):
    """The whole of ledgerlab.toml."""

    domain: str | None = Field(default=None, description="the domain plug-in (see `ledgerlab domains`)")
    seed: int = Field(default=0, description=(
        "base of every seed: replicate seeds and proposer randomness derive from it"))
    domain_options: dict[str, Any] = Field(default_factory=dict, alias="domain_options",
                                           description="the domain's own options ([domain] table, `--option`)")
    budgets: Budgets = Budgets()
    judge: JudgeSettings = JudgeSettings()
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
    return validated(CampaignConfig, data, source)


def validated(model: type[M], data: dict[str, Any], source: str) -> M:
    """`model` validated from `data`; a ValidationError becomes one ConfigError line: source, key, fix."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        hint = "remove it (see `ledgerlab init` for the known keys)" if err["type"] == "extra_forbidden" else "fix the value"
        raise ConfigError(f"{source}: {where}: {message}; {hint}") from None
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
