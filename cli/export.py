"""`ledgerlab export` (the results table, or any view, as a file) and `ledgerlab plot` (the progress chart).

    ledgerlab export                         # results.tsv-style table of the latest campaign on stdout
    ledgerlab export --format parquet --out results.parquet
    ledgerlab export --view runs --format csv --out runs.csv
    ledgerlab export --format discoveries --out shop.json   # accepted changes, for `ledgerlab import`
    ledgerlab plot --out progress.png

Parquet is written by DuckDB itself (no pyarrow needed); the plot uses matplotlib's Agg canvas, imported
only by `plot`.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledgerlab.cli.campaign import CampaignOption, load_state
from ledgerlab.cli.common import DirOption, round_floats, user_errors
from ledgerlab.core.project import Project
from ledgerlab.errors import LedgerlabError
from ledgerlab.storage.query import pick_campaign

if TYPE_CHECKING:
    from ledgerlab.core.state import CampaignState, HypothesisRecord, RunRecord
    from ledgerlab.core.summary import Progress

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py


class ExportFormat(str, Enum):
    tsv = "tsv"
    csv = "csv"
    parquet = "parquet"
    json = "json"
    discoveries = "discoveries"  # the accepted changes as a bundle another campaign imports (cli/discoveries.py)


# One row per hypothesis: its number, candidate, the mean metric of its own candidate runs (the runs that
# selected it, so optimistic for accepted ones; `table` adds confirmed_metric, the value after selection), the
# decision and the verdict.
RESULTS_SQL = """
WITH numbered AS (
    SELECT payload->>'hypothesis_id' AS hypothesis_id, row_number() OVER (ORDER BY seq) AS number
    FROM events WHERE type = 'HypothesisProposed' AND campaign_id = $campaign
), perf AS (
    SELECT hypothesis_id, avg(value) AS metric, count(*) FILTER (WHERE status = 'finished') AS runs,
           count(*) FILTER (WHERE status NOT IN ('finished', 'running')) AS failed_runs
    FROM runs WHERE campaign_id = $campaign AND role = 'candidate' AND hypothesis_id IS NOT NULL
    GROUP BY hypothesis_id
), verdict AS (
    SELECT hypothesis_id, arg_max(effect, decided_at) AS effect, arg_max(ci_low, decided_at) AS ci_low,
           arg_max(ci_high, decided_at) AS ci_high, arg_max(p_value, decided_at) AS p_value,
           arg_max(test, decided_at) AS test, arg_max(alpha_spent, decided_at) AS alpha_spent
    FROM verdicts WHERE campaign_id = $campaign GROUP BY hypothesis_id
)
SELECT n.number, h.hypothesis_id, h.candidate_id, p.metric, coalesce(p.runs, 0) AS runs,
       coalesce(p.failed_runs, 0) AS failed_runs, h.status AS decision, v.effect, v.ci_low, v.ci_high,
       v.p_value, v.test, v.alpha_spent, coalesce(h.reject_reason, '') AS reason, h.agent, h.rationale
