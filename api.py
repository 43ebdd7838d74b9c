"""A typed, read-only Python API over a project's ledger, for notebooks and scripts (and `ledgerlab ui`).

    import ledgerlab
    lab = ledgerlab.open("myrun")                          # the project folder; nothing is opened yet
    for h in lab.hypotheses(status="accepted"):            # SQLModel rows, one class per view
        print(h.hypothesis_id[:8], h.rationale)
    lab.incumbents().to_pandas()                           # any view as a DataFrame (or .to_arrow())
    lab.sql("SELECT agent, count(*) FROM hypotheses GROUP BY agent").to_pandas()

Every read goes the way `ledgerlab sql` goes (storage/query.py): while a campaign runs, to its process over the
ledger's socket, otherwise to the file opened read-only for the one query; a handle holds nothing open between
calls, so it never blocks a campaign. Each view's row class has the columns `ledgerlab schema` documents, in
the view's order, typed, with those docs as field descriptions (tests/test_api.py checks both against the
views). JSON columns come back parsed.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import model_validator
from sqlmodel import Field, SQLModel

from ledgerlab.core.project import Project
from ledgerlab.core.summary import CampaignSummary
from ledgerlab.errors import ConfigError, LedgerError, QueryError
from ledgerlab.storage.views import VIEW_DOCS

if TYPE_CHECKING:
    import pandas
    import pyarrow


__all__ = ["Campaign", "CampaignSnapshot", "Hypothesis", "Incumbent", "LLMCall", "Leaderboard", "Ledger",
           "Result", "Rows", "Run", "Verdict", "open"]

JSONValue = dict[str, Any] | list[Any] | str | int | float | bool | None


def _doc(view: str) -> Any:
    """`Field(...)` maker for one view: the column's `ledgerlab schema` text as its description."""
    columns = VIEW_DOCS[view][1]

    def column(name: str) -> Any:
        return Field(default=None, description=columns[name])

    return column


