"""`ledgerlab domains` (what is installed) and `ledgerlab init DOMAIN` (a project folder to start from).

    ledgerlab domains
    ledgerlab init ml_training --dir myproject      # ledgerlab.toml, train.py, program.md

`init` writes every option of ledgerlab.toml (core/config.py) with a comment saying what it does; options that
keep their default are commented out, so a later default change reaches the project.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import textwrap
from typing import Annotated, Any

import typer

from ledgerlab.cli.common import Col, DirOption, fit_table, make_console, print_fitted, user_errors
from ledgerlab.cli.main import app
from ledgerlab.core.errors import LedgerlabError
from ledgerlab.core.project import Project

# ------------------------------------------------------------------------------------------ domains


@app.command()
def domains() -> None:
    """List the installed domains (entry-point group ledgerlab.domains) with their metric."""
    from ledgerlab.core.registry import close_domain, domain_entry_points, load_domain

    found = domain_entry_points()
    if not found:
        typer.echo("no domains installed: install a package that registers one under ledgerlab.domains")
        return
    rows: list[list[str]] = []
    for name in sorted(found):
        try:
            domain = load_domain(name)
        except LedgerlabError as exc:  # a broken plug-in is listed, not fatal
            rows.append([name, "", "", "", f"cannot load: {exc}"])
            continue
        except Exception as exc:  # noqa: BLE001 - third-party code: report, do not crash the listing
            rows.append([name, "", "", "", f"cannot load: {type(exc).__name__}: {exc}"])
            continue
        try:
            m = domain.metric
            unit = f" {m.unit}" if m.unit else ""
            rows.append([name, m.name, m.direction, f"{m.delta:g}{unit}", first_line(domain.description)])
        finally:
            close_domain(domain)
    console = make_console()
    cols = [Col("domain", "id", 5), Col("metric", "id", 4), Col("direction", "text", 2), Col("delta", "text", 1),
            Col("description", "text", 3, shortest=24)]
    fitted = fit_table(cols, rows, console.width)
    print_fitted(fitted.table, console)
    if fitted.dropped:
        console.print(fitted.note(), style="dim", markup=False)


def first_line(text: str) -> str:
    """The first non-empty line of a description, without Markdown heading marks."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()
    return ""


# --------------------------------------------------------------------------------------------- init


@app.command()
def init(
    domain: Annotated[str, typer.Argument(help="The domain to start from (see `ledgerlab domains`).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist.")] = False,
    dir: DirOption = None,
) -> None:
    """Write ledgerlab.toml (every option, commented), the domain's editable files and program.md."""
    from ledgerlab.core.registry import close_domain, domain_entry_points, load_domain

    project = Project.at(dir)
    with user_errors():
        loaded = load_domain(domain)
        try:
            files = {**{"program.md": loaded.description}, **loaded.baseline()}
            options = domain_options(loaded, domain_entry_points()[domain].load())
        finally:
            close_domain(loaded)
        files["ledgerlab.toml"] = config_text(domain, options)
        clash = sorted(name for name in files if (project.root / name).exists())
        if clash and not force:
            raise LedgerlabError(f"{', '.join(clash)} already exist in {project.root}; pass --force to overwrite")
        for name, text in files.items():
            path = project.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="")
    typer.echo(f"wrote {', '.join(sorted(files))} to {project.root}")
    where = f" --dir {dir}" if dir else ""
    typer.echo(f"next: edit ledgerlab.toml if you like, then `ledgerlab run{where}`")


def domain_options(domain: Any, factory: Any) -> dict[str, Any]:
    """The domain's options and their defaults: a dataclass `settings`, else the constructor's keywords.

    A None default shows the value the domain resolved (`budget_s` from the device profile) when it is a
    plain scalar; otherwise the option is listed as unset.
    """
    settings = getattr(domain, "settings", None)
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    found: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty or p.name.startswith("_"):
            continue
        value = p.default if p.default is not None else getattr(domain, p.name, None)
        found[p.name] = value
    return found


# ---------------------------------------------------------------------------------- the toml text
# Every field of CampaignConfig and its sections has a line here; tests/test_cli_campaign.py checks that a
# new config field cannot be added without one. (help, example for fields whose default is None)

