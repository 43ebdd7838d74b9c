"""`ledgerlab show ID`: one hypothesis with its rationale, diff, runs and verdict, rebuilt from the ledger.

    ledgerlab show 3                    # hypothesis #3, or a hypothesis id prefix
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledgerlab.cli.campaign import (
    SHORT,
    CampaignOption,
    find_hypothesis,
    fmt,
    interval,
    load_campaign,
    origin_of,
)
from ledgerlab.cli.common import DirOption, clip, make_console, print_fitted, user_errors
from ledgerlab.cli.main import app
from ledgerlab.core.effects import confirmed

if TYPE_CHECKING:
    from ledgerlab.core.state import CampaignState, HypothesisRecord, RunRecord


@app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar="ID", help="Hypothesis number (3 or #3) or id prefix.")],
    campaign: CampaignOption = None,
    dir: DirOption = None,
) -> None:
    """One hypothesis: rationale, diff, runs and verdict."""
    with user_errors():
        loaded = load_campaign(dir, campaign)
        h = find_hypothesis(loaded.state, ref)
    from rich.console import Group
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table

    state = loaded.state
    console = make_console()
    head = Table(show_header=False, box=None)
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("id", h.hypothesis_id)
    head.add_row("status", h.status + (f" ({h.reason})" if h.reason else ""))
    head.add_row("agent", f"{h.agent} via {h.proposer}")
    head.add_row("rationale", h.rationale)
    parent = h.parent_candidate_id
    assert state.started is not None
    parent_note = "baseline" if parent == state.started.baseline_candidate_id else origin_of(state, parent)
    head.add_row("parent", f"{parent[:SHORT]} ({parent_note})")
    if h.candidate_id:
        now_inc = " — the incumbent now" if h.candidate_id == state.incumbent_id else ""
        head.add_row("candidate", f"{h.candidate_id[:SHORT]}{now_inc}")
    if h.changes:
        head.add_row("changes", ", ".join(f"{k} = {v!r}" for k, v in h.changes.items()))
    parts: list[Any] = [head]
    if h.diff.strip():
        parts.append(Panel(Syntax(h.diff, "diff", theme="ansi_dark", word_wrap=True), title="diff"))
    parts.append(_runs_table(state, h))
    parts.append(_verdict_table(state, h))
    print_fitted(Panel(Group(*parts), title=f"hypothesis #{h.number}", title_align="left"), console)


def _runs_table(state: CampaignState, h: HypothesisRecord) -> Any:
    from rich.table import Table

    runs: list[RunRecord] = [r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id]
    names = {h.candidate_id: "this", h.parent_candidate_id: "parent"}
    table = Table(title=f"runs ({len(runs)}; role incumbent: confirmation runs after the accept)",
                  title_justify="left")
    windows = any(r.shared_window for r in runs)  # A/B/n: which window (and control arm) each run shared
    for column in ("run", "candidate", "seed", "role", "attempt", "status", state.metric.name, "control", "error",
                   *(("window",) if windows else ())):
        table.add_column(column, overflow="fold")
    for r in sorted(runs, key=lambda r: (r.role != "candidate", r.seed, r.candidate_id != h.candidate_id)):
        table.add_row(r.run_id[:SHORT], f"{r.candidate_id[:8]} ({names.get(r.candidate_id, 'other')})", str(r.seed),
                      r.role, str(r.attempt), r.status, fmt(r.value), fmt(r.control_value), clip(r.error, 50),
                      *(((r.shared_window or "")[:SHORT],) if windows else ()))
    return table


def _pct(x: Any) -> str:
    return f"{x:+.1%}" if isinstance(x, (int, float)) else "n/a"


def _verdict_table(state: CampaignState, h: HypothesisRecord) -> Any:
    from rich.table import Table

    v = h.verdict
    table = Table(show_header=False, title="verdict", title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    if v is None:
        table.add_row("decision", {"patch_rejected": "none: the patch was rejected", "testing": "pending (testing)",
                                   "proposed": "pending"}.get(h.status, "none"))
        return table
    table.add_row("decision", v.decision + (f" ({v.reason})" if v.reason else ""))
    table.add_row("test", f"{v.test}, statistic {fmt(v.statistic)}, p = {fmt(v.p_value)}, looks {v.looks}")
    table.add_row("effect", f"{fmt(v.effect)} {interval(v.ci_low, v.ci_high)}  (> 0 is better)")
    table.add_row("alpha spent", fmt(v.alpha_spent))
    table.add_row("runs used", f"candidate n={v.n_candidate}, incumbent n={v.n_incumbent}")
    for guard in v.details.get("guardrails", []):
        margin = f" beyond the {guard['margin']:.1%} margin" if guard.get("margin") else ""
        verdict = "HARMED: blocks the change" if guard.get("harmed") else f"no significant harm{margin}"
        table.add_row(f"guardrail {guard.get('name')}",
                      f"{fmt(guard.get('effect'))} {interval(guard.get('ci_low'), guard.get('ci_high'))} "
                      f"({_pct(guard.get('effect_rel'))}), p of harm = {fmt(guard.get('p_worse'))}: {verdict}")
    if v.decision == "accept":
        check = confirmed(state, h)
        table.add_row("confirmed", f"{fmt(check.effect)} {interval(check.low, check.high)}  "
                                   f"({check.method}, runs not used to select it)"
                      if check else "not yet: confirmation runs pending")
    return table
