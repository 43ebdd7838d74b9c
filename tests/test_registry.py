"""Judges and executors register like domains and proposers: by entry point, built-ins included.

A plug-in here is a real installed distribution: a `*.dist-info` folder with an entry_points.txt and a module,
put on sys.path, exactly what `pip install` leaves behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledgerlab.core import registry
from ledgerlab.core.config import CampaignConfig, ExecutorConfig
from ledgerlab.core.executors import LocalExecutor, make_executor
from ledgerlab.core.judge import GreedyJudge, JudgeSettings, StatsJudge, judge_settings, make_judge
from ledgerlab.errors import ConfigError
from ledgerlab.testing import ToyDomain

PLUGIN = '''
from ledgerlab.core.executors.local import LocalExecutor
from ledgerlab.core.judge import GreedyJudge


class CoinJudge(GreedyJudge):
    name = "coin"
    defaults = {"confirm_runs": 2}

    @classmethod
    def most_runs(cls, settings):
        return 3


def serial(config, domain, domain_name, domain_options, **extra):
    return LocalExecutor(domain, 1, **extra)
'''
ENTRY_POINTS = """
[ledgerlab.judges]
coin = ll_registry_plugin:CoinJudge

[ledgerlab.executors]
serial = ll_registry_plugin:serial
"""


def _forget() -> None:
    registry.judge_class.cache_clear()
    registry._names.cache_clear()


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "ll_registry_plugin.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "ll_registry_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ll-registry-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    _forget()
    yield
    _forget()  # the plug-in's names leave with its folder


def test_the_built_ins_are_entry_points() -> None:
    assert {"stats", "fixed", "greedy"} <= set(registry.installed(registry.JUDGE_GROUP))
    assert {"local", "ray"} <= set(registry.installed(registry.EXECUTOR_GROUP))
    assert isinstance(make_judge(JudgeSettings()), StatsJudge)
    fixed = make_judge(JudgeSettings(kind="fixed", fixed_n=4))
    assert fixed.name == "fixed" and fixed.first_n() == 4
    assert isinstance(make_judge(JudgeSettings(kind="greedy")), GreedyJudge)


@pytest.mark.parametrize(("make", "words"), [
    (lambda: JudgeSettings(kind="oracle"), "unknown judge 'oracle' (installed: 'fixed', 'greedy', 'stats')"),
    (lambda: ExecutorConfig(kind="slurm"), "unknown executor 'slurm' (installed: 'local', 'ray')"),
    (lambda: CampaignConfig.model_validate({"judge": {"kind": "oracle"}}), "unknown judge 'oracle'"),
])
def test_an_unknown_name_lists_the_known_ones(make: object, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        make()  # type: ignore[operator]


def test_a_recorded_name_no_longer_installed_is_a_one_line_config_error() -> None:
    settings = JudgeSettings.model_construct(kind="oracle")  # as read back from an old ledger, unvalidated
    with pytest.raises(ConfigError, match=r"^unknown judge 'oracle' \(installed: fixed, greedy, stats\); set") as err:
        make_judge(settings)
    assert "\n" not in str(err.value)


def test_a_plugin_judge_and_executor_are_found_by_name(plugin: None, tmp_path: Path) -> None:
    settings = judge_settings(CampaignConfig(judge={"kind": "coin"}))
    judge = make_judge(settings)
    assert judge.name == "coin" and settings.confirm_runs == 2 and settings.seed_window == 16
    assert JudgeSettings(kind="coin", incumbent_seeds=1).seed_window == 3  # the plug-in's most_runs
    executor = make_executor(ExecutorConfig(kind="serial"), ToyDomain(), "toy", {}, gpus=[])
    try:
        assert isinstance(executor, LocalExecutor) and executor.slots == 1
    finally:
        executor.shutdown()


def test_a_broken_plugin_is_one_line_naming_its_package(tmp_path: Path) -> None:
    # Installed, but its module is gone (an uninstall half done, a renamed module): `ledgerlab run` says which
    # package to fix in one line, exit 2, and leaves no `.ledgerlab` behind in the folder it was given.
    info = tmp_path / "site" / "ll_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ll-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ledgerlab.domains]\nbroken = ll_no_such_module:Domain\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "ledgerlab", "run", "broken", "--dir", str(tmp_path / "p")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == ("error: domain 'broken' (ll_no_such_module:Domain of package 'll-broken') cannot "
                                   "be loaded: ModuleNotFoundError: No module named 'll_no_such_module'; fix or "
                                   "reinstall that package"), done.stderr
    assert not (tmp_path / "p" / ".ledgerlab").exists()