HELP: dict[str, tuple[str, Any]] = {
    "seed": ("base of every seed: replicate seeds and proposer randomness derive from it", None),
    "budgets.max_hypotheses": ("stop after this many hypotheses (0: no limit)", None),
    "budgets.max_runs": ("stop after this many runs, incumbent replicates included (unset: no limit)", 200),
    "budgets.time_limit": ("stop after this much active wall-clock time: seconds, or '90s', '30m', '2h', '1h30m'",
                           "2h"),
    "budgets.max_cost_usd": ("stop once language-model calls have cost this many US dollars (LLM proposers)", 5.0),
    "budgets.max_units": ("stop after this many domain units have been used (e.g. visitors for marketing)",
                          1000000),
    "judge.kind": ("stats: sequential one-sided test that keeps a change only when it is shown to be better by "
                   "more than delta; fixed: one test at fixed_n runs; greedy: autoresearch's rule (one run, "
                   "keep if better; in campaigns of 50 it keeps about a quarter of useless changes, half with A/B runs)", None),
    "judge.alpha": ("false-accept level: per hypothesis (alpha_policy fixed) or the FDR target (fdr, lord); "
                    "unset: 0.1 with fdr, else the domain's level (0.01, marketing 0.05)", 0.01),
    "judge.alpha_policy": ("fdr: online false discovery rate control (ADDIS) over the campaign's stream of "
                           "hypotheses, the share of useless accepts stays under alpha at any length; fixed: every "
                           "hypothesis is tested at alpha (more accepts, and the useless share grows with length); "
                           "lord: LORD++; unset: fdr for A/B designs, fixed otherwise", "fdr"),
    "judge.fdr_lambda": ("fdr: a decided hypothesis with p at most this is a candidate and costs no wealth", None),
    "judge.fdr_tau": ("fdr: a decided hypothesis with p above this is discarded (a clearly useless change) and "
                      "costs no wealth", None),
    "judge.fdr_w0": ("fdr: the share of alpha spent before the first accept", None),
    "judge.fdr_flat": ("fdr: the levels stay flat over this many costly hypotheses, then decay", None),
    "judge.fdr_decay": ("fdr: the exponent of the decay after the flat stretch (unset: 2)", 2.0),
    "judge.looks": ("cumulative candidate runs at which the stats judge looks (unset: 1, 2, 3, 4, 6, 8); alpha "
                    "is split over them, so peeking is paid for", [1, 2, 3, 4, 6, 8]),
    "judge.fixed_n": ("runs per hypothesis for the fixed judge", None),
    "judge.futility": ("stop a hypothesis early when it is unlikely to succeed (most bad ideas cost one run)",
                       None),
    "judge.futility_p": ("at the first look, drop a hypothesis whose p-value is above this (higher: more "
                         "power, more runs per bad idea)", None),
    "judge.futility_scale": ("effect: later looks keep the first look's bound on the effect, so their p bound "
                             "tightens; p: every look drops at p > futility_p", None),
    "judge.futility_min_df": ("below this many degrees of freedom a futility stop needs the effect to be <= delta "
                              "(and the alpha boundaries take no credit for futility); 0: always binding", None),
    "judge.spending": ("how alpha is split over the looks: information (in proportion to runs) or equal", None),
    "judge.min_diff_df": ("until this many paired-difference df exist, 2x the single-run variance stands in "
                          "for the paired variance (conservative)", None),
    "judge.robust": ("heavy-tailed metrics: none, trim (trimmed means) or winsor (winsorized means)", None),
    "judge.trim": ("share trimmed or winsorized at each end when robust is not none", None),
    "judge.delta": ("practical margin: the smallest improvement worth keeping, in metric units (unset: the "
                    "domain's own)", 0.01),
    "judge.confirm_runs": ("fresh incumbent runs after an accept: the improvement reported comes from them, "
                           "not from the runs that selected it", None),
    "judge.calibration_runs": ("baseline runs at the start of a campaign (unset: 5 for independent designs, "
                               "3 for A/B ones)", 5),
    "judge.incumbent_seeds": ("independent designs: hypotheses rotate over this many of the incumbent's seeds, "
                              "so it gathers up to this many replicates, each shared by several hypotheses", None),
    "judge.guardrails": ("reject a change the test accepts when one of the domain's guardrail metrics "
                         "(marketing: revenue per visitor) is significantly worse; greedy does not check unless this is set", None),
    "judge.accept_from": ("no accept on per-run values before this many candidate runs (one or two runs of a "
                          "skewed or heavy-tailed metric cannot carry a change)", None),
    "judge.skew_max": ("independent designs: compare the candidate's mean with the incumbent's mean only while "
                       "the incumbents' runs are skewed toward improvement by at most this (inf: always)", None),
    "judge.holdback_precision": ("the improvement `status` reports comes from a holdback (A/B: the incumbent vs "
                                 "the baseline in the same window; independent: both on fresh seeds), enough for "
                                 "a 95% interval of the relative lift of about ± this; its visitors, runs and time "
                                 "are reserved from the budgets", None),
    "judge.holdback_max_runs": ("A/B designs: at most this many holdback windows per incumbent (0: no holdback; "
                                "the improvement is then the sum of the confirmed effects)", None),
    "judge.holdback_max_pairs": ("independent designs: the improvement `status` reports comes from k runs of the "
                                 "incumbent and k of the baseline on fresh seeds at the end, k for ± "
                                 "holdback_precision, at most this (0: none; the improvement then rests on runs "
                                 "later changes were also judged on, which favours the incumbent)", None),
    "proposer.kind": ("who writes hypotheses: knob (offline, no API key), random (random knob changes), llm, or "
                      "a plug-in from the ledgerlab.proposers entry-point group", None),
    "proposer.model": ("llm: the model, as litellm names it", "gpt-4o-mini"),
    "proposer.api_base": ("llm: the provider's URL, e.g. a local server", "http://localhost:11434"),
    "proposer.api_key_env": ("llm: the environment variable that holds the API key (the key itself never goes "
                             "in this file)", "OPENAI_API_KEY"),
    "proposer.temperature": ("llm: sampling temperature", None),
    "proposer.max_tokens": ("llm: the longest answer, in tokens", None),
    "proposer.timeout_s": ("llm: seconds to wait for one answer", None),
    "proposer.retries": ("llm: retries when the provider fails, before the campaign pauses", None),
    "proposer.history_tokens": ("llm: how much of the campaign history (in tokens) the prompt carries", None),
    "proposer.phone_home": ("llm: allow the client library's telemetry (off: nothing leaves but the calls)",
                            None),
    "executor.kind": ("where runs execute: local (a process pool on this machine) or ray (a cluster)", None),
    "executor.workers": ("runs in flight at once (one per GPU on GPU machines)", None),
    "executor.ray_address": ("ray: the cluster's address", "ray://head-node:10001"),
    "executor.run_timeout_s": ("kill a run after this many seconds (unset: the domain's own limit)", 600),
    "executor.isolation": ("how generated code runs: auto (a bubblewrap sandbox where it works, else a plain "
                           "child process with a warning), strict (refuse to run without the sandbox), or "
                           "process (never sandbox)", None),
    "executor.keep_workdirs": ("keep each run's working copy after it ends (for debugging; logs are kept "
                               "either way)", None),
}
ACTIVE = {"budgets.max_hypotheses"}  # written uncommented: the budget most users change first
SECTIONS = ("budgets", "judge", "proposer", "executor")


