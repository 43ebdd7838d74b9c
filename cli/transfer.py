"""`ledgerlab transfer`: re-measure a campaign's accepted changes at another setting (core/transfer.py).

    ledgerlab transfer --option budget_tokens=98304            # the latest campaign, at twice the CPU budget
    ledgerlab transfer --campaign c-2026 --option market_seed=7 --seeds 8
    ledgerlab transfer                                          # resumes an unfinished transfer
"""

from __future__ import annotations

import inspect
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledgerlab.cli.common import DirOption, user_errors
from ledgerlab.errors import CampaignError, ConfigError

if TYPE_CHECKING:
    from ledgerlab.core.config import CampaignConfig
    from ledgerlab.core.state import CampaignState
    from ledgerlab.core.transfer import Row

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py

@app.command()
def transfer(
    directory: DirOption = None,
    campaign: Annotated[str | None, typer.Option("--campaign", "-c", help=(
        "The campaign whose accepted changes to re-measure (id or prefix; default: the latest search)."))] = None,
    option: Annotated[list[str] | None, typer.Option("--option", metavar="KEY=VALUE", help=(
        "The new setting: a domain option; repeat for several."))] = None,
    seeds: Annotated[int | None, typer.Option(min=2, help=(
        "Fresh seeds per arm (default: the source judge's fixed_n, 5)."))] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Runs at once on this machine.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the table.")] = False,
) -> None:
    """Re-measure a campaign's accepted changes at another setting: which gains hold, shrink or reverse."""
    from ledgerlab.cli.run import _parse_option

    with user_errors():
        options = dict(_parse_option(o) for o in option or [])
        code = run_transfer(directory, campaign, options, seeds, workers, quiet)
    raise typer.Exit(code)


