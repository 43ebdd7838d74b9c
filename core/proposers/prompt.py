"""The LLM proposer's prompt: format rules, the domain's instructions, the incumbent's files, a compact history.

The instructions, metric and files are always sent whole; only the history is cut to fit its token budget
(`[proposer] history_tokens`). Accepted changes come first, then the most informative and the most recent
of the others, so the model builds on what worked and does not repeat what failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ledgerlab.core.protocols import HistoryItem, MetricSpec, ProposalContext

TokenCounter = Callable[[str], int]

RATIONALE_CHARS = 300  # per history item
DIFF_LINES = 6  # changed lines shown per history item
DIFF_LINE_CHARS = 120


def estimate_tokens(text: str) -> int:
    """A provider-independent token estimate: about four characters per token."""
    return (len(text) + 3) // 4


# ------------------------------------------------------------------------------------------- messages


def system_message(example_file: str) -> str:
    """The role and the strict answer format (never truncated)."""
    return f"""You are a careful research engineer running a campaign of experiments. Each of your answers proposes
ONE hypothesis: a single focused change to the experiment's files that you expect to improve the metric.
Every proposal is tested with replicated runs and a statistical test; only real improvements are kept.

Answer in exactly this format, with nothing else:
1. One paragraph (at most five sentences, no heading) stating the hypothesis: what you change and why you
   expect it to improve the metric.
2. The edit, as one or more SEARCH/REPLACE blocks. The line before each block is the file's name, alone:

{example_file}
<<<<<<< SEARCH
the exact lines to change, copied from the current file
=======
the new lines
>>>>>>> REPLACE

Rules for the edit:
- The SEARCH section must match the current file exactly, including indentation and blank lines, and must
  occur exactly once in it: include enough surrounding lines to make it unique.
- Only the files shown may change; do not create, delete or rename files.
- Keep each block short: only the lines that change plus a little context.
- Instead of SEARCH/REPLACE blocks you may give one unified diff (--- a/FILE, +++ b/FILE, @@ hunks) in a
  ```diff fence.
- Do not repeat a change the history shows was already tried, unless you say why it should now work."""


def user_message(context: ProposalContext, history_tokens: int, count: TokenCounter = estimate_tokens) -> str:
    """The domain's instructions, the metric, the incumbent's files and the history that fits the budget."""
    parts = [
        "# Research instructions\n\n" + context.description.strip(),
        "# Metric\n\n" + describe_metric(context.metric),
    ]
    if context.knobs:
        rows = [
            f"- {k.name} in {k.file}: {k.kind}"
            + (f" in [{k.low}, {k.high}]" if k.low is not None or k.high is not None else "")
            + (f" one of {list(k.choices)}" if k.choices else "")
            + (f" ({k.help})" if k.help else "")
            for k in context.knobs
        ]
        parts.append("# Declared tunable constants\n\n" + "\n".join(rows))
    parts.append("# Current files (the incumbent)\n\n" + render_files(context.incumbent_files))
    parts.append("# What was tried so far\n\n" + render_history(context.history, context.metric, history_tokens, count))
    parts.append(
        "# Your task\n\nPropose the next hypothesis and its edit, in the required format "
        "(one paragraph, then SEARCH/REPLACE blocks)."
    )
    return "\n\n".join(parts) + "\n"


def build_messages(
    context: ProposalContext, history_tokens: int, count: TokenCounter = estimate_tokens
) -> list[dict[str, str]]:
    """The chat messages for one proposal."""
    example = sorted(context.incumbent_files)[0] if context.incumbent_files else "FILE"
    return [
        {"role": "system", "content": system_message(example)},
        {"role": "user", "content": user_message(context, history_tokens, count)},
    ]


def repair_message(error: str) -> str:
    """The follow-up that sends an unusable edit's exact error back to the model."""
    return (
        f"Your edit could not be used: {error}\n\n"
        "Answer again in the required format: the hypothesis paragraph, then a corrected edit. Copy each SEARCH "
        "section exactly from the current files shown above, and edit only those files."
    )


def describe_metric(metric: MetricSpec) -> str:
    """'val_bpb, lower is better; ...' in one or two lines."""
    better = "lower is better" if metric.direction == "minimize" else "higher is better"
    unit = f" {metric.unit}" if metric.unit else ""
    text = f"{metric.name} ({metric.kind}), {better}."
    if metric.delta > 0:
        text += f" A change is accepted only when it improves {metric.name} by more than {metric.delta:g}{unit}."
    return text


def render_files(files: dict[str, str]) -> str:
    """Each file under its name, fenced (the fence grows past any backticks inside the file)."""
    chunks = []
    for name in sorted(files):
        text = files[name]
        fence = "```"
        while fence in text:
            fence += "`"
        chunks.append(f"{name}\n{fence}\n{text}{'' if text.endswith(chr(10)) else chr(10)}{fence}")
    return "\n\n".join(chunks)


