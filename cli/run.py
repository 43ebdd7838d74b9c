"""`ledgerlab run` and `ledgerlab resume`: start or continue a campaign, with live progress."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperOption

from ledgerlab.cli.common import DirOption, user_errors
from ledgerlab.errors import ConfigError

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py

JudgeOption = Annotated[str | None, typer.Option("--judge", help="stats (default), greedy or fixed.")]
# Options `run` and `resume` share (the hypothesis and run budgets differ only in their help).
TimeLimitOption = Annotated[str | None, typer.Option(help="Wall-clock limit, e.g. 30m, 2h.")]
MaxCostOption = Annotated[float | None, typer.Option(help="LLM spend limit in dollars.")]
MaxUnitsOption = Annotated[float | None, typer.Option(help="Domain units limit (marketing: visitors).")]
WorkersOption = Annotated[int | None, typer.Option(help="Runs at once on this machine.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary.")]
ShareOption = Annotated[Path | None, typer.Option("--share", metavar="DIR", help=(
    "Publish each accept to the folder DIR and import other campaigns' accepts from it as they appear; "
    "this campaign's judge re-tests them (docs/discoveries.md)."))]
TrustOption = Annotated[list[str] | None, typer.Option("--trust", metavar="KEY", help=(
    "With --share: import only bundles signed by this Ed25519 public key (64 hex digits, as `ledgerlab verify` "
    "prints it); repeatable."))]


# The ledgerlab.toml key each option sets, so that an error about its value names the option that was typed.
FLAGS = {"budgets.max_hypotheses": "--max-hypotheses", "budgets.max_runs": "--max-runs",
         "budgets.time_limit": "--time-limit", "budgets.max_cost_usd": "--max-cost", "budgets.max_units": "--max-units",
         "seed": "--seed", "judge.kind": "--judge", "proposer.kind": "--proposer", "proposer.model": "--model",
         "proposer.api_base": "--api-base", "executor.workers": "--workers", "executor.kind": "--executor",
         "executor.ray_address": "--ray-address"}


class FieldHelp(TyperCommand):
    """`run --help` and `resume --help`: an option that sets a ledgerlab.toml key (FLAGS) shows that key's
    description from the config models (core/config.py), the text `ledgerlab init` writes above it.

    Read only when help is asked for, so other calls do not load the models (pydantic: ~0.4 s).
    """

    def format_help(self, ctx: Any, formatter: Any) -> None:  # typer's own (vendored) click types
        from ledgerlab.cli.init import help_table
        from ledgerlab.core.config import CampaignConfig

        described, key_of, defaults = help_table(), {flag: key for key, flag in FLAGS.items()}, CampaignConfig()
        for param in self.params:
            key = next((key_of[opt] for opt in param.opts if opt in key_of), None)
            text = described[key][0] if key is not None and key in described else ""
            if key is not None and text and isinstance(param, TyperOption):
                section, _, name = key.rpartition(".")
                default = getattr(getattr(defaults, section) if section else defaults, name)
                shown = "" if default is None else f", default {default}"
                param.help = f"{text} [ledgerlab.toml: {key}{shown}]"
        super().format_help(ctx, formatter)


@contextmanager
def _named_as_typed() -> Iterator[None]:
    """`the command line: executor.workers: ...` becomes `--workers: ...` (and `--option KEY: ...`)."""
    try:
        yield
    except ConfigError as exc:
        text = str(exc).replace("the command line: cannot read the duration", "budgets.time_limit: cannot read the duration")
        key, sep, rest = text.removeprefix("the command line: ").partition(": ")
        flag = FLAGS.get(key) or (f"--option {key[len('domain_options.'):]}"
                                  if key.startswith("domain_options.") else None)
        if not sep or flag is None or not text.startswith(("the command line: ", "budgets.time_limit: ")):
            raise
        raise ConfigError(f"{flag}: {rest}") from None


@contextmanager
def _tidy_new_folder(directory: str | None) -> Iterator[None]:
    """A session that fails before its campaign starts leaves no `.ledgerlab/` it created (an empty ledger)."""
    import shutil

    from ledgerlab.core.project import Project
    from ledgerlab.errors import LedgerlabError

    state_dir = Project.at(directory).state_dir
    fresh = not state_dir.exists()
    try:
        yield
    except LedgerlabError:
        if fresh and _no_events(Project.at(directory).ledger_path):
            shutil.rmtree(state_dir, ignore_errors=True)
        raise


def _no_events(ledger: Any) -> bool:
    import duckdb

    if not ledger.exists():
        return True
    try:
        with duckdb.connect(str(ledger), read_only=True) as con:
            row = con.execute("SELECT count(*) FROM events").fetchone()
            return row is not None and not row[0]
    except duckdb.Error:
        return False  # not readable as an empty ledger: leave it for a person to look at


def _check_values(overrides: dict[str, Any]) -> None:
    """A bad option value fails at once, before the campaign machinery (scipy: seconds on a busy machine)
    loads. The config's validators are per field, so a value refused here is refused on any base config."""
    from ledgerlab.core.config import CampaignConfig

    CampaignConfig().merged(overrides)