class ViewRow(SQLModel):
    """One row of a ledger view; `VIEW` names it, `JSON_COLUMNS` are parsed from their JSON text."""

    VIEW: ClassVar[str] = ""
    JSON_COLUMNS: ClassVar[tuple[str, ...]] = ()
    ORDER: ClassVar[tuple[str, ...]] = ()  # the columns the rows are sorted by: oldest first

    @model_validator(mode="before")
    @classmethod
    def _parse_json(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in cls.JSON_COLUMNS:
                if isinstance(data.get(name), str):
                    data = {**data, name: json.loads(data[name])}
        return data


_c = _doc("campaigns")


class Campaign(ViewRow):
    """A row of `campaigns`: what a campaign optimizes, where it stands, how far it got."""

    VIEW: ClassVar[str] = "campaigns"
    ORDER: ClassVar[tuple[str, ...]] = ("started_at", "campaign_id")
    campaign_id: str = Field(description=VIEW_DOCS["campaigns"][1]["campaign_id"])
    domain: str | None = _c("domain")
    metric: str | None = _c("metric")
    direction: str | None = _c("direction")
    status: str | None = _c("status")
    started_at: datetime | None = _c("started_at")
    finished_at: datetime | None = _c("finished_at")
    finish_reason: str | None = _c("finish_reason")
    baseline_candidate_id: str | None = _c("baseline_candidate_id")
    baseline_value: float | None = _c("baseline_value")
    best_value: float | None = _c("best_value")
    hypotheses: int | None = _c("hypotheses")
    accepted: int | None = _c("accepted")


_h = _doc("hypotheses")


class Hypothesis(ViewRow):
    """A row of `hypotheses`: one proposed change and its fate."""

    VIEW: ClassVar[str] = "hypotheses"
    JSON_COLUMNS: ClassVar[tuple[str, ...]] = ("changes",)
    ORDER: ClassVar[tuple[str, ...]] = ("proposed_at", "hypothesis_id")
    hypothesis_id: str | None = _h("hypothesis_id")
    campaign_id: str = Field(description=VIEW_DOCS["hypotheses"][1]["campaign_id"])
    agent: str | None = _h("agent")
    proposer: str | None = _h("proposer")
    rationale: str | None = _h("rationale")
    parent_candidate_id: str | None = _h("parent_candidate_id")
    candidate_id: str | None = _h("candidate_id")
    diff: str | None = _h("diff")
    changes: JSONValue = _h("changes")
    status: str | None = _h("status")
    reject_reason: str | None = _h("reject_reason")
    proposed_at: datetime | None = _h("proposed_at")
    decided_at: datetime | None = _h("decided_at")
    built_on_hypothesis_id: str | None = _h("built_on_hypothesis_id")


_r = _doc("runs")


class Run(ViewRow):
    """A row of `runs`: one candidate, one seed, one budget (its latest attempt)."""

    VIEW: ClassVar[str] = "runs"
    JSON_COLUMNS: ClassVar[tuple[str, ...]] = ("metrics", "control_metrics")
    ORDER: ClassVar[tuple[str, ...]] = ("started_at", "run_id")
    run_id: str | None = _r("run_id")
    campaign_id: str = Field(description=VIEW_DOCS["runs"][1]["campaign_id"])
    hypothesis_id: str | None = _r("hypothesis_id")
    candidate_id: str | None = _r("candidate_id")
    role: str | None = _r("role")
    seed: int | None = _r("seed")
    attempt: int | None = _r("attempt")
    status: str | None = _r("status")
    value: float | None = _r("value")
    control_value: float | None = _r("control_value")
    metrics: JSONValue = _r("metrics")
    control_metrics: JSONValue = _r("control_metrics")
    error: str | None = _r("error")
    started_at: datetime | None = _r("started_at")
    finished_at: datetime | None = _r("finished_at")
    duration_s: float | None = _r("duration_s")
    worker: str | None = _r("worker")
    log_path: str | None = _r("log_path")
    shared_window: str | None = _r("shared_window")


_v = _doc("verdicts")


class Verdict(ViewRow):
    """A row of `verdicts`: one judge decision."""

    VIEW: ClassVar[str] = "verdicts"
    JSON_COLUMNS: ClassVar[tuple[str, ...]] = ("details",)
    ORDER: ClassVar[tuple[str, ...]] = ("decided_at", "hypothesis_id")
    hypothesis_id: str | None = _v("hypothesis_id")
    campaign_id: str = Field(description=VIEW_DOCS["verdicts"][1]["campaign_id"])
    decision: str | None = _v("decision")
    reason: str | None = _v("reason")
    test: str | None = _v("test")
    statistic: float | None = _v("statistic")
    p_value: float | None = _v("p_value")
    effect: float | None = _v("effect")
    ci_low: float | None = _v("ci_low")
    ci_high: float | None = _v("ci_high")
    n_candidate: int | None = _v("n_candidate")
    n_incumbent: int | None = _v("n_incumbent")
    alpha_spent: float | None = _v("alpha_spent")
    looks: int | None = _v("looks")
    details: JSONValue = _v("details")
    decided_at: datetime | None = _v("decided_at")


_i = _doc("incumbents")


class Incumbent(ViewRow):
    """A row of `incumbents`: one incumbent in a campaign's history, the baseline first."""

    VIEW: ClassVar[str] = "incumbents"
    ORDER: ClassVar[tuple[str, ...]] = ("since", "candidate_id")
    campaign_id: str = Field(description=VIEW_DOCS["incumbents"][1]["campaign_id"])
    candidate_id: str | None = _i("candidate_id")
    hypothesis_id: str | None = _i("hypothesis_id")
    since: datetime | None = _i("since")
    value: float | None = _i("value")
    n: int | None = _i("n")
    improvement_over_baseline: float | None = _i("improvement_over_baseline")
    is_current: bool | None = _i("is_current")
    same_window_effect: float | None = _i("same_window_effect")
    same_window_improvement: float | None = _i("same_window_improvement")
    confirmed_effect: float | None = _i("confirmed_effect")
    confirmed_ci_low: float | None = _i("confirmed_ci_low")
    confirmed_ci_high: float | None = _i("confirmed_ci_high")
    confirmed_n: int | None = _i("confirmed_n")
    confirmed_method: str | None = _i("confirmed_method")
    improvement: float | None = _i("improvement")
    improvement_ci_low: float | None = _i("improvement_ci_low")
    improvement_ci_high: float | None = _i("improvement_ci_high")
    improvement_method: str | None = _i("improvement_method")
    improvement_rel: float | None = _i("improvement_rel")
    improvement_rel_ci_low: float | None = _i("improvement_rel_ci_low")
    improvement_rel_ci_high: float | None = _i("improvement_rel_ci_high")


_l = _doc("llm_calls")


class LLMCall(ViewRow):
    """A row of `llm_calls`: one language-model call."""

    VIEW: ClassVar[str] = "llm_calls"
    ORDER: ClassVar[tuple[str, ...]] = ("at", "call_id")
    call_id: str | None = _l("call_id")
    campaign_id: str = Field(description=VIEW_DOCS["llm_calls"][1]["campaign_id"])
    agent: str | None = _l("agent")
    model: str | None = _l("model")
    purpose: str | None = _l("purpose")
    prompt_tokens: int | None = _l("prompt_tokens")
    completion_tokens: int | None = _l("completion_tokens")
    cost_usd: float | None = _l("cost_usd")
    latency_s: float | None = _l("latency_s")
    ok: bool | None = _l("ok")
    error: str | None = _l("error")
    at: datetime | None = _l("at")
    reasoning: str | None = _l("reasoning")


_b = _doc("leaderboard")


class Leaderboard(ViewRow):
    """A row of `leaderboard`: one candidate with finished runs, its mean and 95% t-interval."""

    VIEW: ClassVar[str] = "leaderboard"
    ORDER: ClassVar[tuple[str, ...]] = ("campaign_id", "mean", "candidate_id")
    campaign_id: str = Field(description=VIEW_DOCS["leaderboard"][1]["campaign_id"])
    candidate_id: str | None = _b("candidate_id")
    runs: int | None = _b("runs")
    mean: float | None = _b("mean")
    std: float | None = _b("std")
    ci_low: float | None = _b("ci_low")
    ci_high: float | None = _b("ci_high")
    is_incumbent: bool | None = _b("is_incumbent")
    hypothesis_id: str | None = _b("hypothesis_id")


ROW_CLASSES: dict[str, type[ViewRow]] = {cls.VIEW: cls for cls in (
    Campaign, Hypothesis, Run, Verdict, Incumbent, LLMCall, Leaderboard)}
T = TypeVar("T", bound=ViewRow)


# ------------------------------------------------------------------------------------------- results


def _to_pandas(columns: list[str], rows: list[tuple[Any, ...]]) -> pandas.DataFrame:
    try:
        import pandas
    except ImportError:
        raise ConfigError("to_pandas() needs pandas: pip install pandas") from None
    return pandas.DataFrame.from_records(rows, columns=columns)


def _to_arrow(columns: list[str], rows: list[tuple[Any, ...]]) -> pyarrow.Table:
    try:
        import pyarrow
    except ImportError:
        raise ConfigError("to_arrow() needs pyarrow: pip install 'ledgerlab[parquet]'") from None
    return pyarrow.table({name: [row[i] for row in rows] for i, name in enumerate(columns)})


@dataclass(frozen=True)
class Result:
    """A query's column names and rows, as `Ledger.sql` returns them."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts, column name -> value."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_pandas(self) -> pandas.DataFrame:
        return _to_pandas(self.columns, self.rows)

    def to_arrow(self) -> pyarrow.Table:
        return _to_arrow(self.columns, self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class Rows(builtins.list[T], Generic[T]):
    """A view's rows as SQLModel objects (a list), convertible to a DataFrame or an Arrow table."""

    def __init__(self, cls: type[T], items: Iterable[T] = ()) -> None:
        super().__init__(items)
        self.row_class = cls

    def _table(self) -> tuple[list[str], list[tuple[Any, ...]]]:
        columns = list(self.row_class.model_fields)
        return columns, [tuple(getattr(row, name) for name in columns) for row in self]

    def to_pandas(self) -> pandas.DataFrame:
        return _to_pandas(*self._table())

    def to_arrow(self) -> pyarrow.Table:
        """An Arrow table typed from the row class (JSON columns as their JSON text)."""
        try:
            import pyarrow
        except ImportError:
            raise ConfigError("to_arrow() needs pyarrow: pip install 'ledgerlab[parquet]'") from None
        fields = self.row_class.model_fields
        json_columns = set(self.row_class.JSON_COLUMNS)
        columns = {name: [json.dumps(v) if name in json_columns and v is not None else v
                          for v in (getattr(row, name) for row in self)] for name in fields}
        schema = pyarrow.schema([(name, _arrow_type(python_type(info.annotation))) for name, info in fields.items()])
        return pyarrow.table(columns, schema=schema)


def python_type(annotation: Any) -> type:
    """The one non-None type of a row field (`str | None` -> str; a JSON column -> dict)."""
    if annotation is JSONValue:
        return dict
    args = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)]
    return args[0]


