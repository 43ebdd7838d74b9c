"""The LLM proposer: any litellm model (hosted, or a local OpenAI-compatible server through `api_base`).

    [proposer]
    kind = "llm"
    model = "openai/gpt-4o-mini"            # any litellm model string
    api_base = "http://127.0.0.1:8080/v1"   # optional: llama.cpp, vLLM, Ollama ...
    api_key_env = "MY_KEY"                  # optional: else litellm's usual variables (OPENAI_API_KEY ...)

One proposal is one call, plus at most one repair call when the edit is unusable. Every call (retries
included) is reported to the sink as an LLMCallCompleted event. litellm is imported on the first call only
(or when a hosted model's key is checked, see below): it takes seconds to import, and `ledgerlab --help` or
the offline proposers must not pay for it.

What the loop sees:
- a Proposal with the full new files and the model's hypothesis as rationale (a reasoning model's
  <think> block is not part of it: the call's event keeps it as `reasoning`);
- ProposalRejected (reason, rationale, raw edit) when the edit is still unusable after the repair round-trip;
- ProviderDownError when the provider stays unreachable after the retries, ProviderRefusedError at once
  when it refuses the request (a rejected key, an unknown model): pause the campaign, nothing is lost.

A hosted model whose key is not in the environment is a ConfigError when the proposer is built, before the
campaign starts anything (litellm's `validate_environment` knows each provider's variable; it is local).
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from typing import Any

from ledgerlab.core.config import ProposerConfig
from ledgerlab.core.proposers.edits import Answer, apply_answer, split_answer, split_reasoning
from ledgerlab.core.proposers.prompt import build_messages, repair_message
from ledgerlab.core.protocols import EventSink, Proposal, ProposalContext
from ledgerlab.errors import (
    ConfigError,
    PatchError,
    ProposalRejected,
    ProviderDownError,
    ProviderRefusedError,
)
from ledgerlab.storage.events import LLMCallCompleted

# Backoff before retry k (0-based) is BACKOFF_BASE_S * 2**k (capped, with jitter); tests set the base to ~0.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 30.0
PLACEHOLDER_KEY = "ledgerlab-no-key"  # local servers ignore the key, but the OpenAI client insists on one
_RETRYABLE_STATUS = {408, 409, 425, 429}
_KEY_REJECTED_STATUS = {401, 403}
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}|\bBearer\s+\S+")  # OpenAI/Anthropic-style keys, auth headers


class LLMProposer:
    """Asks a language model for a hypothesis and an edit, grounded in the campaign's history."""

    name = "llm"

    def __init__(self, settings: ProposerConfig) -> None:
        if not settings.model:
            raise ConfigError("the llm proposer needs a model: set [proposer] model in ledgerlab.toml or pass --model")
        self.settings = settings
        self._api_key: str | None = None
        if settings.api_key_env:
            self._api_key = os.environ.get(settings.api_key_env) or None
            if self._api_key is None:
                raise ConfigError(
                    f"[proposer] api_key_env names {settings.api_key_env}, but that environment variable is not set"
                )
        elif settings.api_base:
            # A custom endpoint without a named key: never send a provider's key (OPENAI_API_KEY) to it.
            self._api_key = PLACEHOLDER_KEY
        else:
            # A hosted model: without its key every call fails (litellm even reports it as a retryable 500),
            # so say so now, before the campaign trains a baseline. Importing litellm here costs the seconds
            # the first call would pay anyway.
            missing = missing_key_variables(settings.model, settings.phone_home)
            if missing:
                raise ConfigError(
                    f"the model {settings.model} needs an API key, but {' or '.join(missing)} is not set: "
                    f"export it, name another variable with [proposer] api_key_env, or point --api-base at a "
                    f"local server"
                )

    def __repr__(self) -> str:  # never show the key
        return f"LLMProposer(model={self.settings.model!r}, api_base={self.settings.api_base!r})"

    # ------------------------------------------------------------------------------------- proposing

    def propose(self, context: ProposalContext, sink: EventSink | None = None) -> Proposal | None:
        """One hypothesis with its full new files; ProposalRejected, ProviderDownError or ProviderRefusedError."""
        messages = build_messages(context, self.settings.history_tokens)
        text = self._complete(messages, context.agent, sink, purpose="propose")
        answer = split_answer(text)
        try:
            return self._proposal(context, answer)
        except PatchError as first:
            error = self.scrub(str(first))
        messages = [*messages, {"role": "assistant", "content": text}, {"role": "user", "content": repair_message(error)}]
        text = self._complete(messages, context.agent, sink, purpose="repair")
        repaired = split_answer(text)
        try:
            return self._proposal(context, repaired, fallback_rationale=answer.rationale)
        except PatchError as second:
            raise ProposalRejected(
                f"{self.scrub(str(second))} (after one repair round-trip)",
                rationale=self.scrub(repaired.rationale or answer.rationale),
                diff=self.scrub(repaired.edit_text or answer.edit_text),
            ) from None

    def _proposal(self, context: ProposalContext, answer: Answer, fallback_rationale: str = "") -> Proposal:
        files = apply_answer(context.incumbent_files, answer)
        changed = sorted(name for name in files if files[name] != context.incumbent_files[name])
        rationale = answer.rationale or fallback_rationale or f"LLM edit of {', '.join(changed)} (no hypothesis stated)"
        return Proposal(rationale=self.scrub(rationale), files=files)

    # --------------------------------------------------------------------------------------- calling

    def _complete(self, messages: list[dict[str, str]], agent: str, sink: EventSink | None, purpose: str) -> str:
        """The completion's text; retries transient failures with backoff, then raises ProviderDownError.
        A refusal (4xx) raises ProviderRefusedError at once."""
        litellm = _litellm(self.settings.phone_home)
        attempts = 1 + max(0, self.settings.retries)
        last = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
            started = time.perf_counter()
            try:
                response = litellm.completion(**self._request(messages))
            except Exception as exc:  # noqa: BLE001 - every provider failure is classified below
                latency = time.perf_counter() - started
                last = self.scrub(_describe(exc))
                self._emit(sink, agent, purpose, latency, ok=False, error=last)
                if _key_rejected(litellm, exc):
                    raise ProviderRefusedError(
                        f"the LLM provider rejected the API key for {self.settings.model} ({last}); "
                        f"{self._key_hint()}"
                    ) from None
                if not _retryable(litellm, exc):
                    raise ProviderRefusedError(
                        f"the LLM provider refused the request for {self.settings.model}: {last}"
                    ) from None
                continue
            latency = time.perf_counter() - started
            usage = getattr(response, "usage", None)
            # A reasoning model's thoughts go to the event, never into the hypothesis or the edit (a draft
            # SEARCH block in them must not be applied).
            thoughts, answer = split_reasoning(_content(response))
            reasoning = "\n\n".join(part for part in (_reasoning_content(response), thoughts) if part)
            self._emit(
                sink, agent, purpose, latency, ok=True, error=None,
                prompt_tokens=getattr(usage, "prompt_tokens", None),
                completion_tokens=getattr(usage, "completion_tokens", None),
                cost=_cost(litellm, response), reasoning=self.scrub(reasoning) or None,
            )
            return answer
        where = f" at {re.sub(r'//[^/@]*@', '//', self.settings.api_base)}" if self.settings.api_base else ""
        raise ProviderDownError(
            f"the LLM provider for {self.settings.model}{where} is unreachable after {attempts} attempts "
            f"(last: {last}); the campaign can resume once it answers"
        )

    def _key_hint(self) -> str:
        """Where the key this proposer sends comes from, as an instruction."""
        if self.settings.api_key_env:
            return f"put a valid key in {self.settings.api_key_env}"
        if self.settings.api_base:
            return "this endpoint wants a key: set [proposer] api_key_env to the variable that holds it"
        return "put a valid key in the provider's variable (see litellm's docs) or name one with [proposer] api_key_env"

    def _request(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "timeout": self.settings.timeout_s,
            "max_retries": 0,  # retries are ours, so each attempt is an event and the backoff is ours
            "num_retries": 0,
            "drop_params": True,  # models that reject e.g. temperature get the call without it
        }
        if self.settings.api_base:
            request["api_base"] = self.settings.api_base
        if self._api_key:
            request["api_key"] = self._api_key
        return request

    def _emit(
        self, sink: EventSink | None, agent: str, purpose: str, latency: float, *, ok: bool, error: str | None,
        prompt_tokens: int | None = None, completion_tokens: int | None = None, cost: float | None = None,
        reasoning: str | None = None,
    ) -> None:
        if sink is None:
            return
        sink.emit(
            LLMCallCompleted(
                call_id=uuid.uuid4().hex, agent=agent, model=str(self.settings.model),
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
                latency_s=round(latency, 6), ok=ok, error=error, purpose=purpose, reasoning=reasoning,
            )
        )

    # --------------------------------------------------------------------------------------- secrets

    def scrub(self, text: str) -> str:
        """`text` without the API key, any provider key from the environment, or anything shaped like one."""
        secrets = {self._api_key} if self._api_key and self._api_key != PLACEHOLDER_KEY else set()
        secrets |= {
            value for name, value in os.environ.items()
            if len(value) >= 8 and re.search(r"(API_KEY|_KEY|TOKEN|SECRET)$", name)
        }
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "[redacted]")
        return _KEY_LIKE.sub("[redacted]", text)


