"""One `run`/`resume` session: resolve the config, open the ledger, build the campaign, show progress."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.markup import escape

from ledgerlab.cli.common import clip, make_console
from ledgerlab.core.config import AgentConfig, CampaignConfig, load_config, validate_config
from ledgerlab.core.project import Project
from ledgerlab.core.runner_lock import RunnerLock, hold
from ledgerlab.core.sandbox import isolation_warning
from ledgerlab.errors import CampaignError, ConfigError
from ledgerlab.storage import events as ev

console = make_console(highlight=False)


def run_session(directory: str | None, overrides: dict[str, Any], *, agents: int | None, new: bool,
                resume_only: bool, quiet: bool, share: Path | None = None, trust: Sequence[str] = ()) -> int:
    """Start or resume the project's campaign; returns the exit code (0 finished or interrupted, 1 paused)."""
    from ledgerlab.core.campaign import Campaign, open_campaign_id
    from ledgerlab.storage.ledger import DuckDBLedger
    from ledgerlab.storage.server import serve_readers
    from ledgerlab.storage.signing import CheckpointSigner

    project = Project.at(directory)
    signer = CheckpointSigner(warn=_warn)  # the runner's key: its checkpoints and the bundles it shares
    shared = _share(share, trust, signer)
    # serve_readers: the file stays open for the whole campaign and other processes' queries are answered on
    # its socket (storage/server.py), so no reader can lock the campaign out of its ledger.
    with only_runner(project) as lock, DuckDBLedger(project.ledger_path, guard=lock.check) as store, \
            serve_readers(store):
        campaign_id = None if new else open_campaign_id(store)
        if resume_only and campaign_id is None:
            raise CampaignError("no unfinished campaign in this folder; start one with `ledgerlab run DOMAIN`")
        config = _config(project, store, campaign_id, overrides)
        if config.domain is None:
            raise ConfigError("no domain given: `ledgerlab run DOMAIN` (see `ledgerlab domains`), "
                              "or set `name` under `[domain]` in ledgerlab.toml (`ledgerlab init DOMAIN` writes it)")
        domain, executor, team = _build(config, agents)
        printer = _Printer(quiet, project.runs_dir, domain.metric.name)
        camp = Campaign(store, domain, config, agents=team, executor=executor, runs_dir=project.runs_dir,
                        campaign_id=campaign_id, domain_name=config.domain, on_event=printer,
                        signer=signer, on_error=_stopping, share=shared)
        printer.numbers.update({h.hypothesis_id: h.number for h in camp.state.hypotheses.values()})  # resume: #n
        verb = "resuming" if camp.state.started else "starting"
        console.print(f"[bold]{verb}[/bold] campaign {camp.campaign_id} ({config.domain}, judge "
                      f"{camp.judge.name}, proposer {', '.join(a.proposer.name for a in team)}, "
                      f"{executor.slots} worker(s)) in {project.root}")
        if camp.isolation != "none" and (warning := isolation_warning(camp.isolation, config.executor.isolation)):
            _warn(warning)
        try:
            printer.start()
            state = camp.run()
        finally:
            printer.close()
            from ledgerlab.core.registry import close_domain

            close_domain(domain)
    return _summary(state, project)


@contextmanager
def only_runner(project: Project) -> Iterator[RunnerLock]:
    """One writer per project folder at a time: `run`, `resume` or `sign` (readers such as `status` still get in).

    An flock on `.ledgerlab` itself, held until the block ends (core/runner_lock.py); pass `lock.check` as the
    ledger's guard so a runner whose folder was swapped under it stops instead of writing.
    """
    with hold(project) as lock:
        yield lock


def _share(folder: Path | None, trust: Sequence[str], signer: Any) -> Any:
    """`--share DIR`: the share folder this runner publishes to and imports from (core/sharing.py); with
    `--trust KEY`s, it imports only bundles those keys signed."""
    if folder is None:
        if trust:
            raise ConfigError("--trust picks whose bundles a share folder's campaign imports: give --share DIR too")
        return None
    from ledgerlab.core.sharing import open_share
    from ledgerlab.storage.signing import trusted_keys

    return open_share(folder.expanduser(), warn=_warn, trusted=trusted_keys(trust), signer=signer)


def _stopping(reason: str) -> None:
    """The loop is ending on an error: say so before the (possibly slow) append of CampaignPaused."""
    console.print(f"[red]stopping[/red]: {escape(reason)}; recording the pause in the ledger")