# -------------------------------------------------------------------------------------------- history


def render_history(
    history: Sequence[HistoryItem], metric: MetricSpec, budget_tokens: int, count: TokenCounter = estimate_tokens
) -> str:
    """The history, most useful first, cut to `budget_tokens` (a note says how many items were left out)."""
    if not history:
        return "Nothing yet: this is the first hypothesis of the campaign."
    head = (
        f"Effects are improvements in {metric.name} (positive = better); p is the test's p-value. "
        "Accepted changes are already in the current files."
    )
    used = count(head) + 20  # the omission note's share
    lines = [head]
    shown = 0
    for item in rank_history(history):
        line = _render_item(item)
        cost = count(line) + 1
        if used + cost > budget_tokens:
            continue  # a shorter item further down may still fit
        lines.append(line)
        used += cost
        shown += 1
    if shown < len(history):
        lines.append(f"({len(history) - shown} older or less informative hypotheses omitted)")
    return "\n".join(lines)


def rank_history(history: Sequence[HistoryItem]) -> list[HistoryItem]:
    """Accepted (oldest first, as they build on each other), then others: recent and informative interleaved."""
    accepted = [h for h in history if h.status == "accepted"]
    others = [h for h in history if h.status != "accepted"]
    recent = list(reversed(others))
    informative = sorted(
        (h for h in others if h.p_value is not None or h.effect is not None),
        key=lambda h: (h.p_value if h.p_value is not None else 1.0, -abs(h.effect or 0.0)),
    )
    merged: list[HistoryItem] = []
    seen: set[str] = set()
    for pair in zip(recent, informative + [None] * (len(recent) - len(informative))):
        for item in pair:
            if item is not None and item.hypothesis_id not in seen:
                seen.add(item.hypothesis_id)
                merged.append(item)
    return accepted + merged


_STATUS = {
    "accepted": "ACCEPTED",
    "rejected": "rejected",
    "patch_rejected": "edit unusable",
    "testing": "being tested now",
    "proposed": "proposed, not yet tested",
}


def _render_item(item: HistoryItem) -> str:
    verdict = _STATUS.get(item.status, item.status)
    stats = []
    if item.effect is not None:
        stats.append(f"effect {item.effect:+.4g}")
    if item.p_value is not None:
        stats.append(f"p={item.p_value:.3g}")
    head = f"- [{verdict}{', ' + ', '.join(stats) if stats else ''}] {_cap(item.rationale, RATIONALE_CHARS)}"
    if item.reason and item.status != "accepted":
        head += f" (reason: {_cap(item.reason, 160)})"
    detail = _changes(item.changes) or _diff_excerpt(item.diff)
    return head + (f"\n  {detail}" if detail else "")


def _changes(changes: dict[str, Any]) -> str:
    return "changes: " + ", ".join(f"{k}={v!r}" for k, v in changes.items()) if changes else ""


def _diff_excerpt(diff: str) -> str:
    changed = [
        line[:DIFF_LINE_CHARS]
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()
    ]
    if not changed:
        return ""
    more = f" (+{len(changed) - DIFF_LINES} more lines)" if len(changed) > DIFF_LINES else ""
    return "edit: " + " | ".join(changed[:DIFF_LINES]) + more


def _cap(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
