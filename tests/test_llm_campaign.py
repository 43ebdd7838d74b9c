"""Real campaigns with the LLM proposer: `ledgerlab run ... --proposer llm`, litellm over HTTP to a scripted
server (tests/llm_server.py).

Nothing here mocks litellm: the proposer imports it and it talks HTTP to the server on 127.0.0.1. The only
patch is the proposer's own backoff base (seconds → milliseconds), so retries do not sleep. Marketing runs
are in-process A/B tests (~10 s for the longest campaign); the ml_training campaign trains a tiny model in
the sandbox for one second per run and scores it in the evaluator's sandbox (~20 s in all on a CPU). The
last tests pin bugs found here (model text printed as markup, the dollar budget ignoring repair calls and
proposals in flight).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_server import Reply, ScriptedLLMServer, closed_port_url
from typer.testing import CliRunner

import ledgerlab
from ledgerlab.cli.main import app
from ledgerlab.storage.ledger import DuckDBLedger

runner = CliRunner()
MODEL = "openai/test-model"
REPAIR = "Your edit could not be used: "  # the start of the repair message (core/proposers/prompt.py)


def edit(rationale: str, old: str, new: str, file: str = "variant.toml") -> str:
    """A model's answer: the hypothesis paragraph, then one SEARCH/REPLACE block."""
    return f"{rationale}\n\n{file}\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


# Marketing answers. Each good one changes a different lever, so each still applies after an acceptance.
FREE_SHIPPING = "Free shipping removes the most common reason to abandon a cart."
GUEST = "Guest checkout should cut friction at the last step."
TRUST = "Payment badges reassure first-time visitors."
REVIEWS = "Customer reviews under the hero should build trust."
GREEN = "A green call-to-action stands out more against the page."
FORM = "Fewer checkout form fields should lift conversion."
GOOD_1 = edit(FREE_SHIPPING, "free_shipping = false", "free_shipping = true")
MALFORMED = (f"{GUEST}\n\nvariant.toml\n<<<<<<< SEARCH\nguest_checkout = false\n=======\n"
             "guest_checkout = true\n")  # no '>>>>>>> REPLACE' line
GOOD_2 = edit(GUEST, "guest_checkout = false", "guest_checkout = true")
BAD_DIFF = (f"{FORM}\n\n```diff\n--- a/variant.toml\n+++ b/variant.toml\n@@ -12,1 +12,1 @@\n"
            "-form_fields = 9\n+form_fields = 3\n```\n")
GOOD_3 = edit(TRUST, "trust_badges = false", "trust_badges = true")
GOOD_4 = edit(REVIEWS, 'social_proof = "none"', 'social_proof = "reviews"')
GOOD_5 = edit(GREEN, 'cta_color = "blue"', 'cta_color = "green"')

# A key that neither looks like a provider key nor sits in a variable whose name says "key": only the
# proposer's own knowledge of api_key_env can keep it out of the records.
KEY_ENV = "LEDGERLAB_TEST_CREDENTIAL"
KEY = "ll-secret-5e1f0c9a7b3d2468ac"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    from ledgerlab.core.proposers import llm

    monkeypatch.setattr(llm, "BACKOFF_BASE_S", 0.001)


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as made:
        yield made