# -------------------------------------------------------------------------------------- litellm glue


def _litellm(phone_home: bool) -> Any:
    """Import litellm (slow; first call only), with its price map read locally unless asked otherwise."""
    if not phone_home:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on every error
    return litellm


def missing_key_variables(model: str, phone_home: bool = False) -> list[str]:
    """The API-key variables a hosted `model` needs and the environment lacks (empty when it has one).

    Only *_API_KEY names count: litellm also lists e.g. OLLAMA_API_BASE, which has a local default, and
    cloud credentials (AWS, Vertex) that may come from a profile instead of the environment."""
    found = _litellm(phone_home).validate_environment(model=model)
    if found.get("keys_in_environment"):
        return []
    return [name for name in found.get("missing_keys", []) if name.endswith("API_KEY")]


def _key_rejected(litellm: Any, exc: Exception) -> bool:
    """The provider said the key is wrong or lacks the right (401/403)."""
    refused = tuple(
        cls for cls in (getattr(litellm, name, None) for name in ("AuthenticationError", "PermissionDeniedError"))
        if isinstance(cls, type)
    )
    status = getattr(exc, "status_code", None)
    return isinstance(exc, refused) or status in _KEY_REJECTED_STATUS


def _retryable(litellm: Any, exc: Exception) -> bool:
    transient = tuple(
        cls for cls in (
            getattr(litellm, name, None)
            for name in ("Timeout", "APIConnectionError", "RateLimitError", "InternalServerError",
                         "ServiceUnavailableError", "BadGatewayError", "APIResponseValidationError")
        ) if isinstance(cls, type)
    )
    if isinstance(exc, transient):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in _RETRYABLE_STATUS or status >= 500)


