"""The LLM proposer end to end: through litellm over HTTP to a scripted local server (no mocks of litellm)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from llm_server import Reply, ScriptedLLMServer, closed_port_url

from ledgerlab.core.config import ProposerConfig
from ledgerlab.core.protocols import HistoryItem, MetricSpec, ProposalContext
from ledgerlab.errors import ConfigError, ProposalRejected, ProviderDownError, ProviderRefusedError
from ledgerlab.storage.events import LLMCallCompleted

FILES = {"train.py": "LR = 0.01\nWARMUP = 100\n\ndef step():\n    return LR\n"}
PROGRAM_MD = "# Program\nLower val_bpb within five minutes. prepare.py is fixed: never edit it."
GOOD = "Doubling the learning rate should converge faster.\n\ntrain.py\n<<<<<<< SEARCH\nLR = 0.01\n=======\nLR = 0.02\n>>>>>>> REPLACE\n"
NOT_FOUND = "Halve the warmup.\n\ntrain.py\n<<<<<<< SEARCH\nWARMUP = 999\n=======\nWARMUP = 50\n>>>>>>> REPLACE\n"
HARNESS = "Cheat on the evaluation.\n\nprepare.py\n<<<<<<< SEARCH\nEVAL = 1\n=======\nEVAL = 0\n>>>>>>> REPLACE\n"
SECRET = "sk-test-9f8e7d6c5b4a39281706"


class Sink:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as made:
        yield made


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch, server: ScriptedLLMServer) -> None:
    from ledgerlab.core.proposers import llm

    monkeypatch.setattr(llm, "BACKOFF_BASE_S", 0.001)
    server._queue.clear()
    server.requests.clear()


def proposer(server_url: str, **kw: Any):
    from ledgerlab.core.proposers.llm import LLMProposer

    settings = {"kind": "llm", "model": "openai/test-model", "api_base": server_url, "retries": 2, "timeout_s": 5.0}
    return LLMProposer(ProposerConfig(**{**settings, **kw}))


def context(history: tuple[HistoryItem, ...] = ()) -> ProposalContext:
    return ProposalContext(
        domain_name="ml_training", description=PROGRAM_MD, incumbent_id="c0", incumbent_files=FILES,
        metric=MetricSpec(name="val_bpb", direction="minimize", delta=0.001), history=history, agent="agent-7",
    )


# ------------------------------------------------------------------------------------------ proposals


def test_search_replace_answer_becomes_a_proposal_and_an_event(server):
    server.script(Reply(GOOD, prompt_tokens=321, completion_tokens=45))
    sink = Sink()
    proposal = proposer(server.url).propose(context(), sink)
    assert proposal is not None
    assert proposal.files == {"train.py": FILES["train.py"].replace("0.01", "0.02")}
    assert proposal.rationale == "Doubling the learning rate should converge faster."
    (event,) = sink.events
    assert isinstance(event, LLMCallCompleted)
    assert (event.prompt_tokens, event.completion_tokens) == (321, 45)
    assert event.cost_usd is None  # unknown model: unknown price, not zero
    assert event.ok and event.error is None and event.purpose == "propose" and event.agent == "agent-7"
    assert event.model == "openai/test-model" and event.latency_s > 0
    body = server.requests[0].body
    assert body["model"] == "test-model" and body["max_tokens"] == 2000 and body["temperature"] == 0.7


THOUGHTS = ("Okay, the user wants a lower val_bpb. Maybe warmup?\n\ntrain.py\n<<<<<<< SEARCH\nWARMUP = 100\n"
            "=======\nWARMUP = 7\n>>>>>>> REPLACE\n\nNo, the learning rate matters more.")


@pytest.mark.parametrize("answer", [
    f"<think>\n{THOUGHTS}\n</think>\n\n{GOOD}",  # litellm itself splits a block that opens the text
    f"\n  <think>\n{THOUGHTS}\n</think>\n\n{GOOD}",  # ... but not after whitespace
    f"{THOUGHTS}\n</think>\n\n{GOOD}",  # the chat template put the opening tag in the prompt
], ids=["leading", "after-whitespace", "no-opening-tag"])
def test_a_reasoning_models_thoughts_stay_out_of_the_hypothesis(server, answer):
    server.script(answer)
    sink = Sink()
    proposal = proposer(server.url).propose(context(), sink)
    assert proposal.rationale == "Doubling the learning rate should converge faster."
    assert proposal.files == {"train.py": FILES["train.py"].replace("0.01", "0.02")}  # the draft is not applied
    (event,) = sink.events
    assert event.reasoning == THOUGHTS  # kept whole, in the call's event


def test_an_answer_without_thoughts_records_no_reasoning(server):
    server.script(GOOD)
    sink = Sink()
    proposer(server.url).propose(context(), sink)
    assert sink.events[0].reasoning is None


def test_unified_diff_answer(server):
    server.script("Warm up for longer.\n\n```diff\n--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n LR = 0.01\n"
                  "-WARMUP = 100\n+WARMUP = 400\n```\n")
    proposal = proposer(server.url).propose(context(), None)
    assert proposal.files["train.py"] == FILES["train.py"].replace("100", "400")
    assert proposal.rationale == "Warm up for longer."


def test_bad_answer_then_good_repair(server):
    server.script(NOT_FOUND, GOOD)
    sink = Sink()
    proposal = proposer(server.url).propose(context(), sink)
    assert proposal.files["train.py"].startswith("LR = 0.02\n")
    assert [e.purpose for e in sink.events] == ["propose", "repair"]
    repair = server.requests[1].messages
    assert repair[-2] == {"role": "assistant", "content": NOT_FOUND}
    assert repair[-1]["role"] == "user"
    assert "SEARCH text of block 1 was not found in train.py" in repair[-1]["content"]
    assert repair[:2] == server.requests[0].messages  # same prompt, then the exchange


def test_bad_twice_is_rejected_with_the_reason(server):
    server.script(NOT_FOUND, NOT_FOUND)
    with pytest.raises(ProposalRejected, match="was not found in train.py") as caught:
        proposer(server.url).propose(context(), Sink())
    assert caught.value.rationale == "Halve the warmup."
    assert "WARMUP = 999" in caught.value.diff
    assert server.count == 2


def test_editing_a_file_outside_the_artifact_is_rejected(server):
    server.script(HARNESS, HARNESS)
    with pytest.raises(ProposalRejected, match="outside the artifact: prepare.py"):
        proposer(server.url).propose(context(), None)


@pytest.mark.parametrize("garbage", ["", "I cannot help with that.", "<<<<<<< SEARCH\nnonsense"])
def test_garbage_answers_get_one_repair_then_rejection(server, garbage):
    server.script(garbage, garbage)
    with pytest.raises(ProposalRejected):
        proposer(server.url).propose(context(), None)
    assert server.count == 2


# ------------------------------------------------------------------------------------ provider trouble


def test_server_errors_and_rate_limits_are_retried(server):
    server.script(Reply(status=500), Reply(status=429), Reply(raw=b"not json"), GOOD)
    sink = Sink()
    proposal = proposer(server.url, retries=3).propose(context(), sink)
    assert proposal is not None and server.count == 4
    assert [e.ok for e in sink.events] == [False, False, False, True]
    assert "500" in sink.events[0].error and "429" in sink.events[1].error
    assert all(e.cost_usd is None and e.prompt_tokens is None for e in sink.events[:3])


def test_a_provider_that_stays_down_raises_provider_down(server):
    server.script(*[Reply(status=503)] * 3)
    with pytest.raises(ProviderDownError, match="unreachable after 3 attempts"):
        proposer(server.url, retries=2).propose(context(), None)
    assert server.count == 3


def test_a_hang_times_out_and_counts_as_down(server):
    server.script(Reply(GOOD, delay_s=2.0), Reply(GOOD, delay_s=2.0))
    sink = Sink()
    with pytest.raises(ProviderDownError, match="Timeout"):  # waiting out the hang would have got GOOD
        proposer(server.url, retries=1, timeout_s=0.3).propose(context(), sink)
    assert [e.ok for e in sink.events] == [False, False]


def test_a_closed_port_fails_fast():
    sink = Sink()
    with pytest.raises(ProviderDownError, match="Connection error") as caught:  # refused, not a timeout
        proposer(closed_port_url(), retries=2).propose(context(), sink)
    assert len(sink.events) == 3 and not any(e.ok for e in sink.events)
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------------------------- secrets


def test_the_key_is_sent_but_never_recorded(server, monkeypatch):
    monkeypatch.setenv("LEDGERLAB_TEST_KEY", SECRET)
    server.script(GOOD)
    sink = Sink()
    made = proposer(server.url, api_key_env="LEDGERLAB_TEST_KEY")
    made.propose(context(), sink)
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in server.requests[0].prompt
    assert SECRET not in json.dumps([e.model_dump() for e in sink.events]) and SECRET not in repr(made)
    # A provider that echoes the key in its error: refused at once (no retries), and scrubbed everywhere.
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "invalid_request_error"}})
    server.script(Reply(status=401, raw=echo.encode()))
    sink = Sink()
    with pytest.raises(ProviderRefusedError, match="rejected the API key") as caught:
        made.propose(context(), sink)
    assert server.count == 2
    assert SECRET not in str(caught.value) and SECRET not in sink.events[0].error
    assert "[redacted]" in sink.events[0].error


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_key_stops_at_once_with_one_line(server, status):
    server.script(Reply(status=status), GOOD)
    sink = Sink()
    with pytest.raises(ProviderRefusedError) as caught:
        proposer(server.url, retries=3).propose(context(), sink)
    message = str(caught.value)
    assert server.count == 1 and len(sink.events) == 1  # no retries
    assert "rejected the API key" in message and f"{status}" in message and "\n" not in message
    assert "api_key_env" in message  # what to do about it (the CLI adds how to resume)


def test_an_unknown_model_is_refused_at_once(server):
    server.script(Reply(status=404), GOOD)
    with pytest.raises(ProviderRefusedError, match="refused the request"):
        proposer(server.url, retries=3).propose(context(), None)
    assert server.count == 1


@pytest.mark.parametrize(("model", "variable"), [("openai/gpt-4o-mini", "OPENAI_API_KEY"),
                                                 ("anthropic/claude-3-5-haiku-20241022", "ANTHROPIC_API_KEY")])
def test_a_hosted_model_without_its_key_is_a_config_error(monkeypatch, model, variable):
    """litellm's validate_environment is local: no network, no call, nothing started."""
    from ledgerlab.core.proposers.llm import LLMProposer

    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConfigError, match=f"{variable} is not set") as caught:
        LLMProposer(ProposerConfig(kind="llm", model=model))
    assert "api_key_env" in str(caught.value) and "\n" not in str(caught.value)
    monkeypatch.setenv(variable, "placeholder-for-the-check")
    LLMProposer(ProposerConfig(kind="llm", model=model))