def run_transfer(directory: str | None, campaign: str | None, options: dict[str, Any], seeds: int | None,
                 workers: int | None, quiet: bool) -> int:
    """Start (or resume) the transfer campaign under the folder's runner lock; returns the exit code."""
    from ledgerlab.cli.session import _stopping, _warn, console, only_runner
    from ledgerlab.core.project import Project
    from ledgerlab.core.registry import close_domain
    from ledgerlab.core.transfer_loop import Transfer
    from ledgerlab.storage.ledger import DuckDBLedger
    from ledgerlab.storage.server import serve_readers
    from ledgerlab.storage.signing import CheckpointSigner

    project = Project.at(directory)
    if not project.ledger_path.exists():
        raise CampaignError(f"no ledger in {project.root}: run a campaign there first (`ledgerlab run DOMAIN`)")
    with only_runner(project) as lock, DuckDBLedger(project.ledger_path, guard=lock.check) as store, \
            serve_readers(store):
        campaign_id, config, source = _prepare(store, campaign, options, workers)
        domain, executor = _build(config)
        resuming = source is None
        start = [] if source is None else _start_events(source, domain, config, options, seeds)
        printer = _printer(quiet, project.runs_dir)
        job = Transfer(store, domain, config, executor, project.runs_dir, campaign_id, config.domain or "",
                       start=start, on_event=printer, signer=CheckpointSigner(warn=_warn))
        if job.state.started is not None:  # resuming: the lines name the baseline and the arms as before
            printer.baseline, printer.metric = job.state.started.baseline_candidate_id, job.state.metric.name
            printer.numbers.update({h.hypothesis_id: h.number for h in job.state.hypotheses.values()})
        verb = "resuming" if resuming else "starting"
        console.print(f"[bold]{verb}[/bold] transfer campaign {campaign_id} ({config.domain}, "
                      f"{executor.slots} worker(s)) in {project.root}")
        try:
            printer.start()
            state = job.run()
        except Exception as exc:
            _stopping(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            printer.close()
            close_domain(domain)
    render_table(state)
    if state.status == "paused":
        console.print(f"paused: {state.pause_reason}; continue with `ledgerlab transfer --dir {project.root}`")
        return 0 if (state.pause_reason or "").startswith("interrupted") else 1
    return 0


# ------------------------------------------------------------------------------------------ choosing


def _prepare(store: Any, campaign: str | None, options: dict[str, Any],
             workers: int | None) -> tuple[str, CampaignConfig, CampaignState | None]:
    """(campaign id, config, source): an unfinished transfer resumes (source None), else a new one starts."""
    from ledgerlab.core.config import validate_config
    from ledgerlab.core.state import fold

    states = [fold(cid, store.read(cid)) for cid in store.campaign_ids()]
    unfinished = [s for s in states if _kind(s) == "transfer" and s.status != "finished"]
    extra = {"executor.workers": workers}
    if unfinished:
        state = unfinished[-1]
        assert state.started is not None and state.started.transfer is not None
        recorded = state.started.transfer.get("options", {})
        if options and options != recorded:
            raise CampaignError(f"transfer campaign {state.campaign_id} (at {_shown(recorded)}) is unfinished: "
                                f"`ledgerlab transfer` without --option resumes it")
        config = validate_config(state.started.config, source=f"campaign {state.campaign_id}").merged(extra)
        return state.campaign_id, config, None
    if not options:
        raise ConfigError("give the setting to re-measure at: --option KEY=VALUE (e.g. --option budget_tokens=98304)")
    source = _source(states, campaign)
    return _new(source, options, extra)


def _kind(state: CampaignState) -> str:
    return state.started.kind if state.started is not None else "search"


def _shown(options: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in options.items()) or "the same setting"


def _source(states: list[CampaignState], ref: str | None) -> CampaignState:
    """The campaign `ref` names (id or unique prefix), else the latest search campaign that started."""
    searches = [s for s in states if s.started is not None and _kind(s) == "search"]
    if ref is None:
        if not searches:
            raise CampaignError("no campaign in this ledger to transfer; run one first with `ledgerlab run`")
        return searches[-1]
    found = [s for s in states if s.campaign_id == ref] or [s for s in states if s.campaign_id.startswith(ref)]
    if len(found) != 1:
        known = ", ".join(s.campaign_id for s in searches) or "none"
        what = "is ambiguous" if found else "matches no campaign"
        raise CampaignError(f"--campaign {ref!r} {what} (campaigns: {known})")
    if _kind(found[0]) == "transfer":
        raise CampaignError(f"campaign {found[0].campaign_id} is itself a transfer; give the campaign it re-measured")
    if found[0].started is None:
        raise CampaignError(f"campaign {found[0].campaign_id} has not started: nothing to transfer")
    return found[0]


def _new(source: CampaignState, options: dict[str, Any],
         extra: dict[str, Any]) -> tuple[str, CampaignConfig, CampaignState]:
    """A new transfer of `source` at `options`: its id and config (nothing written yet)."""
    from ledgerlab.core.config import validate_config
    from ledgerlab.core.transfer import source_changes

    started = source.started
    assert started is not None
    source_changes(source)  # "nothing to transfer" before any domain is built
    base = validate_config(started.config, source=f"campaign {source.campaign_id}")
    _check_keys(started.domain, options)
    config = base.merged({**extra, **{f"domain_options.{k}": v for k, v in options.items()}})
    return f"c-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", config, source


def _start_events(source: CampaignState, domain: Any, config: CampaignConfig, options: dict[str, Any],
                  seeds: int | None) -> list[Any]:
    """The events that start the transfer: CampaignStarted (kind "transfer") and its arms."""
    from ledgerlab.core.campaign import run_isolation
    from ledgerlab.core.holdback import recorded_settings
    from ledgerlab.core.transfer import fresh_seeds, start_events

    started = source.started
    assert started is not None
    if domain.metric.name != started.metric.get("name"):
        raise ConfigError(f"--option {_shown(options)} changes the metric to {domain.metric.name!r}; a transfer "
                          f"compares {started.metric.get('name')!r} with the source's")
    n = seeds or recorded_settings(started.judge).fixed_n
    return start_events(source, domain, started.domain, config, options, fresh_seeds(source, n),
                        run_isolation(domain, config.executor.isolation))


def _check_keys(domain_name: str, options: dict[str, Any]) -> None:
    """An option the domain does not take is one line naming it and the ones it does take."""
    from ledgerlab.core.registry import domain_entry_points

    entry = domain_entry_points().get(domain_name)
    if entry is None:
        return  # load_domain says the domain is not installed
    params = inspect.signature(entry.load()).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # the domain checks its own keys (marketing: "unknown option(s) ...")
    known = sorted(name for name, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"--option {unknown[0]}: not an option of domain {domain_name} "
                          f"(its options: {', '.join(known)})")


def _domain(config: CampaignConfig) -> Any:
    from ledgerlab.cli.run import _named_as_typed
    from ledgerlab.core.registry import load_domain

    with _named_as_typed():
        return load_domain(config.domain or "", dict(config.domain_options))


def _build(config: CampaignConfig) -> tuple[Any, Any]:
    from ledgerlab.core.executors import make_executor

    domain = _domain(config)
    return domain, make_executor(config.executor, domain, config.domain or "", dict(config.domain_options))


# ------------------------------------------------------------------------------------------ printing


def _printer(quiet: bool, runs_dir: Any) -> Any:
    """The run/verdict lines `ledgerlab run` prints, with the transfer's own first line."""
    from ledgerlab.cli.session import _Printer
    from ledgerlab.storage import events as ev

    class TransferPrinter(_Printer):
        def _line(self, e: ev.Event, q: Any) -> str | None:
            line = super()._line(e, q)
            if isinstance(e, ev.CampaignStarted) and e.transfer is not None:
                t = e.transfer
                seeds = t.get("seeds") or [0]
                return (f"transfer of {t['source_campaign_id']} at {q(_shown(t.get('options', {})))}: the baseline "
                        f"and {len(t.get('arms', []))} arm(s) (each accepted change on its own, the final "
                        f"incumbent) on fresh seeds {seeds[0]}–{seeds[-1]}")
            return line

    return TransferPrinter(quiet, runs_dir)


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3g}"


