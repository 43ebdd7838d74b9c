"""The LLM conversation's two ends, without a server: the prompt we build and the answers we parse."""

from __future__ import annotations

import pytest

from ledgerlab.core.proposers.edits import apply_answer, split_answer, split_reasoning
from ledgerlab.core.proposers.prompt import build_messages, estimate_tokens, rank_history, render_history
from ledgerlab.core.protocols import HistoryItem, Knob, MetricSpec, ProposalContext
from ledgerlab.errors import PatchError

METRIC = MetricSpec(name="val_bpb", direction="minimize", delta=0.002)
FILES = {
    "train.py": "LR = 0.01\nWARMUP = 100\n\ndef step():\n    return LR\n",
    "config.toml": "batch = 32\nlayers = 4\n",
}


def item(i: int, status: str = "rejected", effect: float | None = None, p: float | None = None, **kw) -> HistoryItem:
    return HistoryItem(
        hypothesis_id=f"h{i}", agent="agent-0", rationale=kw.pop("rationale", f"idea number {i}"),
        parent_candidate_id="c0", diff=kw.pop("diff", f"--- a/train.py\n+++ b/train.py\n-LR = 0.01\n+LR = 0.0{i}\n"),
        status=status, effect=effect, p_value=p, **kw,
    )


def context(history=(), description="Lower val_bpb. Never edit prepare.py.", **kw) -> ProposalContext:
    return ProposalContext(
        domain_name="ml", description=description, metric=METRIC, incumbent_id="c0",
        incumbent_files=FILES, history=tuple(history), **kw,
    )


# ---------------------------------------------------------------------------------------------- prompt


def test_prompt_has_instructions_metric_files_and_format():
    knob = Knob(name="LR", file="train.py", kind="float", low=1e-4, high=1.0, log=True)
    system, user = build_messages(context(knobs=(knob,)), history_tokens=1000)
    assert system["role"] == "system" and user["role"] == "user"
    assert "<<<<<<< SEARCH" in system["content"] and ">>>>>>> REPLACE" in system["content"]
    assert "One paragraph" in system["content"]
    body = user["content"]
    assert "Lower val_bpb. Never edit prepare.py." in body
    assert "val_bpb" in body and "lower is better" in body and "0.002" in body
    for name, text in FILES.items():
        assert name in body and text in body
    assert "LR in train.py" in body
    assert "first hypothesis" in body  # empty history says so


def test_history_puts_accepted_first_with_effects_and_reasons():
    history = [
        item(1, "rejected", effect=-0.01, p=0.4, reason="no improvement"),
        item(2, "accepted", effect=0.03, p=0.001, rationale="raise warmup"),
        item(3, "patch_rejected", reason="SEARCH text was not found"),
        item(4, "accepted", effect=0.01, p=0.004, rationale="cosine schedule"),
    ]
    text = render_history(history, METRIC, budget_tokens=2000)
    lines = [line for line in text.splitlines() if line.startswith("- [")]
    assert "raise warmup" in lines[0] and "cosine schedule" in lines[1]  # accepted, oldest first
    assert "ACCEPTED, effect +0.03, p=0.001" in lines[0]
    assert any("edit unusable" in line and "SEARCH text was not found" in line for line in lines)
    assert any("effect -0.01, p=0.4" in line and "no improvement" in line for line in lines)
    assert "edit: -LR = 0.01 | +LR = 0.02" in text  # the edit's changed lines are shown


def test_history_fits_the_budget_and_never_cuts_the_instructions():
    description = "Instructions. " * 2000  # far more than the budget: still sent whole
    history = [item(i, effect=0.001 * (i % 7), p=0.5) for i in range(500)]
    history[3] = item(3, "accepted", effect=0.05, p=0.0001, rationale="the one that worked")
    history[10] = item(10, "rejected", effect=-0.02, p=0.0002, rationale="a clear loser")
    budget = 400
    _, user = build_messages(context(history, description=description), history_tokens=budget)
    body = user["content"]
    assert description.strip() in body
    section = body.split("# What was tried so far\n\n", 1)[1].split("\n\n# Your task", 1)[0]
    assert estimate_tokens(section) <= budget
    assert "the one that worked" in section  # accepted first
    assert "a clear loser" in section  # the most informative rejected one survives the cut
    assert "hypotheses omitted" in section.splitlines()[-1]
    assert "idea number 499" in section  # the most recent one too


def test_rank_interleaves_recent_and_informative():
    history = [item(i, p=0.9) for i in range(10)] + [item(99, "accepted")]
    history[0] = item(0, p=0.001)
    ranked = [h.hypothesis_id for h in rank_history(history)]
    assert ranked[:3] == ["h99", "h9", "h0"]
    assert sorted(ranked) == sorted(h.hypothesis_id for h in history)


# ----------------------------------------------------------------------------------------------- edits

GOOD = """Hypothesis: a higher learning rate converges faster
within the fixed budget.

train.py
```python
<<<<<<< SEARCH
LR = 0.01
=======
LR = 0.02
>>>>>>> REPLACE
```
"""


def test_search_replace_with_fence_and_rationale():
    answer = split_answer(GOOD)
    assert answer.kind == "search_replace"
    assert answer.rationale == "a higher learning rate converges faster within the fixed budget."
    assert answer.edit_text.startswith("train.py\n")
    new = apply_answer(FILES, answer)
    assert new["train.py"] == FILES["train.py"].replace("LR = 0.01", "LR = 0.02")
    assert new["config.toml"] == FILES["config.toml"]