def _parse_option(text: str) -> tuple[str, Any]:
    """`key=value` for a domain option; the value is read as JSON when it parses (numbers, booleans)."""
    if "=" not in text:
        raise ConfigError(f"--option {text!r}: write KEY=VALUE, e.g. --option budget_tokens=200000")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def _budgets(max_hypotheses: int | None, max_runs: int | None, time_limit: str | None,
             max_cost: float | None, max_units: float | None) -> dict[str, Any]:
    """The budget options `run` and `resume` share, as ledgerlab.toml keys."""
    return {"budgets.max_hypotheses": max_hypotheses, "budgets.max_runs": max_runs,
            "budgets.time_limit": time_limit, "budgets.max_cost_usd": max_cost, "budgets.max_units": max_units}


@app.command(cls=FieldHelp)
def run(
    domain: Annotated[str | None, typer.Argument(help="Domain to run (see `ledgerlab domains`).")] = None,
    directory: DirOption = None,
    max_hypotheses: Annotated[int | None, typer.Option(help="Stop after this many hypotheses.")] = None,
    max_runs: Annotated[int | None, typer.Option(help="Stop after this many runs.")] = None,
    time_limit: TimeLimitOption = None,
    max_cost: MaxCostOption = None,
    max_units: MaxUnitsOption = None,
    judge: JudgeOption = None,
    proposer: Annotated[str | None, typer.Option(help="knob (default), random, llm, or a plug-in.")] = None,
    model: Annotated[str | None, typer.Option(help="LLM model (litellm name) for --proposer llm.")] = None,
    api_base: Annotated[str | None, typer.Option(help="LLM endpoint, e.g. http://127.0.0.1:8080/v1.")] = None,
    seed: Annotated[int | None, typer.Option(help="Campaign seed.")] = None,
    workers: WorkersOption = None,
    agents: Annotated[int | None, typer.Option(help="Concurrent proposers (copies of [proposer]).")] = None,
    executor: Annotated[str | None, typer.Option(help="local (default) or ray.")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster: auto or ray://HOST:PORT.")] = None,
    dataset: Annotated[str | None, typer.Option(help="ml_training: your own text file or folder.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", metavar="KEY=VALUE",
                                                     help="Domain option; repeat for several.")] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new campaign even if one is unfinished.")] = False,
    share: ShareOption = None,
    trust: TrustOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run a campaign (or continue the unfinished one in this folder)."""
    with user_errors():
        options = dict(_parse_option(o) for o in option or [])
        if dataset:
            options["dataset"] = dataset
        overrides = {
            **_budgets(max_hypotheses, max_runs, time_limit, max_cost, max_units),
            "domain": domain, "seed": seed, "judge.kind": judge, "proposer.kind": proposer, "proposer.model": model,
            "proposer.api_base": api_base, "executor.workers": workers, "executor.kind": executor,
            "executor.ray_address": ray_address,
        }
        overrides.update({f"domain_options.{k}": v for k, v in options.items()})
        from ledgerlab.cli.session import run_session

        with _tidy_new_folder(directory), _named_as_typed():
            _check_values(overrides)
            code = run_session(directory, overrides, agents=agents, new=new, resume_only=False, quiet=quiet,
                               share=share, trust=trust or [])
    raise typer.Exit(code)


@app.command(cls=FieldHelp)
def resume(
    directory: DirOption = None,
    max_hypotheses: Annotated[int | None, typer.Option(help="Raise or lower the hypothesis budget.")] = None,
    max_runs: Annotated[int | None, typer.Option(help="Raise or lower the run budget.")] = None,
    time_limit: TimeLimitOption = None,
    max_cost: MaxCostOption = None,
    max_units: MaxUnitsOption = None,
    workers: WorkersOption = None,
    share: ShareOption = None,
    trust: TrustOption = None,
    quiet: QuietOption = False,
) -> None:
    """Continue the unfinished campaign after Ctrl-C or a crash (unfinished runs are re-run)."""
    with user_errors():
        overrides = {**_budgets(max_hypotheses, max_runs, time_limit, max_cost, max_units),
                     "executor.workers": workers}
        from ledgerlab.cli.session import run_session

        with _tidy_new_folder(directory), _named_as_typed():
            _check_values(overrides)
            code = run_session(directory, overrides, agents=None, new=False, resume_only=True, quiet=quiet,
                               share=share, trust=trust or [])
    raise typer.Exit(code)