def _effect(effect: float | None, low: float | None, high: float | None) -> str:
    if effect is None:
        return "–"
    return _num(effect) + (f" [{_num(low)}, {_num(high)}]" if low is not None and high is not None else "")


def table_rows(rows: list[Row]) -> list[list[str]]:
    """The table's cells: change, effect in the source, effect at the new setting, n, verdict."""
    out = []
    for r in rows:
        src = r.source or {}
        basis = {"confirmed": "confirmed", "selected": "as selected", "improvement": "vs baseline"}.get(
            src.get("basis", ""), "")
        if src.get("sum_of"):
            basis = f"{'+'.join(src['sum_of'])} {basis}"
        source = _effect(src.get("effect"), src.get("ci_low"), src.get("ci_high")) + (f" {basis}" if basis else "")
        new = _effect(r.effect, r.ci_low, r.ci_high) if r.effect is not None else (r.note or "–")
        verdict = r.verdict + (f" ({r.note})" if r.note and r.effect is not None else "")
        label = r.label + (f" {r.rationale}" if r.rationale else "") + (f" [{r.about}]" if r.about else "")
        out.append([label, source, new, str(r.n), verdict])
    return out


def render_table(state: CampaignState) -> None:
    """The transfer table of a transfer campaign, from its events (`transfer`, `status`)."""
    from rich.markup import escape

    from ledgerlab.cli.common import Col, fit_table, make_console, print_fitted
    from ledgerlab.core.transfer import table

    assert state.started is not None and state.started.transfer is not None
    t = state.started.transfer
    console = make_console()
    metric = state.metric
    sign = "lower" if metric.direction == "minimize" else "higher"
    cols = [Col("change", "text", keep=3), Col("in the source (95% CI)", "num", keep=2),
            Col(f"at {_shown(t.get('options', {}))} (95% CI)", "num", keep=3), Col("n", "num"),
            Col("verdict", "text", keep=3)]
    cells = [[escape(cell) for cell in row] for row in table_rows(table(state))]  # rationales may hold [brackets]
    fitted = fit_table(cols, cells, console.width)
    fitted.table.title = (f"transfer of {t['source_campaign_id']}: improvement in {metric.name} ({sign} is better, "
                          f"> 0 = better), each against the baseline on {len(t.get('seeds', []))} fresh seeds")
    print_fitted(fitted.table, console)
    if note := fitted.note():
        console.print(note)
    console.print("holds: same sign, 95% CI excludes 0, at least half the source's effect; shrinks: same sign "
                  "otherwise; reverses: opposite sign, CI excludes 0; unclear: the rest (docs/transfer.md)")