def test_several_blocks_in_two_files_apply_in_order():
    text = (
        "Bigger and slower.\n\n**train.py**\n<<<<<<< SEARCH\nLR = 0.01\n=======\nLR = 0.005\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nWARMUP = 100\n=======\nWARMUP = 200\n>>>>>>> REPLACE\n\n"
        "`config.toml`\n<<<<<<< SEARCH\nlayers = 4\n=======\nlayers = 6\n>>>>>>> REPLACE\n"
    )
    new = apply_answer(FILES, split_answer(text))  # the 2nd block reuses the 1st block's file name
    assert "LR = 0.005\nWARMUP = 200\n" in new["train.py"]
    assert new["config.toml"] == "batch = 32\nlayers = 6\n"


def test_trailing_whitespace_and_missing_final_newline_are_tolerated():
    files = {"a.py": "x = 1   \ny = 2"}
    text = "Tweak.\n\na.py\n<<<<<<< SEARCH\nx = 1\ny = 2\n=======\nx = 1\ny = 3\n>>>>>>> REPLACE\n"
    assert apply_answer(files, split_answer(text)) == {"a.py": "x = 1\ny = 3"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I think we should change things.", "no edit found"),
        ("", "no edit found"),
        ("Why.\n\ntrain.py\n<<<<<<< SEARCH\nLR = 0.5\n=======\nLR = 1\n>>>>>>> REPLACE\n", "was not found in train.py"),
        ("Why.\n\ntrain.py\n<<<<<<< SEARCH\n=======\nLR = 1\n>>>>>>> REPLACE\n", "is empty"),
        ("Why.\n\nprepare.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "outside the artifact: prepare.py"),
        ("Why.\n\n<<<<<<< SEARCH\nLR = 0.01\n=======\nLR = 1\n>>>>>>> REPLACE\n", "has no file name"),
        ("Why.\n\ntrain.py\n<<<<<<< SEARCH\nLR = 0.01\n=======\nLR = 1\n", "not closed"),
        ("Why.\n\ntrain.py\n<<<<<<< SEARCH\nLR = 0.01\n=======\nLR = 0.01\n>>>>>>> REPLACE\n", "changes nothing"),
    ],
)
def test_unusable_edits_say_why(text, message):
    with pytest.raises(PatchError, match=message):
        apply_answer(FILES, split_answer(text))


def test_ambiguous_search_is_rejected():
    files = {"a.py": "x = 1\nx = 1\n"}
    with pytest.raises(PatchError, match="matches 2 places"):
        apply_answer(files, split_answer("Why.\n\na.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"))


def test_a_single_file_artifact_needs_no_file_name():
    files = {"a.py": "x = 1\n"}
    new = apply_answer(files, split_answer("Why.\n\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"))
    assert new == {"a.py": "x = 2\n"}


DIFF = """Warm up longer.

```diff
--- a/train.py
+++ b/train.py
@@ -1,2 +1,2 @@
 LR = 0.01
-WARMUP = 100
+WARMUP = 300
```
That should help.
"""


def test_unified_diff_applies():
    answer = split_answer(DIFF)
    assert answer.kind == "diff" and answer.rationale == "Warm up longer."
    assert apply_answer(FILES, answer)["train.py"] == FILES["train.py"].replace("100", "300")


def test_unified_diff_with_wrong_line_numbers_applies_by_content():
    text = "Why.\n\n--- train.py\n+++ train.py\n@@ -40,7 +40,9 @@\n def step():\n-    return LR\n+    return LR * 2\n"
    assert apply_answer(FILES, split_answer(text))["train.py"].endswith("    return LR * 2\n")


@pytest.mark.parametrize(
    ("diff", "message"),
    [
        ("--- a/prepare.py\n+++ b/prepare.py\n@@ -1 +1 @@\n-a\n+b\n", "outside the artifact"),
        ("--- a/train.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-LR = 0.01\n", "deleting files"),
        ("--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-LR = 0.7\n+LR = 0.8\n", "does not apply"),
    ],
)
def test_bad_diffs_are_rejected(diff, message):
    with pytest.raises(PatchError, match=message):
        apply_answer(FILES, split_answer("Why.\n\n" + diff))


def test_long_rationale_is_one_capped_paragraph():
    answer = split_answer("# Hypothesis\n\n" + "word " * 1000 + "\n\nmore\n\ntrain.py\n<<<<<<< SEARCH\n")
    assert "\n" not in answer.rationale and len(answer.rationale) <= 1200
    assert answer.rationale.endswith("…")


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        ("<think>\nhmm\n</think>\n\nThe answer.", "hmm", "The answer."),
        ("  \n<thinking>hmm</thinking>The answer.", "hmm", "The answer."),
        ("hmm, the template opened it\n</think>\nThe answer.", "hmm, the template opened it", "The answer."),
        ("<think>cut off by max_tokens", "cut off by max_tokens", ""),
        ("The answer.", "", "The answer."),
        # A tag further in is the model's text (or a file's), not its thoughts: left alone.
        ("The answer <think>x</think> goes on.", "", "The answer <think>x</think> goes on."),
        ("Tweak.\n\na.py\n<<<<<<< SEARCH\n</think>\n=======\n\n>>>>>>> REPLACE\n", "",
         "Tweak.\n\na.py\n<<<<<<< SEARCH\n</think>\n=======\n\n>>>>>>> REPLACE\n"),
        ("Tweak.\n\n```diff\n--- a/p.md\n+++ b/p.md\n@@ -1 +1 @@\n-</think>\n+x\n```\n", "",
         "Tweak.\n\n```diff\n--- a/p.md\n+++ b/p.md\n@@ -1 +1 @@\n-</think>\n+x\n```\n"),
    ],
)
def test_reasoning_is_split_off_the_front_only(text, reasoning, answer):
    assert split_reasoning(text) == (reasoning, answer)