def config_text(domain: str, options: dict[str, Any]) -> str:
    """The text of a fresh ledgerlab.toml for `domain` (loads with core/config.load_config)."""
    from ledgerlab.core.config import CampaignConfig

    defaults = CampaignConfig()
    lines = [
        "# ledgerlab.toml: one campaign's configuration. Options given on the command line win over this file.",
        "# Commented lines show the defaults; remove the '# ' in front of one to change it.",
        "",
        f"# {HELP['seed'][0]}",
        f"seed = {toml_value(defaults.seed)}",
        "",
        "# the domain plug-in (see `ledgerlab domains`) and its options",
        "[domain]",
        f"name = {toml_value(domain)}",
    ]
    for name, value in options.items():
        if is_scalar(value):
            lines.append(f"# {name} = {toml_value(value)}")
        else:
            lines.append(f"#   {name} (unset by default)")
    for section in SECTIONS:
        model = getattr(defaults, section)
        lines += ["", f"# {type(model).__doc__.strip().splitlines()[0]}", f"[{section}]"]
        for field in type(model).model_fields:
            help_text, example = HELP[f"{section}.{field}"]
            default = getattr(model, field)
            value = default if default is not None else example
            mark = "" if f"{section}.{field}" in ACTIVE else "# "
            note = "" if default is not None else "  (example; unset by default)"
            lines += [*("# " + part for part in textwrap.wrap(help_text, 106)),
                      f"{mark}{field} = {toml_value(value)}{note}"]
    lines += [
        "",
        "# Several agents proposing at once: one [[agents]] block each, with the [proposer] options plus a name.",
        "# [[agents]]",
        '# name = "explorer"',
        '# kind = "llm"',
        '# model = "gpt-4o-mini"',
        "# temperature = 1.0",
        "# [[agents]]",
        '# name = "tuner"',
        '# kind = "knob"',
        "",
    ]
    return "\n".join(lines)


def is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, int, float))


def toml_value(value: Any) -> str:
    """A TOML literal for a scalar or a list of scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")