def _arrow_type(python: type) -> pyarrow.DataType:
    import pyarrow

    return {str: pyarrow.string(), int: pyarrow.int64(), float: pyarrow.float64(), bool: pyarrow.bool_(),
            datetime: pyarrow.timestamp("us"), dict: pyarrow.string()}[python]


# ------------------------------------------------------------------------------------------- a campaign


# One campaign folded from its events at one moment, with `ledgerlab status`'s report: the CLI reads campaigns
# the same way (core/summary.py).
CampaignSnapshot = CampaignSummary


# One read at a time per ledger file in this process: DuckDB shares one database instance between a process's
# connections to a file, so a second read-only open while the first is live fails on its own settings
# ("the configuration has been locked"; storage/ledger.py open_read_only). The dashboard reads from threads.
_READ_LOCKS: dict[Path, threading.Lock] = {}
_READ_LOCKS_GUARD = threading.Lock()


def _read_lock(path: Path) -> threading.Lock:
    with _READ_LOCKS_GUARD:
        return _READ_LOCKS.setdefault(path, threading.Lock())


def literal(text: str) -> str:
    """`text` as a SQL string literal (DuckDB strings have no backslash escapes: doubling ' is enough)."""
    return "'" + str(text).replace("'", "''") + "'"


# ------------------------------------------------------------------------------------------- the handle


