"""Shared pytest fixtures: a private signing key folder, a ledger path in a fresh folder, a store of each kind.

Under pytest-xdist (`make test` runs `-n 3 --dist loadgroup`) most tests are spread one by one over the workers.
A module with a module-scoped fixture keeps to one worker: such a fixture builds something once per module (a
campaign, a server, the tiny model, a browser), which a split would build once per worker. Everything that
starts Ray shares one group, so no two Ray instances run at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

RAY = {"test_ray_executor", "test_attacks.py::test_ray_workers_run_the_same_sandbox"}


def _builds_once_per_module(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        if module in RAY or f"{item.path.name}::{getattr(item, 'originalname', item.name)}" in RAY:
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif _builds_once_per_module(item):
            item.add_marker(pytest.mark.xdist_group(module))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail loudly where xdist drops the groups (it did with pytest 9.2: constraints.txt pins pytest below it)."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    grouped = [item for item in session.items if item.get_closest_marker("xdist_group")]
    if grouped and not any("@" in item.nodeid for item in grouped):
        raise pytest.UsageError(f"pytest-xdist ignored the xdist_group marks under pytest {pytest.__version__} "
                                "(pytest-dev/pytest-xdist#1386): install with `-c constraints.txt`")


@pytest.fixture(scope="session", autouse=True)
def session_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Module- and session-scoped fixtures start before `key_dir`: they sign with a temporary key too."""
    folder = tmp_path_factory.mktemp("session-keys")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGERLAB_KEY_DIR", str(folder))
        yield folder


@pytest.fixture(autouse=True)
def key_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every process it starts) signs with a key of its own, never the real ~/.config/ledgerlab."""
    folder = tmp_path_factory.mktemp("keys")
    monkeypatch.setenv("LEDGERLAB_KEY_DIR", str(folder))
    return folder


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    """Where a project's ledger lives (`Project.at(tmp_path).ledger_path`); the folder does not exist yet."""
    return tmp_path / ".ledgerlab" / "ledger.duckdb"


@pytest.fixture(params=["memory", "duckdb"])
def store(request: pytest.FixtureRequest, ledger_path: Path) -> Iterator[object]:
    """An empty EventStore of each implementation."""
    from ledgerlab.storage.ledger import DuckDBLedger
    from ledgerlab.storage.memory import InMemoryLedger

    made = InMemoryLedger() if request.param == "memory" else DuckDBLedger(ledger_path)
    yield made
    made.close()