def test_no_provider_key_is_demanded_for_a_local_endpoint_or_server(server, monkeypatch):
    from ledgerlab.core.proposers.llm import LLMProposer

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    server.script(GOOD)
    assert proposer(server.url).propose(context(), None) is not None  # --api-base: the placeholder key
    LLMProposer(ProposerConfig(kind="llm", model="ollama/llama3"))  # Ollama's default address needs no key


def test_a_custom_endpoint_without_a_named_key_gets_a_placeholder(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # a real provider key must not leak to a local server
    server.script(GOOD)
    proposer(server.url).propose(context(), None)
    assert server.requests[0].headers["authorization"] == "Bearer ledgerlab-no-key"


def test_settings_problems_are_config_errors(monkeypatch):
    from ledgerlab.core.proposers.llm import LLMProposer

    with pytest.raises(ConfigError, match="needs a model"):
        LLMProposer(ProposerConfig(kind="llm"))
    monkeypatch.delenv("LEDGERLAB_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match="LEDGERLAB_MISSING_KEY"):
        LLMProposer(ProposerConfig(kind="llm", model="openai/x", api_key_env="LEDGERLAB_MISSING_KEY"))


# ----------------------------------------------------------------------------------------------- prompt


def test_the_prompt_carries_program_files_and_history_accepted_first(server):
    def hist(i: int, status: str, rationale: str, p: float | None = None) -> HistoryItem:
        return HistoryItem(hypothesis_id=f"h{i}", agent="agent-0", rationale=rationale, parent_candidate_id="c0",
                           diff="", status=status, p_value=p, effect=0.01 if p else None)

    history = tuple(hist(i, "rejected", f"failed idea {i} " + "x" * 200, 0.5) for i in range(200))
    history += (hist(500, "accepted", "longer warmup worked", 0.001),)
    server.script(GOOD)
    proposer(server.url, history_tokens=600).propose(context(history), None)
    system, user = server.requests[0].messages
    assert "<<<<<<< SEARCH" in system["content"]
    text = user["content"]
    assert PROGRAM_MD in text and FILES["train.py"] in text
    assert text.index("longer warmup worked") < text.index("failed idea")
    history_part = text.split("# What was tried so far", 1)[1].split("# Your task", 1)[0]
    assert len(history_part) / 4 <= 600 + 10
    assert "omitted" in history_part


def test_importing_the_proposer_does_not_import_litellm():
    code = (
        "import sys\n"
        "from ledgerlab.core.config import ProposerConfig\n"
        "from ledgerlab.core.proposers.llm import LLMProposer\n"
        "LLMProposer(ProposerConfig(kind='llm', model='openai/x', api_base='http://127.0.0.1:9/v1'))\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