def cli(*args: str) -> tuple[int, str]:
    """Exit code and output, with rich's line wrapping undone (whitespace runs become one space)."""
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def sql(folder: Path, query: str) -> list[dict[str, Any]]:
    """`ledgerlab sql QUERY --format json`, parsed."""
    result = runner.invoke(app, ["sql", query, "--dir", str(folder), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def events(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """The campaign's events in order, less its signed checkpoints (tests/test_signing.py checks those)."""
    with DuckDBLedger(folder / ".ledgerlab" / "ledger.duckdb") as store:
        return [(row.type, row.event().model_dump(mode="json"))
                for cid in store.campaign_ids() for row in store.read(cid) if row.type != "CheckpointSigned"]


def write_config(folder: Path, **proposer: Any) -> None:
    lines = ["[proposer]"] + [f"{k} = {json.dumps(v)}" for k, v in proposer.items()]
    (folder / "ledgerlab.toml").write_text("\n".join(lines) + "\n")


def run_llm(folder: Path, api_base: str, *args: str, domain: str = "marketing",
            model: str = MODEL) -> tuple[int, str]:
    """`ledgerlab run DOMAIN --proposer llm --model M --api-base URL` with the greedy judge (fast)."""
    return cli("run", domain, "--dir", str(folder), "--proposer", "llm", "--model", model,
               "--api-base", api_base, "--judge", "greedy", "--seed", "3", *args)


def assert_no_secret(folder: Path, output: str) -> None:
    """The key is nowhere: not in any event payload, not in any file under .ledgerlab/, not in the output."""
    payloads = sql(folder, "select payload from events")
    assert payloads and not any(KEY in str(row["payload"]) for row in payloads)
    files = [p for p in (folder / ".ledgerlab").rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in output


# ------------------------------------------------------------------------------------------- marketing


def test_marketing_campaign_through_good_bad_and_failing_answers(tmp_path: Path,
                                                                  server: ScriptedLLMServer) -> None:
    """Good edits run and get verdicts; a malformed block is repaired; a bad diff is rejected; 429, 500 and a
    hang are retried; when the server has nothing left the campaign pauses instead of burning runs."""
    write_config(tmp_path, timeout_s=1.5, retries=1)
    server.script(
        Reply(GOOD_1, prompt_tokens=1200, completion_tokens=80),
        MALFORMED, Reply(GOOD_2, prompt_tokens=1500, completion_tokens=90),  # repaired after one round-trip
        BAD_DIFF, BAD_DIFF,  # twice: PatchRejected
        Reply(status=429), GOOD_3,
        Reply(status=500), GOOD_4,
        Reply(GOOD_5, delay_s=3.0), GOOD_5,  # a hang: the client times out and retries
    )  # then the default: 500 "no scripted reply left", twice → ProviderDownError → paused
    # One candidate per run: each good answer's run starts at once (the checks below follow that order).
    code, out = run_llm(tmp_path, server.url, "--max-hypotheses", "10", "--option", "candidates_per_run=1")
    assert code == 1, out  # paused: needs attention
    assert f"the LLM provider for {MODEL} at {server.url} is unreachable after 2 attempts" in out
    assert "no scripted reply left" in out and f"ledgerlab resume --dir {tmp_path}" in out
    assert "Traceback" not in out
    assert server.count == 13

    seen = events(tmp_path)
    types = [t for t, _ in seen]
    assert types[-1] == "CampaignPaused" and "CampaignFinished" not in types
    pause = seen[-1][1]["reason"]
    assert pause.startswith("agent agent-0: ") and "unreachable" in pause and "resume" in pause

    # The hypotheses, in order, with the model's rationales; the bad diff is a PatchRejected with the reason.
    hyps = sql(tmp_path, "select hypothesis_id, rationale, status, reject_reason, proposer, diff "
                         "from hypotheses order by proposed_at")
    assert [h["rationale"] for h in hyps] == [FREE_SHIPPING, GUEST, FORM, TRUST, REVIEWS, GREEN]
    assert all(h["proposer"] == "llm" for h in hyps)
    assert [h["status"] == "patch_rejected" for h in hyps] == [False, False, True, False, False, False]
    rejected = hyps[2]
    assert rejected["reject_reason"].startswith("patch does not apply")
    assert "hunk 1 was not found in variant.toml (it starts with 'form_fields = 9')" in \
        rejected["reject_reason"]
    assert rejected["reject_reason"].endswith("(after one repair round-trip)")
    assert "form_fields = 9" in rejected["diff"]  # the model's edit is kept for the record
    reasons = [p["reason"] for t, p in seen if t == "PatchRejected"]
    assert reasons == [rejected["reject_reason"]]
    assert "+free_shipping = true" in hyps[0]["diff"] and "+guest_checkout = true" in hyps[1]["diff"]

    # Every good edit ran and has a verdict; no run belongs to anything else; no run after the last answer
    # but that answer's own.
    good = [h["hypothesis_id"] for h in hyps if h["status"] != "patch_rejected"]
    verdicts = sql(tmp_path, "select hypothesis_id, decision, test from verdicts")
    assert sorted(v["hypothesis_id"] for v in verdicts) == sorted(good)
    assert {v["test"] for v in verdicts} == {"greedy"}
    runs = sql(tmp_path, "select hypothesis_id, status from runs")
    assert runs and {r["hypothesis_id"] for r in runs} <= set(good) | {None}
    assert all(r["status"] == "finished" for r in runs)
    last_ok = max(i for i, (t, p) in enumerate(seen) if t == "LLMCallCompleted" and p["ok"])
    after_last_answer = [t for t, _ in seen[last_ok + 1:]]
    assert after_last_answer.count("RunStarted") <= 1  # only the last good edit's own run

    # Every call is a row: 13 calls, the failures with their errors and no tokens, the successes with tokens.
    calls = [p for t, p in seen if t == "LLMCallCompleted"]  # in ledger order
    assert len(calls) == 13
    assert [c["ok"] for c in calls] == [True, True, True, True, True, False, True, False, True, False,
                                        True, False, False]
    assert [c["purpose"] for c in calls][:5] == ["propose", "propose", "repair", "propose", "repair"]
    assert (calls[0]["prompt_tokens"], calls[0]["completion_tokens"]) == (1200, 80)
    assert (calls[2]["prompt_tokens"], calls[2]["completion_tokens"]) == (1500, 90)
    assert all(c["prompt_tokens"] and c["completion_tokens"] for c in calls if c["ok"])
    assert all(c["prompt_tokens"] is None and c["error"] for c in calls if not c["ok"])
    assert "429" in calls[5]["error"] and "500" in calls[7]["error"]
    assert "Timeout" in calls[9]["error"] and 1.4 < calls[9]["latency_s"] < 3.0
    assert all("no scripted reply left" in c["error"] for c in calls[11:])
    assert {c["model"] for c in calls} == {MODEL}
    assert all(c["cost_usd"] is None for c in calls)  # an unknown model's price is unknown, not zero
    (total,) = sql(tmp_path, "select sum(cost_usd) as usd, count(*) as n, "
                             "count(*) filter (where ok) as good, sum(prompt_tokens) as prompt, "
                             "sum(completion_tokens) as completion from llm_calls")
    assert total["usd"] is None  # the spend query works; the price of this model is unknown
    assert (total["n"], total["good"]) == (13, 8)
    assert total["prompt"] == sum(c["prompt_tokens"] for c in calls if c["ok"])
    assert total["completion"] == sum(c["completion_tokens"] for c in calls if c["ok"])

    # The repair round-trip sent the exact error back, after the same prompt and the model's own answer.
    repair = server.requests[2].messages
    assert repair[:2] == server.requests[1].messages
    assert repair[2] == {"role": "assistant", "content": MALFORMED}
    unclosed = "block 1 is not closed: expected a line '>>>>>>> REPLACE'"
    assert repair[3]["content"].startswith(REPAIR + unclosed)
    diff_repair = server.requests[4].messages[-1]["content"]
    assert diff_repair.startswith(REPAIR)
    assert diff_repair.split(REPAIR)[1].split("\n")[0] in rejected["reject_reason"]
    # The prompt is grounded: the program, the incumbent's file, and what was tried (the later prompts).
    first = server.requests[0].prompt
    assert "variant.toml" in first and 'cta_color = "blue"' in first and "conversion" in first
    assert FREE_SHIPPING in server.requests[1].prompt and FORM in server.requests[5].prompt


def test_a_server_that_is_down_pauses_at_once_and_resume_continues_when_it_answers(
    tmp_path: Path,
) -> None:
    url = closed_port_url()
    write_config(tmp_path, retries=2)
    code, out = run_llm(tmp_path, url, "--max-hypotheses", "1")
    assert code == 1, out
    assert "Connection error" in out and "unreachable after 3 attempts" in out and "ledgerlab resume" in out
    seen = events(tmp_path)
    assert seen[-1][0] == "CampaignPaused" and "Connection error" in seen[-1][1]["reason"]
    calls = [p for t, p in seen if t == "LLMCallCompleted"]
    assert len(calls) == 3 and not any(c["ok"] for c in calls)
    assert "HypothesisProposed" not in [t for t, _ in seen]
    # No candidate run was burnt; at most the incumbent's calibration run had started (resume re-runs it).
    assert [r["role"] for r in sql(tmp_path, "select role from runs")] in ([], ["incumbent"])

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with ScriptedLLMServer(port=port) as server:  # the provider is back, at the same address
        server.script(GOOD_1)
        code, out = cli("resume", "--dir", str(tmp_path))
    assert code == 0, out
    assert "finished (max_hypotheses)" in out
    types = [t for t, _ in events(tmp_path)]
    assert "CampaignResumed" in types and types[-1] == "CampaignFinished"
    (hyp,) = sql(tmp_path, "select rationale, status from hypotheses")
    assert hyp["rationale"] == FREE_SHIPPING and hyp["status"] in ("accepted", "rejected")
    assert [p["ok"] for t, p in events(tmp_path) if t == "LLMCallCompleted"] == [False, False, False, True]


def gpt_4o_mini_call_price(monkeypatch: pytest.MonkeyPatch) -> float:
    """What one call of 1M prompt and 100k completion tokens costs, from litellm's local price table."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    price = litellm.model_cost["gpt-4o-mini"]
    per_call = 1_000_000 * price["input_cost_per_token"] + 100_000 * price["output_cost_per_token"]
    assert per_call > 0
    return per_call


def priced_campaign(folder: Path, server: ScriptedLLMServer, answers: tuple[str, ...], limit: float,
                    *args: str) -> tuple[int, str]:
    """A marketing campaign on 'openai/gpt-4o-mini' (a known price); every answer bills 1M + 100k tokens."""
    server.script(*(Reply(answer, prompt_tokens=1_000_000, completion_tokens=100_000) for answer in answers))
    write_config(folder, retries=0)
    return run_llm(folder, server.url, "--max-hypotheses", "10", "--max-cost", repr(limit), *args,
                   model="openai/gpt-4o-mini")


def test_the_dollar_budget_stops_the_campaign_before_it_is_exceeded(
    tmp_path: Path, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    per_call = gpt_4o_mini_call_price(monkeypatch)
    limit = 3.5 * per_call  # after one call: 1 + 2 (a proposal may need a repair call) fits; after two: 2 + 2 does not
    code, out = priced_campaign(tmp_path, server, (GOOD_1, GOOD_3, GOOD_4, GOOD_5), limit)
    assert code == 0, out
    assert "finished (max_cost)" in out
    assert server.count == 2
    seen = events(tmp_path)
    finished = seen[-1]
    assert finished[0] == "CampaignFinished" and finished[1]["reason"] == "max_cost"
    (row,) = sql(tmp_path, "select sum(cost_usd) as usd, count(*) as n, count(cost_usd) as priced "
                           "from llm_calls")
    assert row["n"] == row["priced"] == 2
    assert row["usd"] == pytest.approx(2 * per_call) and row["usd"] <= limit
    assert f"${row['usd']:.4f} spent" in finished[1]["detail"]
    assert len(sql(tmp_path, "select * from verdicts")) == 2  # the paid-for hypotheses were still tested


def test_a_repair_round_trip_does_not_overrun_the_dollar_budget(
    tmp_path: Path, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    per_call = gpt_4o_mini_call_price(monkeypatch)
    limit = 2.5 * per_call
    code, out = priced_campaign(tmp_path, server, (GOOD_1, MALFORMED, GOOD_2, GOOD_3), limit)
    assert code == 0, out
    (row,) = sql(tmp_path, "select sum(cost_usd) as usd from llm_calls")
    assert row["usd"] <= limit, f"spent ${row['usd']:.4f} of ${limit:.4f} allowed"  # today: 3 calls


def test_concurrent_agents_do_not_overrun_the_dollar_budget(
    tmp_path: Path, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    per_call = gpt_4o_mini_call_price(monkeypatch)
    limit = 3.5 * per_call  # after the first two calls (prices unknown until then) there is room for one more
    answers = (GOOD_1, GOOD_2, GOOD_3, GOOD_4, GOOD_5)
    code, out = priced_campaign(tmp_path, server, answers, limit, "--agents", "2")
    assert code == 0, out
    (row,) = sql(tmp_path, "select sum(cost_usd) as usd from llm_calls")
    assert row["usd"] <= limit, f"spent ${row['usd']:.4f} of ${limit:.4f} allowed"  # today: 4 calls


def test_model_text_with_brackets_is_printed_not_parsed(tmp_path: Path, server: ScriptedLLMServer) -> None:
    server.script(edit("Bold [/b] headlines and [tags] convert better.", "free_shipping = false",
                       "free_shipping = true"))
    code, out = run_llm(tmp_path, server.url, "--max-hypotheses", "1")
    assert code == 0, out
    assert "proposes: Bold [/b] headlines and [tags] convert better." in out


def test_a_reasoning_models_think_block_is_kept_out_of_the_hypothesis(tmp_path: Path,
                                                                      server: ScriptedLLMServer) -> None:
    thoughts = "The cart page loses most visitors. Shipping cost is the usual reason. Let me try that."
    server.script(f"\n<think>\n{thoughts}\n</think>\n\n{GOOD_1}")
    code, out = run_llm(tmp_path, server.url, "--max-hypotheses", "1")
    assert code == 0, out
    assert "Shipping cost is the usual reason" not in out and f"proposes: {FREE_SHIPPING}" in out
    (hyp,) = sql(tmp_path, "select rationale from hypotheses")
    assert hyp["rationale"] == FREE_SHIPPING
    (call,) = sql(tmp_path, "select reasoning from llm_calls")
    assert call["reasoning"] == thoughts


def test_the_api_key_is_sent_but_never_recorded(tmp_path: Path, server: ScriptedLLMServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    write_config(tmp_path, api_key_env=KEY_ENV, retries=1)
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}",
                                 "type": "invalid_request_error"}})
    server.script(GOOD_1, Reply(status=401, raw=echo.encode()))  # a provider that echoes the key in its error
    code, out = run_llm(tmp_path, server.url, "--max-hypotheses", "5")
    assert code == 1, out
    assert "rejected the API key" in out and "Incorrect API key provided" in out
    assert server.count == 2  # a refusal is not retried
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)  # the key was used
    assert not any(KEY in r.prompt for r in server.requests)
    assert_no_secret(tmp_path, out)
    pause = events(tmp_path)[-1]
    assert pause[0] == "CampaignPaused" and "[redacted]" in pause[1]["reason"]


def test_a_hosted_model_without_its_key_stops_before_anything_runs(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: litellm knows which variable the provider reads, and the proposer checks it when built."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = runner.invoke(app, ["run", "marketing", "--dir", str(tmp_path), "--proposer", "llm",
                                 "--model", "openai/gpt-4o-mini", "--max-hypotheses", "1"])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: ") and "OPENAI_API_KEY is not set" in line
    assert events(tmp_path) == []  # no campaign started, no baseline run
    assert not list((tmp_path / ".ledgerlab" / "runs").glob("*"))


def test_a_rejected_key_pauses_the_campaign_at_once(tmp_path: Path, server: ScriptedLLMServer) -> None:
    write_config(tmp_path, retries=3)
    server.script(Reply(status=401))
    code, out = run_llm(tmp_path, server.url, "--max-hypotheses", "2")
    assert code == 1, out
    assert server.count == 1  # not retried: a wrong key stays wrong
    assert "rejected the API key" in out and "401" in out and "ledgerlab resume" in out
    assert "unreachable" not in out
    pause = events(tmp_path)[-1]
    assert pause[0] == "CampaignPaused" and "rejected the API key" in pause[1]["reason"]
    assert "\n" not in pause[1]["reason"]


# ------------------------------------------------------------------------------------------ ml_training


HARNESS_EDIT = edit("Evaluating on fewer tokens makes every run faster.",
                    'self.eval_tokens = int(env.get("LEDGERLAB_EVAL_TOKENS", str(65536)))',
                    'self.eval_tokens = 16', file="harness.py")
LR_RATIONALE = "A lower peak learning rate should be more stable in so few steps."
TRAIN_TEMPLATE = Path(ledgerlab.__file__).parent / "domains" / "ml_training" / "template" / "train.py"


def template_line(prefix: str) -> str:
    """The one line of the ml_training template that starts with `prefix`."""
    lines = [line for line in TRAIN_TEMPLATE.read_text().splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"{TRAIN_TEMPLATE} has {len(lines)} lines starting {prefix!r}, the test needs one"
    return lines[0]


def lr_edit() -> str:
    """The model's good answer: halve the template's LR, whatever it is now (a hard-coded SEARCH line went
    stale when the template's LR changed: the edit needed a repair call the script did not have)."""
    lr_line = template_line("LR = ")
    value, comment = lr_line.removeprefix("LR = ").split("#", 1)
    halved = f"LR = {float(value) / 2:g}  #{comment}"
    dropout = template_line("DROPOUT = ")
    return (
        f"{LR_RATIONALE}\n\n"
        f"train.py\n<<<<<<< SEARCH\n{lr_line}\n=======\n{halved}\n>>>>>>> REPLACE\n\n"
        # A second block that shows, in the run's log, the environment the training process sees.
        f"train.py\n<<<<<<< SEARCH\n{dropout}\n=======\n{dropout}\nimport os\n"
        "print('ENV-DUMP', dict(os.environ))\n>>>>>>> REPLACE\n"
    )


# slow: two ML runs. Fast: test_prompt and test_proposer_llm refuse edits outside the artifact,
# test_the_sandbox_environment_has_no_key and test_attacks' secret tests keep the key out of a run.
@pytest.mark.slow
def test_ml_training_campaign_rejects_a_harness_edit_and_tests_a_train_py_edit(
    tmp_path: Path, server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    write_config(tmp_path, api_key_env=KEY_ENV, retries=1, timeout_s=10)
    server.script(HARNESS_EDIT, HARNESS_EDIT, lr_edit())
    code, out = run_llm(tmp_path, server.url, "--max-hypotheses", "2", "--option", "budget_s=1",
                        "--option", "eval_tokens=2048", "--option", "threads=1", "--option", "device=cpu",
                        domain="ml_training")
    assert code == 0, out
    assert "finished (max_hypotheses)" in out

    harness, lr = sql(tmp_path, "select rationale, status, reject_reason, candidate_id from hypotheses "
                                "order by proposed_at")
    assert harness["status"] == "patch_rejected" and harness["candidate_id"] is None
    assert "outside the artifact: harness.py" in harness["reject_reason"]
    assert harness["rationale"] == "Evaluating on fewer tokens makes every run faster."
    assert lr["rationale"] == LR_RATIONALE and lr["status"] in ("accepted", "rejected")
    (verdict,) = sql(tmp_path, "select decision, test, effect from verdicts")
    assert verdict["test"] == "greedy" and verdict["effect"] is not None
    runs = sql(tmp_path, "select role, status, log_path, candidate_id from runs")
    assert sorted(r["role"] for r in runs) == ["candidate", "incumbent"]
    assert all(r["status"] == "finished" for r in runs)
    assert [r["candidate_id"] for r in runs if r["role"] == "candidate"] == [lr["candidate_id"]]
    purposes = [p["purpose"] for t, p in events(tmp_path) if t == "LLMCallCompleted"]
    assert purposes == ["propose", "repair", "propose"]

    # The runs' working copies are gone (keep_workdirs is off); each run's logs stay beside where they were.
    runs_dir = tmp_path / ".ledgerlab" / "runs"
    assert not [p for p in runs_dir.iterdir() if p.is_dir()]
    assert all(Path(r["log_path"]).parent == runs_dir and Path(r["log_path"]).exists() for r in runs)

    # The candidate's training process printed its environment: the key is not in it.
    (candidate,) = [r for r in runs if r["role"] == "candidate"]
    log = Path(candidate["log_path"]).read_text()
    assert "ENV-DUMP" in log and "LEDGERLAB_SEED" in log  # the dump is real ...
    assert KEY not in log and KEY_ENV not in log  # ... and the key is not in it
    assert_no_secret(tmp_path, out)


def test_the_sandbox_environment_has_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledgerlab.core.sandbox import scrubbed_env

    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    env = scrubbed_env(tmp_path, {"LEDGERLAB_SEED": "0"}, threads=1, device="cpu")
    assert not any(KEY in value for value in env.values())
    assert KEY_ENV not in env and "OPENAI_API_KEY" not in env


# ---------------------------------------------------------------------------------------- no litellm


def test_the_default_proposer_never_imports_litellm(tmp_path: Path) -> None:
    code = f"""
import sys
from pathlib import Path
from ledgerlab.core.campaign import Agent, Campaign
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.executors import make_executor
from ledgerlab.core.registry import close_domain, load_domain, load_proposer
from ledgerlab.storage.memory import InMemoryLedger

config = CampaignConfig.model_validate({{"domain": "marketing", "budgets": {{"max_hypotheses": 2}},
                                        "judge": {{"kind": "greedy"}}}})
domain = load_domain("marketing", {{}})
agents = [Agent("agent-0", load_proposer(config.proposer))]
executor = make_executor(config.executor, domain, "marketing", {{}})
try:
    state = Campaign(InMemoryLedger(), domain, config, agents=agents, executor=executor,
                     runs_dir=Path({str(tmp_path / "a")!r})).run()
finally:
    close_domain(domain)
assert state.status == "finished" and len(state.hypotheses) == 2, state.status
assert agents[0].proposer.name == "knob"

from ledgerlab.cli.main import app
try:
    app(["run", "marketing", "--dir", {str(tmp_path / "b")!r}, "--max-hypotheses", "1",
         "--judge", "greedy", "-q"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("litellm", "openai", "tiktoken"))
assert not loaded, loaded
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok")
