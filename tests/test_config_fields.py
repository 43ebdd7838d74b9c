"""Every field of every ledgerlab.toml table, through each way in: the file `ledgerlab init` writes, the command
line (`CampaignConfig.merged`, the flags of `ledgerlab run`) and a resumed campaign (CampaignStarted read back).

A field added to a table without a description, an example where it is unset by default, or a value that
survives each way in fails here. Values are derived from each field's type and default (`other_value`), so a
new field needs no entry unless its type is new.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel
from typer.testing import CliRunner

from ledgerlab.cli.init import SECTIONS, toml_value
from ledgerlab.cli.main import app
from ledgerlab.cli.run import FLAGS
from ledgerlab.core import holdback
from ledgerlab.core.config import CampaignConfig, load_config, validate_config
from ledgerlab.core.judge import JudgeSettings, judge_settings
from ledgerlab.core.protocols import MetricSpec
from ledgerlab.errors import ConfigError
from ledgerlab.storage import events as ev

runner = CliRunner(env={"COLUMNS": "160"})
# Values the derivation below cannot guess (the constraint is between fields, or the type is free text).
CHOSEN: dict[str, Any] = {"judge.looks": (1, 3, 5), "proposer.kind": "llm", "budgets.time_limit": "90m",
                          "judge.kind": "greedy", "executor.kind": "ray"}


def table(section: str) -> type[BaseModel]:
    return CampaignConfig.model_fields[section].annotation  # type: ignore[return-value]


def keys() -> list[str]:
    return ["seed", *(f"{s}.{name}" for s in SECTIONS for name in table(s).model_fields)]


def field_of(key: str) -> Any:
    section, _, name = key.rpartition(".")
    return (table(section) if section else CampaignConfig).model_fields[name]


def other_value(key: str) -> Any:
    """A valid value for `key` that differs from its default: another choice, default + 1, half, the example."""
    if key in CHOSEN:
        return CHOSEN[key]
    field = field_of(key)
    default, kinds = field.default, (field.annotation, *typing.get_args(field.annotation))
    literal = next((k for k in kinds if typing.get_origin(k) is typing.Literal), None)
    if literal is not None:
        return next(c for c in typing.get_args(literal) if c != default)
    if default is None:
        assert field.examples, f"{key} is unset by default and has no example for `ledgerlab init` to show"
        return field.examples[0]
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default / 2
    raise AssertionError(f"no test value for {key} ({field.annotation}): add one to CHOSEN")


def value_of(config: CampaignConfig, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return getattr(getattr(config, section) if section else config, name)


def expected(key: str, value: Any) -> Any:
    """What `value` reads as once validated (durations become seconds, lists tuples)."""
    return value_of(CampaignConfig().merged({key: value}), key)


@pytest.fixture(scope="module")
def init_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    where = tmp_path_factory.mktemp("init")
    result = runner.invoke(app, ["init", "marketing", "--dir", str(where)])
    assert result.exit_code == 0, result.output
    return (where / "ledgerlab.toml").read_text(encoding="utf-8")


def set_in_toml(text: str, key: str, value: Any) -> str:
    """`text` with the line of `key` (commented or not, in its [section]) set to `value`."""
    section, _, name = key.rpartition(".")
    head, body = (text.split(f"\n[{section}]\n", 1) if section else ("", text))
    line = re.compile(rf"^(# )?{re.escape(name)} = .*$", re.MULTILINE)
    assert line.search(body), f"`ledgerlab init` writes no line for {key}"
    body = line.sub(f"{name} = {toml_value(value)}", body, count=1)
    return f"{head}\n[{section}]\n{body}" if section else body


# ------------------------------------------------------------------------------------------ the models


@pytest.mark.parametrize("key", keys())
def test_every_field_has_a_description(key: str) -> None:
    assert (field_of(key).description or "").strip(), f"{key} has no description for `ledgerlab init`"


def test_the_settings_module_imports_no_statistics() -> None:
    # core/config.py validates ledgerlab.toml with the judge's own model before anything heavy loads.
    code = "import sys, ledgerlab.core.config; print('scipy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_skew_max_default_is_the_statistics_default() -> None:
    from ledgerlab.core import stats

    assert JudgeSettings().skew_max == stats.SKEW_MAX


# ---------------------------------------------------------------------------------------- toml, CLI


def test_init_writes_every_key_and_its_defaults_load_back(init_text: str, tmp_path: Path) -> None:
    for key in keys():
        set_in_toml(init_text, key, other_value(key))  # asserts the line exists
    (tmp_path / "ledgerlab.toml").write_text(init_text, encoding="utf-8")
    assert load_config(tmp_path / "ledgerlab.toml") == CampaignConfig(domain="marketing")


@pytest.mark.parametrize("key", keys())
def test_each_field_through_toml_and_the_command_line(key: str, init_text: str, tmp_path: Path) -> None:
    value = other_value(key)
    want = expected(key, value)  # the command line over the defaults (`CampaignConfig.merged`)
    default = value_of(CampaignConfig(), key)
    assert want != default, f"{key}: the test value {value!r} is its default"

    path = tmp_path / "ledgerlab.toml"
    path.write_text(set_in_toml(init_text, key, value), encoding="utf-8")
    loaded = load_config(path)
    assert value_of(loaded, key) == want
    # The command line over the file wins (a None override means "not given": the file's value stays).
    assert value_of(loaded.merged({key: default}), key) == (default if default is not None else want)
    # Fields the command line does not name stay as the file set them.
    assert loaded.merged({"seed": 7}).model_dump(exclude={"seed"}) == loaded.model_dump(exclude={"seed"})


def test_every_flag_names_a_field_and_an_option_of_run() -> None:
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    options = {opt for param in command.params for opt in param.opts}
    for key, flag in FLAGS.items():
        assert key in keys(), f"{flag} maps to {key}, which no table has"
        assert flag in options, f"{key}'s flag {flag} is not an option of `ledgerlab run`"


# ------------------------------------------------------------------------------------------- resume

AB = MetricSpec(name="conversion", direction="maximize", alpha=0.05)


def started(config: CampaignConfig, settings: JudgeSettings) -> ev.CampaignStarted:
    return ev.CampaignStarted(domain="marketing", metric=AB.model_dump(), design="concurrent",
                              config=config.model_dump(mode="json"), judge=settings.model_dump(mode="json"),
                              budgets=config.budgets.model_dump(mode="json"), baseline_files={"a": "b"},
                              baseline_candidate_id="c0")


@pytest.mark.parametrize("key", keys())
def test_each_field_survives_a_resume(key: str) -> None:
    config = CampaignConfig(domain="marketing").merged({key: other_value(key)})
    settings = judge_settings(config, AB, "concurrent")
    stored = ev.decode("CampaignStarted", ev.CampaignStarted.SCHEMA_VERSION,
                       started(config, settings).model_dump_json())
    assert isinstance(stored, ev.CampaignStarted)
    assert holdback.recorded_settings(stored.judge) == settings
    assert validate_config(stored.config, source="campaign c") == config  # cli/session.py's resume path
    if key.startswith("judge."):
        name = key.split(".")[1]
        want = getattr(config.judge, name)
        assert getattr(settings, name) == want, f"{key} is lost between the [judge] table and the judge"


def test_every_field_at_once_through_a_real_ledger(tmp_path: Path) -> None:
    from ledgerlab.core.state import fold
    from ledgerlab.storage.ledger import DuckDBLedger

    chosen = {key: other_value(key) for key in keys() if key != "judge.fdr_lambda"}  # λ < τ holds at τ / 2
    config = CampaignConfig(domain="marketing").merged(chosen)
    settings = judge_settings(config, AB, "concurrent")
    store = DuckDBLedger(tmp_path / "ledger.duckdb")
    try:
        store.append("c", [started(config, settings)], expected_version=0)
        back = fold("c", store.read("c")).started
    finally:
        store.close()
    assert back is not None
    assert holdback.recorded_settings(back.judge) == settings
    assert validate_config(back.config, source="campaign c") == config


def test_the_recorded_judge_keeps_its_shape() -> None:
    # Old ledgers resume from this dict (core/holdback.py): its keys and the defaults the loop derives.
    s = judge_settings(CampaignConfig(), MetricSpec(name="loss", direction="minimize"), "independent")
    recorded = s.model_dump(mode="json")
    assert list(recorded)[:3] == ["kind", "alpha", "alpha_policy"] and len(recorded) == len(JudgeSettings.model_fields)
    assert (recorded["alpha"], recorded["alpha_policy"], recorded["looks"]) == (0.01, "fixed", [1, 2, 3, 4, 6, 8])
    assert (recorded["calibration_runs"], recorded["delta"], recorded["fdr_decay"]) == (None, None, None)
    ab = judge_settings(CampaignConfig(), AB, "concurrent")
    assert (ab.alpha, ab.alpha_policy) == (0.1, "fdr")
    # A config recorded before `looks` had a default (None) still validates, to the default looks.
    assert validate_config({"judge": {"looks": None}}, source="campaign c").judge.looks == (1, 2, 3, 4, 6, 8)


# ------------------------------------------------------------------------------------------- errors


def test_fixed_n_of_one_with_the_fixed_judge_is_one_line_and_exit_2(init_text: str, tmp_path: Path) -> None:
    (tmp_path / "ledgerlab.toml").write_text(set_in_toml(init_text, "judge.fixed_n", 1), encoding="utf-8")
    result = runner.invoke(app, ["run", "--judge", "fixed", "--dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("error: ledgerlab.toml: judge.fixed_n: ") and "2" in result.output
    assert "Traceback" not in result.output and not (tmp_path / ".ledgerlab").exists()


@pytest.mark.parametrize(("key", "value", "words"), [
    ("judge.looks", [3, 2], ("judge:", "looks must be positive and strictly increasing")),
    ("judge.fdr_lambda", 0.8, ("judge:", "fdr_lambda must be below fdr_tau")),
    ("judge.trim", 0.5, ("judge.trim:",)),
    ("judge.alpha", 1.5, ("judge.alpha:",)),
    ("judge.min_expected", -1, ("judge.min_expected:",)),
    ("executor.workers", 0, ("executor.workers:",)),
])
def test_a_bad_value_is_one_line_naming_the_key(key: str, value: Any, words: tuple[str, ...], init_text: str,
                                                tmp_path: Path) -> None:
    path = tmp_path / "ledgerlab.toml"
    path.write_text(set_in_toml(init_text, key, value), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith("ledgerlab.toml: ") and text.endswith("; fix the value"), text
    assert all(w in text for w in words), text
    assert "Value error" not in text


def test_judge_settings_errors_are_config_errors() -> None:
    # A domain whose metric level is out of range fails as a ConfigError, not a pydantic traceback.
    with pytest.raises(ConfigError, match=r"^\[judge\]: alpha: "):
        judge_settings(CampaignConfig(), MetricSpec.model_construct(name="m", direction="maximize", alpha=1.0))


def test_inf_skew_max_round_trips() -> None:
    settings = judge_settings(CampaignConfig(judge={"skew_max": math.inf}))
    assert holdback.recorded_settings(settings.model_dump(mode="json")).skew_max == math.inf


# --------------------------------------------------------------------------------------------- --help


@pytest.mark.parametrize("command", ["run", "resume"])
def test_help_of_a_flag_is_its_fields_description(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    for key, flag in FLAGS.items():
        if f"{flag} " in flat:  # resume takes the budgets and --workers only
            assert " ".join(field_of(key).description.split()) in flat, f"{flag} --help lacks {key}'s description"
            assert f"[ledgerlab.toml: {key}" in flat


def test_the_cli_loads_no_model_until_help_or_a_command_needs_it() -> None:
    code = "import sys, ledgerlab.cli.main; print('pydantic' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