def _warn(message: str) -> None:
    """One line on the console, for a problem that does not stop the campaign (e.g. no signing key)."""
    console.print(f"[yellow]warning[/yellow]: {escape(message)}")


def _config(project: Project, store: Any, campaign_id: str | None, overrides: dict[str, Any]) -> CampaignConfig:
    """The stored config of the campaign being resumed, else ledgerlab.toml; the command line wins."""
    from ledgerlab.core.state import fold

    state = fold(campaign_id, store.read(campaign_id)) if campaign_id is not None else None
    started = state.started if state is not None else None
    if started is not None:  # not yet started: a campaign that so far holds only imported discoveries
        base = validate_config(started.config, source=f"campaign {campaign_id}")
        wanted = overrides.get("domain")
        if wanted and wanted != started.domain:
            raise CampaignError(
                f"the unfinished campaign {campaign_id} runs domain {started.domain!r}; "
                f"`ledgerlab resume` to continue it, or `ledgerlab run {wanted} --new` to start another"
            )
    else:
        base = load_config(project.config_path)
    merged = base.merged(overrides)
    if state is not None and started is None:
        from ledgerlab.core.discoveries import check_queued_domain

        check_queued_domain(state, merged.domain)
    return merged


def _build(config: CampaignConfig, agents: int | None) -> tuple[Any, Any, list[Any]]:
    """The domain, the executor and the agents the config asks for."""
    from ledgerlab.core.campaign import Agent
    from ledgerlab.core.executors import make_executor
    from ledgerlab.core.registry import load_domain, load_proposer

    domain = load_domain(config.domain or "", dict(config.domain_options))
    specs = list(config.agents)
    if not specs:
        base = config.proposer.model_dump()
        specs = [AgentConfig(name=f"agent-{i}", **base) for i in range(max(1, agents or 1))]
    team = [Agent(spec.name, load_proposer(spec)) for spec in specs]
    executor = make_executor(config.executor, domain, config.domain or "", dict(config.domain_options))
    return domain, executor, team