def _describe(exc: Exception) -> str:
    """One line: the error's class, status and the start of its message."""
    message = " ".join(str(getattr(exc, "message", None) or exc).split())
    # litellm repeats the class: "litellm.RateLimitError: RateLimitError: OpenAIException - the message".
    message = re.sub(r"^(litellm\.\w+:\s*)?(\w+Error:\s*)?(\w+Exception\s*-\s*)?", "", message)
    status = getattr(exc, "status_code", None)
    head = type(exc).__name__ + (f" {status}" if isinstance(status, int) else "")
    return f"{head}: {message[:300]}"


def _cost(litellm: Any, response: Any) -> float | None:
    """The call's price from litellm's table; None when the model's price is unknown (never a fake 0)."""
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # noqa: BLE001 - unknown model or provider: the price is unknown
        return None
    return float(cost) if cost is not None else None


def _content(response: Any) -> str:
    try:
        return response.choices[0].message.content or ""
    except (AttributeError, IndexError, TypeError):
        return ""


def _reasoning_content(response: Any) -> str:
    """The thoughts litellm or the provider already split off the answer (`reasoning_content`), or ""."""
    try:
        return str(getattr(response.choices[0].message, "reasoning_content", None) or "").strip()
    except (AttributeError, IndexError, TypeError):
        return ""