FROM hypotheses h
JOIN numbered n ON n.hypothesis_id = h.hypothesis_id
LEFT JOIN perf p ON p.hypothesis_id = h.hypothesis_id
LEFT JOIN verdict v ON v.hypothesis_id = h.hypothesis_id
WHERE h.campaign_id = $campaign
ORDER BY n.number
"""

AUTORESEARCH_COLUMNS = ["commit", "val_bpb", "memory_gb", "status", "description"]


@app.command()
def export(
    format: Annotated[ExportFormat | None, typer.Option("--format", "-f", help=(
        "File format (default tsv); discoveries: the accepted changes as a bundle for `ledgerlab import`."))] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: stdout; parquet: "
                                                "<view>.parquet).")] = None,
    view: Annotated[str | None, typer.Option(
        "--view", help="autoresearch (results.tsv columns, the metric under its own name; the default for tsv), "
        "results (one row per hypothesis, the default otherwise) or a view: hypotheses, runs, verdicts, "
        "incumbents, llm_calls, leaderboard, campaigns.")] = None,
    autoresearch: Annotated[bool, typer.Option(
        "--autoresearch", help="autoresearch's results.tsv exactly: commit, val_bpb, memory_gb, status, "
        "description (campaigns whose metric is val_bpb, i.e. ml_training).")] = False,
    campaign: CampaignOption = None,
    dir: DirOption = None,
) -> None:
    """Export the campaign's results table (or one view, filtered to the campaign) as TSV, CSV, Parquet or JSON.

    Kept rows of the autoresearch table carry the confirmed value: the mean of the candidate's runs after its
    selection, the number `ledgerlab status` shows, not the runs that selected it.
    """
    with user_errors():
        if format is ExportFormat.discoveries:
            if view is not None or autoresearch:
                raise LedgerlabError("--format discoveries writes the accepted changes as a bundle: drop --view "
                                     "and --autoresearch")
            from ledgerlab.cli.discoveries import export_discoveries

            return export_discoveries(dir, campaign, out)
        if autoresearch:
            if format not in (None, ExportFormat.tsv) or view is not None:
                raise LedgerlabError("--autoresearch writes autoresearch's results.tsv: drop --format and --view")
            text, count = autoresearch_tsv(dir, campaign)
            return _write_text(text, count, out)
        format = format or ExportFormat.tsv
        view = view or ("autoresearch" if format is ExportFormat.tsv else "results")
        columns, types, rows = table(view, dir, campaign)
        if format is ExportFormat.parquet:
            target = out or Path(f"{view}.parquet")
            write_parquet(target, columns, types, rows)
            typer.echo(f"wrote {len(rows)} rows to {target}", err=True)
            return
        _write_text(render(format, columns, rows), len(rows), out)


def _write_text(text: str, count: int, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LedgerlabError(f"cannot write {out}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {count} rows to {out}", err=True)


def table(view: str, directory: str | None, campaign: str | None) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    """The columns, their SQL types and the rows of `view` for the chosen campaign."""
    from ledgerlab.storage.ledger import read_only_connection
    from ledgerlab.storage.views import VIEWS

    if view not in ("results", "autoresearch") and view not in VIEWS:
        raise LedgerlabError(f"unknown view {view!r}; choose autoresearch, results or one of {', '.join(VIEWS)}")
    if view == "autoresearch":
        state = load_state(directory, campaign)
        return ["commit", state.metric.name, "memory_gb", "status", "description"], \
            ["VARCHAR", "DOUBLE", "DOUBLE", "VARCHAR", "VARCHAR"], autoresearch_rows(state)
    with read_only_connection(Project.at(directory).ledger_path) as con:
        campaign_id = pick_campaign(con, campaign)
        sql = RESULTS_SQL if view == "results" else f"SELECT * FROM {view} WHERE campaign_id = $campaign"
        relation = con.execute(sql, {"campaign": campaign_id})
        columns = [d[0] for d in relation.description]
        types = [str(d[1]) for d in relation.description]
        rows = relation.fetchall()
    if view == "results":  # the confirmed value next to the optimistic one, from the same fold `status` uses
        state = load_state(directory, campaign_id)
        kept = {h.hypothesis_id: kept_value(state, h)[0] for h in state.hypotheses.values() if h.status == "accepted"}
        at = columns.index("metric") + 1
        columns.insert(at, "confirmed_metric")
        types.insert(at, "DOUBLE")
        rows = [(*row[:at], kept.get(row[1]), *row[at:]) for row in rows]
    return columns, types, rows


# ------------------------------------------------------------------------------- autoresearch's table


def autoresearch_rows(state: CampaignState) -> list[tuple[Any, ...]]:
    """autoresearch's results.tsv rows: the baseline, then one per hypothesis (commit is the candidate id).

    keep: the accepted ones, valued on their runs after selection (`kept_value`, what `status` shows); discard
    and crash: the mean of the hypothesis's own candidate runs (what that experiment measured).
    """
    from ledgerlab.core.effects import finished, mean, values

    assert state.started is not None
    base = state.started.baseline_candidate_id
    base_runs = finished(state, base)
    rows: list[tuple[Any, ...]] = [(base[:7], _round(mean(values(base_runs))),
                                    _memory_gb(base_runs), "keep", "baseline")]
    for h in sorted(state.hypotheses.values(), key=lambda h: h.number):
        own = [r for r in state.runs.values() if r.hypothesis_id == h.hypothesis_id and r.role == "candidate"
               and r.candidate_id == h.candidate_id]
        done = [r for r in own if r.status == "finished" and r.value is not None]
        if h.status == "accepted":
            value, used = kept_value(state, h)
            status = "keep"
        else:
            value, used = mean(values(done)), done
            status = "crash" if any(r.status not in ("finished", "running") for r in own) else "discard"
        rows.append(((h.candidate_id or "-------")[:7], _round(value), _memory_gb(used), status,
                     " ".join(h.rationale.split())))
    return rows


def kept_value(state: CampaignState, h: HypothesisRecord) -> tuple[float | None, list[RunRecord]]:
    """An accepted candidate's value as `status` reports it: the mean of its runs after selection (the
    confirmation runs and any later replicates), or of the runs that selected it until there are some."""
    from ledgerlab.core.effects import finished, fresh_runs, mean, values

    cid = h.candidate_id or ""
    runs = fresh_runs(state, cid) or finished(state, cid)
    return mean(values(runs)), runs


def autoresearch_tsv(directory: str | None, campaign: str | None) -> tuple[str, int]:
    """results.tsv as autoresearch writes it (val_bpb to 6 places, memory to 0.1 GB, 0 for crashes), one row
    per decided experiment: hypotheses still being tested are left out until their verdict."""
    state = load_state(directory, campaign)
    metric = state.metric
    if metric.name != "val_bpb":
        better = "lower" if metric.direction == "minimize" else "higher"
        raise LedgerlabError(
            f"--autoresearch writes val_bpb (lower is better), but campaign {state.campaign_id} measures "
            f"{metric.name} ({better} is better); `ledgerlab export --format tsv` writes the same columns "
            f"with {metric.name} in the second")
    lines = ["\t".join(AUTORESEARCH_COLUMNS)]
    open_ = {h.number for h in state.hypotheses.values() if h.status in ("proposed", "testing")}
    rows = [row for k, row in enumerate(autoresearch_rows(state)) if k not in open_]  # logged once decided
    for commit, value, memory, status, description in rows:
        crashed = status == "crash" or value is None
        lines.append("\t".join([commit, f"{0.0 if crashed else value:.6f}", f"{0.0 if crashed else memory:.1f}",
                                status, description]))
    return "\n".join(lines) + "\n", len(rows)


def _memory_gb(runs: list[RunRecord]) -> float:
    """The peak memory of these runs in GB (0.0 where nothing measured it, as autoresearch writes)."""
    peaks = [float(r.metrics["peak_memory_mb"]) for r in runs
             if isinstance(r.metrics.get("peak_memory_mb"), (int, float))]
    return round(max(peaks) / 1024, 1) if peaks else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def render(fmt_: ExportFormat, columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """The rows as TSV, CSV or JSON text."""
    import csv
    import io

    if fmt_ is ExportFormat.json:
        return json.dumps([round_floats(dict(zip(columns, row))) for row in rows], default=str, indent=1) + "\n"
    buffer = io.StringIO()
    if fmt_ is ExportFormat.csv:
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])
    else:  # tsv, like results.tsv: one line per row, so tabs and newlines inside a cell become spaces
        buffer.write("\t".join(columns) + "\n")
        for row in rows:
            cells = (" ".join(v.split()) if isinstance(v, str) else _cell(v) for v in row)
            buffer.write("\t".join(cells) + "\n")
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.12g}"  # exact enough, without binary noise like 0.024999999999999998
    return str(value)


def write_parquet(path: Path, columns: list[str], types: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Write rows with their SQL types through an in-memory DuckDB (JSON columns become text)."""
    import duckdb

    sql_types = ["VARCHAR" if t.upper() == "JSON" else t for t in types]
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE export (" + ", ".join(f'"{c}" {t}' for c, t in zip(columns, sql_types)) + ")")
        if rows:
            picks = ", ".join(f"unnest(${i + 1})::{t}" for i, t in enumerate(sql_types))
            values = [[_json_text(v) if t == "VARCHAR" else v for v in column]
                      for column, t in zip(zip(*rows), sql_types)]
            con.execute(f"INSERT INTO export SELECT {picks}", values)
        path.parent.mkdir(parents=True, exist_ok=True)
        con.execute("COPY export TO ? (FORMAT parquet)", [str(path)])
    except duckdb.Error as exc:
        raise LedgerlabError(f"cannot write {path}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def _json_text(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else json.dumps(value, default=str)


# --------------------------------------------------------------------------------------------- plot


@app.command()
def plot(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Image file to write (png, svg, pdf).")
    ] = Path("progress.png"),
    campaign: CampaignOption = None,
    dir: DirOption = None,
) -> None:
    """Plot every finished run's value in order, with the incumbent's value as it changed."""
    from ledgerlab.core.summary import progress

    with user_errors():
        state = load_state(dir, campaign)
        if not state.finish_order:
            raise LedgerlabError("no finished runs to plot yet; try again once the campaign has run")
        try:
            draw(state, progress(state), out)
        except (OSError, ValueError) as exc:
            raise LedgerlabError(f"cannot write {out}: {exc}") from None
    typer.echo(f"wrote {out}")


