"""What the dashboard's pages show, as plain values computed from `ledgerlab.open` (api.py) handles.

Nothing here renders HTML: templates do, with autoescape on. Numbers come from the views and from core/report.py
(the same `status_report` `ledgerlab status` prints), so the dashboard and the CLI never disagree.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerlab.api import CampaignSnapshot, Ledger
from ledgerlab.core.effects import confirmed, unconfirmed_reason
from ledgerlab.errors import CampaignError, LedgerlabError

if TYPE_CHECKING:
    from ledgerlab.core.state import HypothesisRecord
    from ledgerlab.core.summary import Point

STATUS_COLORS = {"accepted": "#2ca02c", "rejected": "#9a9a9a", "testing": "#ff7f0e", "proposed": "#ff7f0e",
                 "incumbent runs": "#1f77b4", "holdback runs": "#9467bd"}
# status_report's budgets_used key -> the budget limit (CampaignStarted.budgets) that caps it, and its label.
BUDGETS = (("hypotheses", "max_hypotheses", "hypotheses"), ("runs", "max_runs", "runs"),
           ("active_seconds", "time_limit", "seconds"), ("units", "max_units", "units (visitors)"),
           ("cost_usd", "max_cost_usd", "LLM dollars"))


# ------------------------------------------------------------------------------------------- projects


def discover(root: Path) -> dict[str, Ledger]:
    """The projects under `root`, by a short name for URLs: `root` itself if it has a ledger, and each folder
    directly inside it that has one. Routes look names up here, so no URL part ever becomes a path."""
    found: dict[str, Ledger] = {}
    candidates = [root, *sorted(p for p in _children(root) if p.is_dir())]
    for folder in candidates:
        lab = Ledger(folder)
        if lab.path.is_file():
            name = folder.name or "project"
            found[name if name not in found else f"{name}-{len(found)}"] = lab
    return found


def _children(root: Path) -> list[Path]:
    try:
        return list(root.iterdir())
    except OSError:
        return []


def campaign_rows(projects: dict[str, Ledger]) -> list[dict[str, Any]]:
    """One row per campaign of every project: the index page's table."""
    from ledgerlab.core.runner_lock import runner_alive

    rows: list[dict[str, Any]] = []
    for name, lab in projects.items():
        try:
            current = {i.campaign_id: i for i in lab.incumbents(is_current=True)}
            campaigns = lab.campaigns()
        except LedgerlabError as exc:  # one unreadable ledger (locked, or another format) hides no other
            rows.append({"project": name, "error": str(exc), "started": ""})
            continue
        alive = runner_alive(lab.project)
        for c in campaigns:
            gain = current.get(c.campaign_id)
            status = "stopped unexpectedly" if c.status == "running" and alive is False else c.status
            rows.append({"project": name, "campaign": c, "status": status, "started": str(c.started_at or ""),
                         "improvement": gain.improvement if gain else None,
                         "ci": (gain.improvement_ci_low, gain.improvement_ci_high) if gain else (None, None),
                         "method": gain.improvement_method if gain else None})
    rows.sort(key=lambda r: r["started"], reverse=True)
    return rows


def heads(projects: dict[str, Ledger]) -> str:
    """Every project's latest event seq, as one token that changes when any ledger does."""
    return "-".join(_head(lab) for lab in projects.values())


def _head(lab: Ledger) -> str:
    try:
        return str(lab.head())
    except LedgerlabError:  # unreadable now: shown as such on the index, and watched like the others
        return "?"


# ------------------------------------------------------------------------------------------- a campaign


@dataclass
class CampaignPage:
    """Everything the campaign page shows, from one snapshot."""

    snap: CampaignSnapshot
    figure: dict[str, Any]
    hypotheses: list[dict[str, Any]]
    budgets: list[dict[str, Any]]
    typical_s: float | None = None  # a finished run's median wall time

    @property
    def report(self) -> dict[str, Any]:
        return self.snap.report


def campaign_page(lab: Ledger, campaign_id: str) -> CampaignPage:
    """The campaign page's values: `status`'s report, the chart, the hypotheses table, budgets."""
    snap = lab.snapshot(campaign_id)
    return CampaignPage(snap, progress_figure(snap), hypothesis_rows(snap), budget_rows(snap.report),
                        typical_run_s(snap))