class _Printer:
    """Prints one line per step of the campaign as its events are written, in an order a reader can follow.

    A proposal is printed when its first run starts (or its patch or verdict comes), not when the proposer
    made it: the baseline runs come first. Runs in flight show their progress (cli/progress.py).
    """

    def __init__(self, quiet: bool, runs_dir: Path | None = None, metric: str = "value") -> None:
        from ledgerlab.cli.progress import RunProgress

        self.quiet, self.metric = quiet, metric
        self.numbers: dict[str, int] = {}
        self.held: dict[str, str] = {}  # hypothesis id -> its "proposes" line, until its first run starts
        self.baseline: str | None = None  # the baseline candidate, whose first runs measure the noise
        self.progress = None if quiet else RunProgress(console, runs_dir)

    def start(self) -> None:
        if self.progress is not None:
            self.progress.start()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        for line in self.held.values():  # proposals whose runs never started (the campaign stopped first)
            self._print(line)
        self.held.clear()

    def __call__(self, row: ev.StoredEvent) -> None:
        if self.quiet:
            return
        e = row.event()
        self._track(e)
        for line in self._lines(e):
            self._print(line, row.recorded_at)

    def _print(self, line: str, at: Any = None) -> None:
        stamp = f"{at:%H:%M:%S}" if at is not None else ""
        try:
            console.print(f"[dim]{stamp}[/dim] {line}" if stamp else line)
        except Exception:  # noqa: BLE001 - progress output must never stop a campaign
            print(f"{stamp} {line}")
        if self.progress is not None:
            self.progress.printed()

    def _track(self, e: ev.Event) -> None:
        """Tell the progress display which runs are in flight."""
        if self.progress is None:
            return
        if isinstance(e, ev.RunStarted):
            self.progress.started(e.run_id, f"{e.run_id} {self._role(e)}")
        elif isinstance(e, (ev.RunFinished, ev.RunFailed)):
            self.progress.ended(e.run_id)

    def _role(self, e: ev.RunStarted) -> str:
        return "baseline" if e.role == "incumbent" and e.candidate_id == self.baseline else e.role

    def _lines(self, e: ev.Event) -> list[str]:
        """The lines for one event: held proposals come out before their hypothesis's first line."""
        hypothesis = getattr(e, "hypothesis_id", None)
        if isinstance(e, ev.HypothesisProposed):
            line = self._line(e, escape)
            self.held[e.hypothesis_id] = line or ""
            return []
        # Its first run, its patch's rejection or its verdict (not CandidateCreated, which comes at once).
        release = isinstance(e, (ev.RunStarted, ev.PatchRejected, ev.VerdictReached)) and hypothesis in self.held
        lines = [self.held.pop(hypothesis)] if release and hypothesis is not None else []
        line = self._line(e, escape)
        return [x for x in (*lines, line) if x]

    def _line(self, e: ev.Event, q: Any) -> str | None:
        """The line for one event; `q` escapes text from proposers and runs (it may contain [brackets])."""
        if isinstance(e, ev.CampaignStarted):
            self.baseline = e.baseline_candidate_id
            self.metric = str(e.metric.get("name") or self.metric)
            return (f"baseline {e.baseline_candidate_id[:8]}: the starting files, run on several seeds to "
                    f"measure {q(self.metric)} and its noise before the first hypothesis is judged")
        if isinstance(e, ev.HypothesisProposed):
            self.numbers[e.hypothesis_id] = max(self.numbers.values(), default=0) + 1
            return f"#{self.numbers[e.hypothesis_id]} [cyan]{q(e.agent)}[/cyan] proposes: {q(clip(e.rationale, 100))}"
        if isinstance(e, ev.PatchRejected):
            return f"#{self.numbers.get(e.hypothesis_id, '?')} [yellow]patch rejected[/yellow]: {q(clip(e.reason, 120))}"
        if isinstance(e, ev.RunStarted):
            return f"   run {e.run_id} {self._role(e)} {e.candidate_id[:8]} seed {e.seed}" + \
                (f" (attempt {e.attempt})" if e.attempt > 1 else "") + \
                (f" in window {e.shared_window}" if e.shared_window and e.shared_window != e.run_id else "")
        if isinstance(e, ev.RunFinished):
            return f"   run {e.run_id} finished: {q(self.metric)} {e.value:.5g} in {e.duration_s:.1f} s"
        if isinstance(e, ev.RunFailed):
            return f"   run {e.run_id} [red]{e.status}[/red]: {q(e.error[:120])}"
        if isinstance(e, ev.VerdictReached):
            color = "green" if e.decision == "accept" else "red"
            return f"#{self.numbers.get(e.hypothesis_id, '?')} [{color}]{e.decision}[/{color}]: {q(clip(e.reason, 160))}"
        if isinstance(e, ev.DiscoveryImported) and e.retry_of:
            return (f"imported #{e.source_number} of {q(e.source_campaign_id)} queued again: the incumbent changed "
                    f"while #{self.numbers.get(e.retry_of, '?')} tested it")
        if isinstance(e, ev.DiscoveryImported):  # from `ledgerlab import`, or a share folder while running
            return (f"imported #{e.source_number} of {q(e.source_campaign_id)}: {q(clip(e.rationale, 100))} "
                    f"(queued: this campaign's judge tests it)")
        if isinstance(e, ev.IncumbentChanged):
            return f"[bold green]new incumbent[/bold green] {e.candidate_id[:12]}"
        if isinstance(e, ev.CampaignPaused):
            return f"[yellow]paused[/yellow]: {q(e.reason)}"
        if isinstance(e, ev.CampaignFinished):
            return f"[bold]finished[/bold] ({q(e.reason)}): {q(e.detail)}"
        if isinstance(e, ev.LLMCallCompleted) and not e.ok:
            return f"   LLM call failed: {q(e.error or '')}"
        if isinstance(e, ev.ProposerFailed):
            return (f"   [red]proposer failed[/red] (agent {q(e.agent)}, {e.consecutive} in a row): "
                    f"{q(clip(e.error, 120))}")
        return None


def _summary(state: Any, project: Project) -> int:
    """A short closing summary; the exit code tells a script whether the campaign needs attention."""
    hyps = list(state.hypotheses.values())
    accepted = sum(h.status == "accepted" for h in hyps)
    console.print(f"{len(hyps)} hypotheses, {accepted} accepted, {state.n_runs} runs; "
                  f"incumbent {state.incumbent_id[:12]}. `ledgerlab status --dir {project.root}` for details.")
    if state.status == "paused":
        reason = state.pause_reason or "paused"
        console.print(f"paused: {escape(reason)}; continue with `ledgerlab resume --dir {project.root}`")
        return 0 if reason.startswith("interrupted") else 1
    return 0


