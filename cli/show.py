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
    load_state,
    origin_of,
)
from ledgerlab.cli.common import Col, DirOption, clip, fit_table, make_console, print_fitted, user_errors
from ledgerlab.core.effects import confirmed, unconfirmed_reason

if TYPE_CHECKING:
    from ledgerlab.core.state import CampaignState, HypothesisRecord, RunRecord

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py


@app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar="ID", help="Hypothesis number (3 or #3) or id prefix.")],
    campaign: CampaignOption = None,
    dir: DirOption = None,
) -> None:
    """One hypothesis: rationale, diff, runs and verdict."""
    with user_errors():
        state = load_state(dir, campaign)
        h = find_hypothesis(state, ref)
    from rich.console import Group
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table

    console = make_console()
    head = Table(show_header=False, box=None)
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("id", h.hypothesis_id)
    head.add_row("status", h.status + (f" ({h.reason})" if h.reason else ""))
    head.add_row("agent", f"{h.agent} via {h.proposer}")
    if (item := state.imports.get(h.hypothesis_id)) is not None:
        for label, text in import_rows(item):
            head.add_row(label, text)
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
    parts.extend(_runs_table(state, h, console.width - 4))  # 4: the panel's borders and padding
    parts.append(_verdict_table(state, h))
    print_fitted(Panel(Group(*parts), title=f"hypothesis #{h.number}", title_align="left"), console)


def import_rows(item: Any) -> list[tuple[str, str]]:
    """Where an imported hypothesis came from: the source campaign, what it measured there, the provenance."""
    p = item.provenance
    v = p.get("verdict") or {}
    there = (f"accepted at {fmt(v.get('effect'))} {interval(v.get('ci_low'), v.get('ci_high'))} "
             f"({v.get('test')}, p = {fmt(v.get('p_value'))})")
    if item.effect_basis == "confirmed":
        there += (f"; confirmed {fmt(item.effect)} {interval(item.ci_low, item.ci_high)} "
                  f"({(p.get('confirmed') or {}).get('method', 'fresh runs')})")
    else:
        there += "; not confirmed on fresh runs there"
    link = (p.get("events") or {}).get("VerdictReached") or {}
    head, checkpoint = p.get("head") or {}, p.get("checkpoint")
    trail = (f"its verdict is seq {link.get('seq')} ({str(link.get('hash', ''))[:16]}…) of a ledger whose head was seq "
             f"{head.get('seq')} ({str(head.get('hash', ''))[:16]}…); ")
    trail += (f"signed checkpoint of seq 1-{checkpoint.get('head_seq')} by key {checkpoint.get('key_id')}"
              + ("" if checkpoint.get("covers_discoveries") else " (it does not cover this verdict)")
              if checkpoint else "no signed checkpoint")
    return [("imported from", f"campaign {item.source_campaign_id}, hypothesis #{item.source_number} "
                              f"({item.source_hypothesis_id}) by {p.get('source_agent') or '?'}"),
            ("there", f"{there} (> 0 is better; here it is tested afresh)"),
            ("provenance", f"{trail}; bundle {str(p.get('content_hash', ''))[:23]}… {p.get('bundle') or ''}".rstrip()
             + f", {_signed_by(p.get('signer'))}")]


def _signed_by(signer: Any) -> str:
    """Who signed the bundle an import came from (imports recorded before bundles were signed: not signed)."""
    from ledgerlab.storage.signing import key_id

    return f"signed by key {key_id(signer)}" if isinstance(signer, str) and signer else "the bundle not signed"


def _runs_table(state: CampaignState, h: HypothesisRecord, width: int) -> list[Any]:
    """The hypothesis's runs, fitted to `width`: empty columns left out, the least useful dropped first."""
    from rich.text import Text

    runs: list[RunRecord] = [r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id]
    names = {h.candidate_id: "this", h.parent_candidate_id: "parent"}
    ordered = sorted(runs, key=lambda r: (r.role != "candidate", r.seed, r.candidate_id != h.candidate_id))
    cells: dict[Col, list[str]] = {
        Col("run", "id", 5): [r.run_id[:SHORT] for r in ordered],
        Col("candidate", "id", 3): [names.get(r.candidate_id) or r.candidate_id[:8] for r in ordered],
        Col("seed", "num", 4): [str(r.seed) for r in ordered],
        Col("role", "text", 4): [r.role for r in ordered],
        Col("attempt", "num", 0): [str(r.attempt) for r in ordered],
        Col("status", "text", 4): [r.status for r in ordered],
        Col(state.metric.name, "num", 5, shortest=len(state.metric.name)): [fmt(r.value) for r in ordered],
        Col("control", "num", 2): [fmt(r.control_value) for r in ordered],
        Col("error", "text", 1, shortest=20): [clip(r.error, 50) for r in ordered],
        Col("window", "id", 0): [(r.shared_window or "")[:SHORT] for r in ordered],  # A/B/n: the shared window
    }
    blank = {"", "–", "1"}  # a column that says nothing (no errors, no control arm, first attempts) is left out
    cols = [c for c, values in cells.items() if c.name in ("run", "seed", "role", "status", state.metric.name)
            or any(v not in blank for v in values)]
    rows = [[cells[c][k] for c in cols] for k in range(len(ordered))]
    confirming = any(r.role == "incumbent" for r in runs)
    note = "; role incumbent: confirmation runs after the accept" if confirming else ""
    fitted = fit_table(cols, rows, width, title=f"runs ({len(runs)}{note})", title_justify="left")
    return [fitted.table, *([Text(fitted.note(), style="dim")] if fitted.dropped else [])]


def _pct(x: Any) -> str:
    return f"{x:+.1%}" if isinstance(x, (int, float)) else "n/a"


def _level(state: CampaignState, h: HypothesisRecord) -> str:
    """The level the hypothesis was tested at, and the stream it came from."""
    from ledgerlab.core import alpha
    from ledgerlab.core.holdback import recorded_settings

    level = h.verdict.details.get("alpha") if h.verdict is not None else None
    if level is None or state.started is None:
        return "n/a"
    settings = recorded_settings(state.started.judge)
    if alpha.in_imports_stream(settings, state.imports, h.hypothesis_id):
        futility = alpha.import_futility(settings, float(level))
        return f"{fmt(level)} (the imports' stream, {alpha.imports_policy(settings)}; look-1 futility at p > {fmt(futility)})"
    return f"{fmt(level)} (the campaign's own stream, {settings.alpha_policy})"


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
    table.add_row("level", _level(state, h))
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
                      if check else f"not confirmed: {unconfirmed_reason(state, h)}")
    return table