def typical_run_s(snap: CampaignSnapshot) -> float | None:
    """The median wall time of the campaign's finished runs: what a run in flight's progress is measured by."""
    durations = sorted(snap.durations.values())
    return durations[len(durations) // 2] if durations else None


def hypothesis_rows(snap: CampaignSnapshot) -> list[dict[str, Any]]:
    """One row per hypothesis, newest first: fate, effect and interval, p, runs, agent, rationale."""
    runs = Counter(r.hypothesis_id for r in snap.state.runs.values() if r.role == "candidate")
    rows = []
    for h in snap.state.hypotheses.values():
        v = h.verdict
        rows.append({"number": h.number, "status": h.status, "effect": _finite(v.effect) if v else None,
                     "ci_low": _finite(v.ci_low) if v else None, "ci_high": _finite(v.ci_high) if v else None,
                     "p": _finite(v.p_value) if v else None, "runs": runs[h.hypothesis_id], "agent": h.agent,
                     "rationale": h.rationale, "reason": h.reason})
    return sorted(rows, key=lambda r: -r["number"])


def budget_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each budget used, with its limit and the share of it spent when the campaign has one."""
    used, limits = report["budgets_used"], report["budget_limits_at_start"]
    rows = []
    for key, limit_key, label in BUDGETS:
        value, limit = used.get(key) or 0, limits.get(limit_key)
        if not value and not limit:
            continue
        share = min(1.0, value / limit) if limit else None
        rows.append({"label": label, "used": value, "limit": limit, "share": share})
    return rows


def progress_figure(snap: CampaignSnapshot) -> dict[str, Any]:
    """A Plotly figure (plain JSON): every finished run by finish order, coloured by its hypothesis's fate,
    the incumbent as a step line, each accept labelled; customdata carries the hypothesis number for clicks.

    The same series as `ledgerlab plot` (core/summary.py progress). Hover text is HTML-escaped here because
    Plotly renders a subset of HTML in hover labels.
    """
    from ledgerlab.core.summary import progress

    chart = progress(snap.state)
    series = {key: ([p.x for p in points], [p.value for p in points], [_customdata(p) for p in points])
              for key, points in chart.series().items()}
    return _figure(snap, series, list(chart.incumbent), chart.changes)


def _customdata(point: Point) -> list[Any]:
    """What a point's hover and click read: the hypothesis a candidate run tests (a click opens it), the hover
    text, the run and its seed."""
    hyp, run = point.hypothesis, point.run
    return [hyp.number if hyp is not None and run.role == "candidate" else None, _hover(hyp, run.role),
            run.run_id[:12], run.seed]


def _figure(snap: CampaignSnapshot, series: dict[str, Any], line: list[float | None],
            changes: tuple[tuple[int, float, int], ...]) -> dict[str, Any]:
    metric = snap.state.metric
    traces: list[dict[str, Any]] = []
    for key, (xs, ys, data) in sorted(series.items()):
        replicate = key.endswith(" runs")  # no hypothesis of its own: nothing to open
        name = key if replicate else f"runs of {key} hypotheses"
        what = "%{customdata[1]}" if replicate else "#%{customdata[0]} %{customdata[1]}"
        traces.append({"type": "scatter", "mode": "markers", "name": f"{name} ({len(xs)})", "x": xs, "y": ys,
                       "customdata": data, "marker": {"color": STATUS_COLORS.get(key, "#1f77b4"),
                                                      "size": 7 if replicate else 9},
                       "hovertemplate": what + "<br>" + f"{_hover_name(metric.name)}"
                                        " %{y:.4g}<br>run %{customdata[2]}, seed %{customdata[3]}<extra></extra>"})
    steps = [(i + 1, v) for i, v in enumerate(line) if v is not None]
    traces.append({"type": "scatter", "mode": "lines", "name": "incumbent (mean of its runs after selection)",
                   "x": [x for x, _ in steps], "y": [v for _, v in steps], "line": {"shape": "hv",
                   "color": "#d62728", "width": 2}, "hoverinfo": "skip"})
    annotations = [{"x": x, "y": y, "text": f"#{number}", "showarrow": True, "arrowhead": 0, "ax": 12, "ay": -22}
                   for x, y, number in changes]
    better = "lower" if metric.direction == "minimize" else "higher"
    return {"data": traces, "layout": {
        "annotations": annotations, "margin": {"l": 60, "r": 20, "t": 30, "b": 50}, "hovermode": "closest",
        "xaxis": {"title": {"text": "finished run"}}, "legend": {"orientation": "h", "y": -0.2},
        "yaxis": {"title": {"text": f"{_hover_name(metric.name)} ({better} is better)"}}}}


def _hover(hyp: HypothesisRecord | None, role: str) -> str:
    if hyp is None or role != "candidate":
        return {"incumbent": "incumbent replicate", "holdback": "holdback run"}.get(role, f"{role} run") + (
            f" (confirming #{hyp.number})" if hyp is not None else "")
    text = " ".join(hyp.rationale.split())
    return html.escape(text[:117] + "…" if len(text) > 120 else text)


def _hover_name(name: str) -> str:
    return html.escape(name)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ------------------------------------------------------------------------------------------- a hypothesis


def find(snap: CampaignSnapshot, number: int) -> HypothesisRecord:
    """Hypothesis #number of the snapshot's campaign (CampaignError when there is none)."""
    for h in snap.state.hypotheses.values():
        if h.number == number:
            return h
    raise CampaignError(f"no hypothesis #{number} in campaign {snap.state.campaign_id}")


def hypothesis_page(lab: Ledger, campaign_id: str, number: int) -> dict[str, Any]:
    """Rationale, diff lines, runs, verdict (test, looks, α spent), guardrails and the confirmed effect."""
    snap = lab.snapshot(campaign_id)
    h = find(snap, number)
    state = snap.state
    runs = sorted((r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id),
                  key=lambda r: (r.role != "candidate", r.seed, r.candidate_id != h.candidate_id))
    names = {h.candidate_id: "this", h.parent_candidate_id: "parent"}
    v = h.verdict
    accepted = v is not None and v.decision == "accept"
    check = confirmed(state, h) if accepted else None
    return {"snap": snap, "h": h, "diff": diff_lines(h.diff), "runs": runs, "names": names, "verdict": v,
            "guardrails": (v.details.get("guardrails", []) if v else []), "confirmed": check,
            "unconfirmed": unconfirmed_reason(state, h) if accepted and check is None else None,
            "metric": state.metric, "is_incumbent": h.candidate_id == state.incumbent_id}


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """The diff's lines, each with a CSS class for its kind (added, removed, hunk, file); text stays text."""
    kinds = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---", "diff ")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        kinds.append((kind, line))
    return kinds
