"""Commands that read one campaign: `status`, `hypotheses` and `checkout best|baseline|ID` (`show ID`:
cli/show.py).

Each reads the campaign through core/summary.py (the fold of its events, read through a read-only connection
that is closed before anything is printed, so they work while a campaign is writing) and renders it.

    ledgerlab status [--campaign ID] [--format json]
    ledgerlab show 3                    # hypothesis #3, or a hypothesis id prefix
    ledgerlab checkout best --out best/
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledgerlab.cli.common import DirOption, clip, print_fitted, user_errors
from ledgerlab.core.project import Project
from ledgerlab.errors import CampaignError, LedgerlabError

if TYPE_CHECKING:
    from ledgerlab.core.state import CampaignState, HypothesisRecord

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py

CampaignOption = Annotated[
    str | None, typer.Option("--campaign", "-c", help="Campaign id or prefix (default: the latest).")
]
SHORT = 12  # characters of a hash that identify it in practice

# ------------------------------------------------------------------------------------------ loading


def load_state(directory: str | None, campaign: str | None) -> CampaignState:
    """The chosen campaign (id or prefix; default the latest started), folded (core/summary.py)."""
    from ledgerlab.core.summary import read_campaign

    return read_campaign(Project.at(directory).ledger_path, campaign)[0]


# ------------------------------------------------------------------------------------------ numbers
def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def interval(low: float | None, high: float | None) -> str:
    return f"[{fmt(low)}, {fmt(high)}]" if low is not None and high is not None else ""


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# ------------------------------------------------------------------------------------------- status


class StatusFormat(str, Enum):
    text = "text"
    json = "json"


@app.command()
def status(
    campaign: CampaignOption = None, dir: DirOption = None,
    format: Annotated[StatusFormat, typer.Option("--format", "-f", help="text, or json for programs.")] =
    StatusFormat.text,
) -> None:
    """The campaign at a glance: incumbent, improvement over baseline, hypotheses, runs, spend, what runs now."""
    from ledgerlab.core.summary import summarize

    with user_errors():
        summary = summarize(Project.at(dir), campaign)
    report = summary.report
    if format is StatusFormat.json:
        typer.echo(json.dumps(report, indent=2))
    else:
        render_status(report)
        if summary.state.started is not None and summary.state.started.kind == "transfer":
            from ledgerlab.cli.transfer import render_table

            render_table(summary.state)  # the transfer table, from the transfer campaign's events


def render_status(report: dict[str, Any]) -> None:
    """`status_report`'s numbers as the text table `ledgerlab status` prints."""
    from rich.table import Table

    metric, name = report["metric"], report["metric"]["name"]
    table = Table(show_header=False, title=f"campaign {report['campaign_id']}", title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("domain", f"{report['domain']}: {name} ({metric['direction']}"
                            + (f", delta {metric['delta']:g}" if metric["delta"] else "") + ")")
    if report["guardrails"]:
        table.add_row("guardrails", ", ".join(
            f"{g['name']} (must not get worse" + (f" by more than {g['margin']:.1%}" if g["margin"] else "")
            + f", alpha {g['alpha']:g})" for g in report["guardrails"]))
    table.add_row("status", _status_line(report))

    inc, base = report["incumbent"], report["baseline"]
    number = inc["hypothesis_number"]
    origin = "baseline" if inc["is_baseline"] else f"from #{number}" if number else "unknown origin"
    label = {"after_selection": f"mean of {inc['runs']} runs after selection",
             "selection_runs_optimistic": "mean of the runs that selected it: optimistic"}.get(inc["basis"])
    table.add_row("incumbent", f"{inc['candidate_id'][:SHORT]} ({origin})  {name} {fmt(inc['value'])}"
                               + (f"  ({label})" if label else "  (no runs yet)"))
    table.add_row("baseline", f"{base['candidate_id'][:SHORT]}  {name} {fmt(base['value'])}  "
                              f"(mean of {base['runs']} runs)")
    table.add_row("improvement", _improvement_line(report["improvement"], report["status"] == "finished"))
    for k, h in enumerate(report["accepted"]):
        sel, check = h["selected"], h["confirmed"]
        line = (f"#{h['number']} {clip(h['rationale'], 40)}: selected at {fmt(sel['effect'])} "
                f"{interval(sel['ci_low'], sel['ci_high'])} ({sel['test']}, p={fmt(sel['p_value'])})")
        line += (f"; confirmed {fmt(check['effect'])} {interval(check['ci_low'], check['ci_high'])} "
                 f"({check['method']})" if check else f"; not confirmed: {h['unconfirmed_reason']}")
        table.add_row("" if k else "accepted", line)

    hyp, runs = report["hypotheses"], report["runs"]
    vetoed = hyp["rejected_by_guardrail"]
    table.add_row("hypotheses", f"{hyp['tried']} tried: {hyp['accepted']} accepted, {hyp['rejected']} rejected"
                                + (f" ({vetoed} of them by a guardrail)" if vetoed else "")
                                + f", {hyp['patch_rejected']} patch-rejected, {hyp['open']} open")
    failed = runs["failed_by_status"]
    table.add_row("runs", f"{runs['finished']} finished, {runs['failed']} failed"
                          + (f" ({', '.join(f'{v} {k}' for k, v in failed.items())})" if failed else "")
                          + f", {runs['unfinished']} unfinished")
    used = report["budgets_used"]
    table.add_row("budgets used", f"{used['hypotheses']} hypotheses, {used['runs']} runs"
                                  + (f", {used['units']:,.0f} units" if used["units"] else ""))
    spend = report["spend"]
    text = f"${spend['llm_cost_usd']:.4f} over {spend['llm_calls']} LLM calls" if spend["llm_calls"] \
        else "no LLM calls"
    if spend["unpriced_calls"]:
        text += f" ({spend['unpriced_calls']} with unknown price, not counted)"
    table.add_row("spend", text)
    table.add_row("active time", f"{duration(report['active_seconds'])}  "
                                 f"(last event {duration(report['last_event_seconds_ago'])} ago)")
    table.add_row("running now", _running_line(report["running_now"]))
    print_fitted(table)


def _status_line(report: dict[str, Any]) -> str:
    if report["status"] == "stopped_unexpectedly":
        at = datetime.fromisoformat(report["stopped_at"]).strftime("%Y-%m-%d %H:%M:%S UTC") \
            if report["stopped_at"] else "an unknown time"
        return f"stopped unexpectedly at {at} (no runner holds the folder);\n`{report['resume_hint']}`"
    line = report["status"] + (f" ({report['finish_reason']})" if report["finish_reason"] else "")
    if report["status"] == "paused" and report["pause_reason"]:
        from rich.markup import escape

        line += f": {escape(clip(report['pause_reason'], 160))};\n`{report['resume_hint']}`"  # own line: never split
    return line


def _improvement_line(gain: dict[str, Any], finished: bool = False) -> str:
    yet = "" if finished else " yet"  # a finished campaign runs nothing more: what is missing stays missing
    if gain["status"] == "baseline_is_incumbent":
        return f"none{yet} (the baseline is still the incumbent)"
    if gain["status"] == "not_measured":
        return f"not measured{yet} ({gain.get('reason') or 'needs baseline runs and incumbent runs after selection'})"
    ci = interval(gain["ci_low"], gain["ci_high"])
    level = f", {gain['ci_level']:.0%}" if gain["ci_level"] else ", too few runs for an interval"
    line = f"{fmt(gain['effect'])} {ci}  (> 0 is better; {gain['method']}{level})"
    if gain.get("relative") is not None:  # the holdback measured it as a share of the baseline too
        low, high = gain["relative_ci_low"], gain["relative_ci_high"]
        rel = f"[{low:+.1%}, {high:+.1%}]" if low is not None and high is not None else "(no interval yet)"
        line = f"{gain['relative']:+.1%} {rel} of the baseline; " + line
    return line


def origin_of(state: CampaignState, cid: str) -> str:
    """Which hypothesis made a candidate ("from #3")."""
    parent = state.candidate_parent.get(cid)
    if parent and parent[1] in state.hypotheses:
        return f"from #{state.hypotheses[parent[1]].number}"
    return "unknown origin"


def _running_line(running: dict[str, Any]) -> str:
    if not running["runs"]:
        return "nothing"
    word = "interrupted, re-run on resume" if running["interrupted"] else "running"
    parts = []
    for r in running["runs"]:
        age = f" for {duration(r['running_seconds'])}" if r["running_seconds"] is not None else ""
        what = f"#{r['hypothesis_number']}" if r["hypothesis_number"] is not None else r["role"]
        parts.append(f"{r['run_id'][:SHORT]} ({what}, candidate {r['candidate_id'][:8]}, seed {r['seed']}){age}")
    return f"{len(running['runs'])} {word}: " + "; ".join(parts)


# --------------------------------------------------------------------------------------- hypotheses


@app.command()
def hypotheses(campaign: CampaignOption = None, dir: DirOption = None) -> None:
    """Every hypothesis on one line: its fate, effect, p-value, runs, confirmed effect and rationale."""
    from rich.console import Group
    from rich.text import Text

    from ledgerlab.cli.common import Col, fit_table, make_console
    from ledgerlab.core.effects import confirmed

    with user_errors():
        state = load_state(dir, campaign)
    cols = [Col("#", "num", 9), Col("status", "text", 8, shortest=8), Col("effect", "num", 6),
            Col("p", "num", 5), Col("runs", "num", 4), Col("confirmed", "num", 3), Col("candidate", "id", 2),
            Col("rationale", "text", 7, shortest=20)]
    rows = []
    for h in sorted(state.hypotheses.values(), key=lambda h: h.number):
        v, check = h.verdict, confirmed(state, h) if h.status == "accepted" else None
        runs = sum(1 for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id and r.role == "candidate"
                   and r.status == "finished")
        rows.append([str(h.number), h.status, fmt(v.effect if v else None), fmt(v.p_value if v else None), str(runs),
                     fmt(check.effect if check else None), (h.candidate_id or "")[:SHORT],
                     clip(imported_from(state, h) + h.rationale, 120)])
    console = make_console()
    fitted = fit_table(cols, rows, console.width, title=f"campaign {state.campaign_id}: {len(rows)} hypotheses "
                       f"({state.metric.name}; effect > 0 is better)", title_justify="left")
    print_fitted(Group(fitted.table, *([Text(fitted.note(), style="dim")] if fitted.dropped else [])), console)


def imported_from(state: CampaignState, h: HypothesisRecord) -> str:
    """"imported from <campaign> #n: " for a hypothesis another campaign's discovery became, else ""."""
    item = state.imports.get(h.hypothesis_id)
    return f"imported from {item.source_campaign_id} #{item.source_number}: " if item else ""


# ------------------------------------------------------------------------------------------ finding


def find_hypothesis(state: CampaignState, ref: str) -> HypothesisRecord:
    """A hypothesis by number (`3`, `#3`) or by id prefix."""
    text = ref.strip()
    number = text[1:] if text.startswith("#") else text
    if number.isdigit():
        for h in state.hypotheses.values():
            if h.number == int(number):
                return h
        if text.startswith("#"):
            raise CampaignError(f"no hypothesis #{number}: this campaign has {len(state.hypotheses)}")
    matches = [h for h in state.hypotheses.values() if h.hypothesis_id.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CampaignError(f"{text!r} matches {len(matches)} hypotheses "
                            f"({', '.join(h.hypothesis_id[:SHORT] for h in matches[:5])}); give more characters")
    raise CampaignError(f"no hypothesis {text!r} in campaign {state.campaign_id} "
                        f"({len(state.hypotheses)} hypotheses: use #1..#{len(state.hypotheses)} or an id prefix)")


# ----------------------------------------------------------------------------------------- checkout


def resolve_candidate(state: CampaignState, ref: str) -> str:
    """`best` (the incumbent), `baseline`, a candidate id prefix, or a hypothesis (number or id prefix)."""
    started = state.started
    assert started is not None
    if ref == "best":
        return state.incumbent_id
    if ref == "baseline":
        return started.baseline_candidate_id
    number = ref[1:] if ref.startswith("#") else ref
    numbers = {h.number for h in state.hypotheses.values()}
    if ref.startswith("#") or (number.isdigit() and int(number) in numbers):
        return _candidate_of(find_hypothesis(state, ref))  # a number names a hypothesis before an id prefix
    known = {started.baseline_candidate_id, *state.candidate_parent}
    matches = sorted(c for c in known if c.startswith(ref))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise CampaignError(f"{ref!r} matches {len(matches)} candidates; give more characters")
    try:
        h = find_hypothesis(state, ref)
    except CampaignError:
        raise CampaignError(f"no candidate or hypothesis {ref!r} in campaign {state.campaign_id}; "
                            "use best, baseline, a candidate id prefix or a hypothesis number") from None
    return _candidate_of(h)


def _candidate_of(h: HypothesisRecord) -> str:
    if h.candidate_id is None:
        raise CampaignError(f"hypothesis #{h.number} has no candidate (status {h.status})")
    return h.candidate_id


@app.command()
def checkout(
    ref: Annotated[str, typer.Argument(metavar="best|baseline|ID", help="Which candidate to write.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder to write (default ./checkout-<id>/).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder.")] = False,
    campaign: CampaignOption = None,
    dir: DirOption = None,
) -> None:
    """Write a candidate's files, rebuilt from the ledger alone (baseline files plus the chain of diffs)."""
    from ledgerlab.core.lineage import candidate_files
    from ledgerlab.core.patches import candidate_id
    from ledgerlab.errors import IntegrityError

    with user_errors():
        state = load_state(dir, campaign)
        cid = resolve_candidate(state, ref)
        started = state.started
        assert started is not None
        if candidate_id(started.baseline_files) != started.baseline_candidate_id:
            raise IntegrityError("the baseline files recorded in CampaignStarted do not match its candidate id")
        files = candidate_files(state, cid)
        target = (out or Path(f"checkout-{cid[:SHORT]}")).expanduser()
        if target.exists() and not target.is_dir():
            raise LedgerlabError(f"{target} exists and is not a folder")
        if target.is_dir() and any(target.iterdir()) and not force:
            raise LedgerlabError(f"{target} is not empty; pass --force to write into it, or choose --out")
        root = target.resolve()
        for name, text in files.items():
            path = (root / name).resolve()
            if not path.is_relative_to(root):  # a file name from the ledger must not escape the folder
                raise IntegrityError(f"candidate file name {name!r} points outside the checkout folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="")
    typer.echo(f"wrote {len(files)} file{'s' if len(files) != 1 else ''} of candidate {cid[:SHORT]} to {target} "
               f"(rebuilt from the ledger, id verified)")
