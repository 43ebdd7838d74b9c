"""`ledgerlab domains` (what is installed) and `ledgerlab init DOMAIN` (a project folder to start from).

    ledgerlab domains
    ledgerlab init ml_training --dir myproject      # ledgerlab.toml, train.py, program.md

`init` writes every option of ledgerlab.toml (core/config.py) with a comment saying what it does (the field's
description); options that keep their default are commented out, so a later default change reaches the project.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from typing import Annotated, Any

import typer

from ledgerlab.cli.common import Col, DirOption, fit_table, make_console, print_fitted, user_errors
from ledgerlab.core.project import Project
from ledgerlab.errors import LedgerlabError

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py

# ------------------------------------------------------------------------------------------ domains


@app.command()
def domains() -> None:
    """List the installed domains with their metric, then the installed proposers, judges and executors."""
    from ledgerlab.core import registry
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
    for group, what, key in ((registry.PROPOSER_GROUP, "proposers", "[proposer] kind, --proposer"),
                             (registry.JUDGE_GROUP, "judges", "[judge] kind, --judge"),
                             (registry.EXECUTOR_GROUP, "executors", "[executor] kind, --executor")):
        names = ", ".join(sorted(registry.installed(group))) or f"none ({registry.STALE})"
        console.print(f"{what}: {names}  ({key})", markup=False, soft_wrap=True)


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
    """The domain's options and their defaults: its `option_defaults()`, else the constructor's keywords.

    A None default shows the value the domain resolved (`budget_s` from the device profile) when it is a
    plain scalar; otherwise the option is listed as unset.
    """
    from ledgerlab.core.domain_base import as_domain

    if (defaults := as_domain(domain).option_defaults()) is not None:
        return dict(defaults)
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
# Each line's comment is its field's `description` in core/config.py (and core/judge_settings.py for [judge]);
# a field unset by default shows its first `examples` value. tests/test_config_fields.py checks every field
# has both where it needs them.

ACTIVE = {"budgets.max_hypotheses"}  # written uncommented: the budget most users change first
SECTIONS = ("budgets", "judge", "proposer", "executor")


def help_table() -> dict[str, tuple[str, Any]]:
    """`section.field` (and `seed`) → (the comment `init` writes, the example shown when the default is None)."""
    from ledgerlab.core.config import CampaignConfig

    table = {"seed": (CampaignConfig.model_fields["seed"].description or "", None)}
    for section in SECTIONS:
        model = type(getattr(CampaignConfig(), section))  # the section's settings class
        for name, field in model.model_fields.items():
            table[f"{section}.{name}"] = (field.description or "", (field.examples or [None])[0])
    return table


def config_text(domain: str, options: dict[str, Any]) -> str:
    """The text of a fresh ledgerlab.toml for `domain` (loads with core/config.load_config)."""
    from ledgerlab.core.config import CampaignConfig

    defaults = CampaignConfig()
    help_of = help_table()
    lines = [
        "# ledgerlab.toml: one campaign's configuration. Options given on the command line win over this file.",
        "# Commented lines show the defaults; remove the '# ' in front of one to change it.",
        "",
        f"# {help_of['seed'][0]}",
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
        lines += ["", f"# {(type(model).__doc__ or section).strip().splitlines()[0]}", f"[{section}]"]
        for field in type(model).model_fields:
            help_text, example = help_of[f"{section}.{field}"]
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