class Ledger:
    """A read-only handle on one project's ledger; each call reads afresh and holds nothing open after it."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, wait_s: float | None = None) -> None:
        self.project = Project.at(directory)
        self.wait_s = wait_s

    @property
    def path(self) -> Path:
        """The ledger file."""
        return self.project.ledger_path

    def __repr__(self) -> str:
        return f"ledgerlab.open({str(self.project.root)!r})"

    def sql(self, query: str) -> Result:
        """One read-only SQL statement over the views (and `events`), as `ledgerlab sql` runs it."""
        from ledgerlab.storage.query import run_query

        with _read_lock(self.path):
            got = run_query(self.path, query, wait_s=self.wait_s)
        return Result(got.columns, got.rows)

    def view(self, cls: type[T], campaign: str | None = None, where: dict[str, Any] | None = None) -> Rows[T]:
        """The rows of `cls.VIEW` (one campaign's, with column = value filters), as `cls` objects."""
        filters = {**({"campaign_id": campaign} if campaign is not None else {}), **(where or {})}
        unknown = set(filters) - set(cls.model_fields)
        if unknown:
            raise QueryError(f"{cls.VIEW} has no column {', '.join(sorted(unknown))}; "
                                f"its columns: {', '.join(cls.model_fields)}")
        clauses = [f"{_name(name)} IS NULL" if value is None else f"{_name(name)} = {_sql_value(value)}"
                   for name, value in filters.items()]
        query = (f"SELECT {', '.join(map(_name, cls.model_fields))} FROM {cls.VIEW}"
                 + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
                 + f" ORDER BY {', '.join(map(_name, cls.ORDER))}")
        got = self.sql(query)
        return Rows(cls, [cls.model_validate(dict(zip(got.columns, row))) for row in got.rows])

    def campaigns(self, **where: Any) -> Rows[Campaign]:
        """The `campaigns` view, oldest first."""
        return self.view(Campaign, None, where)

    def hypotheses(self, campaign: str | None = None, **where: Any) -> Rows[Hypothesis]:
        """The `hypotheses` view (one campaign's, if given), in the order they were proposed."""
        return self.view(Hypothesis, campaign, where)

    def runs(self, campaign: str | None = None, **where: Any) -> Rows[Run]:
        """The `runs` view, in the order they started."""
        return self.view(Run, campaign, where)

    def verdicts(self, campaign: str | None = None, **where: Any) -> Rows[Verdict]:
        """The `verdicts` view, in the order they were reached."""
        return self.view(Verdict, campaign, where)

    def incumbents(self, campaign: str | None = None, **where: Any) -> Rows[Incumbent]:
        """The `incumbents` view, the baseline first."""
        return self.view(Incumbent, campaign, where)

    def llm_calls(self, campaign: str | None = None, **where: Any) -> Rows[LLMCall]:
        """The `llm_calls` view, oldest first."""
        return self.view(LLMCall, campaign, where)

    def leaderboard(self, campaign: str | None = None, **where: Any) -> Rows[Leaderboard]:
        """The `leaderboard` view."""
        return self.view(Leaderboard, campaign, where)

    def head(self) -> int:
        """The seq of the ledger's latest event (0 when empty): a cheap way to see whether anything changed."""
        from ledgerlab.storage.ledger import read_only_connection

        # `events` needs no view, so no views check first: one connection (the campaign's socket, if it runs).
        with _read_lock(self.path), read_only_connection(self.path, wait_s=self.wait_s) as con:
            return int(con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def snapshot(self, campaign: str | None = None) -> CampaignSnapshot:
        """One campaign (id; default the latest started) folded from its events, with `status`'s report."""
        from ledgerlab.core.summary import summarize

        return summarize(self.project, campaign, wait_s=self.wait_s, lock=_read_lock(self.path))


def _name(column: str) -> str:
    """A column name quoted (`at` is a keyword); names come from the row classes, never from callers."""
    return f'"{column}"'


def _sql_value(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    return literal(str(value))


def open(directory: str | os.PathLike[str] | None = None, *, wait_s: float | None = None) -> Ledger:  # noqa: A001
    """A read-only handle on the ledger of the project at `directory` (default: $LEDGERLAB_DIR, else here)."""
    ledger = Ledger(directory, wait_s=wait_s)
    if not ledger.path.exists():
        raise LedgerError(f"no ledger at {ledger.path}: create one with `ledgerlab init DOMAIN`, "
                            "then `ledgerlab run`")
    return ledger