# A hypothesis's candidate runs by its fate; replicates (no hypothesis of their own) by their role.
COLORS = {"accepted": "#2ca02c", "rejected": "#bbbbbb", "testing": "#ff7f0e", "proposed": "#ff7f0e",
          "holdback runs": "#9467bd"}


def draw(state: CampaignState, chart: Progress, out: Path) -> None:
    """Runs as dots (coloured by their hypothesis's fate) and the incumbent's level as a step line."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, the Agg canvas by default

    metric = state.metric
    fig = Figure(figsize=(10, 5), dpi=120)
    ax = fig.subplots()
    for key, points in sorted(chart.series().items()):
        replicate = key.endswith(" runs")  # no hypothesis of its own
        ax.scatter([p.x for p in points], [p.value for p in points], s=14 if replicate else 22, alpha=0.8,
                   color=COLORS.get(key, "#1f77b4"), zorder=3,
                   label=f"{key if replicate else f'runs of {key} hypotheses'} ({len(points)})")
    steps = [(i + 1, v) for i, v in enumerate(chart.incumbent) if v is not None]
    if steps:
        ax.step([x for x, _ in steps], [v for _, v in steps], where="post", color="#d62728", linewidth=1.8,
                label="incumbent (mean of its runs after selection, once there are some)", zorder=2)
    for x, y, number in chart.changes:  # label each change of incumbent where it happened
        ax.annotate(f"#{number}", (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8)
    failed = sum(1 for r in state.runs.values() if r.status not in ("finished", "running"))
    accepted = sum(1 for h in state.hypotheses.values() if h.status == "accepted")
    better = "lower" if metric.direction == "minimize" else "higher"
    assert state.started is not None
    ax.set_title(f"{state.started.domain}: {metric.name} ({better} is better) — "
                 f"{len(state.hypotheses)} hypotheses, "
                 f"{accepted} accepted, {failed} failed run{'' if failed == 1 else 's'}")
    ax.set_xlabel("finished run")
    ax.set_ylabel(metric.name + (f" ({metric.unit})" if metric.unit else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
