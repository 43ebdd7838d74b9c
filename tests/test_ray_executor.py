"""The Ray executor on a real local Ray instance (2 CPUs); skipped when the `ray` extra is not installed.

Ray 2.60 writes an auth token under ~/.ray and its session files under /tmp/ray; these tests give it a token
through RAY_AUTH_TOKEN and a temporary folder instead, and remove both afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest

ray = pytest.importorskip("ray")

from host_processes import until  # noqa: E402

from ledgerlab.core.config import ExecutorConfig  # noqa: E402
from ledgerlab.core.executors import make_executor  # noqa: E402
from ledgerlab.core.executors.ray import RayExecutor  # noqa: E402
from ledgerlab.testing.sleep_domain import REF, collect, request  # noqa: E402

# One token for the module: Ray caches the token it first reads for the life of the process.
TOKEN = secrets.token_hex(16)


class _IsolatedRay:
    """A token in the environment (nothing written to ~/.ray) and a short temporary session folder."""

    def __enter__(self) -> dict:
        self._old = os.environ.get("RAY_AUTH_TOKEN")
        os.environ["RAY_AUTH_TOKEN"] = TOKEN
        self.temp_dir = tempfile.mkdtemp(prefix="llray", dir="/tmp")  # short: Ray's socket paths are limited
        return {"_temp_dir": self.temp_dir}

    def __exit__(self, *exc: object) -> None:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if self._old is None:
            os.environ.pop("RAY_AUTH_TOKEN", None)
        else:
            os.environ["RAY_AUTH_TOKEN"] = self._old


# slow: a second Ray instance. Fast: the module's local_ray fixture starts one the same way.
@pytest.mark.slow
def test_starts_and_stops_its_own_instance(tmp_path):
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    with _IsolatedRay() as init_options:
        executor = make_executor(ExecutorConfig(kind="ray", workers=2), None, "sleep", {"seconds": 0.1},
                                 domain_ref=REF, local_cpus=2, init_options=init_options)
        assert isinstance(executor, RayExecutor) and ray.is_initialized()
        executor.submit("sleep", request("r0", tmp_path, seed=3))
        results = collect(executor, 1)
        executor.shutdown()
        assert not ray.is_initialized()  # it started Ray, so it stops it
    assert results["r0"].status == "finished" and results["r0"].value == 3, results["r0"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    with _IsolatedRay() as init_options:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, **init_options)
        yield


def test_runs_in_parallel_with_their_resources(local_ray, tmp_path):
    # Each run waits for a second one to start: if two never ran at once, the first would wait 180 s first.
    options = {"seconds": 0.1, "marker_dir": str(tmp_path / "markers"), "meet": 2}
    executor = RayExecutor("sleep", options, workers=2, domain_ref=REF)
    try:
        assert executor.num_gpus == 0  # no GPU in this instance
        for i in range(4):
            executor.submit("sleep", request(f"r{i}", tmp_path, seed=i))
        assert executor.in_flight() == 4
        results = collect(executor, 4)
    finally:
        executor.shutdown()
    assert ray.is_initialized()  # not started by the executor, so left running
    assert sorted(results) == ["r0", "r1", "r2", "r3"]
    assert all(results[f"r{i}"].status == "finished" and results[f"r{i}"].value == i for i in range(4))
    assert {r.metrics["threads"] for r in results.values()} == {1}  # 1 CPU reserved per run
    assert {r.metrics["device"] for r in results.values()} == {None}
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in results.values())
    assert spans[0][0] < spans[1][0] < spans[0][1]  # two ran at once
    assert executor.wait(timeout=0.01) == [] and executor.in_flight() == 0


def test_a_killed_worker_is_rerun_once(local_ray, tmp_path):
    markers = tmp_path / "markers"
    options = {"seconds": 0.1, "die_once_ids": ["die"], "marker_dir": str(markers), "fail_ids": ["bad"]}
    executor = RayExecutor("sleep", options, workers=2, domain_ref=REF)
    try:
        executor.submit("sleep", request("die", tmp_path, seed=7))
        executor.submit("sleep", request("bad", tmp_path))
        results = collect(executor, 2)
        assert executor.wait(timeout=0.5) == []  # nothing more comes for either run
    finally:
        executor.shutdown()
    assert results["die"].status == "finished" and results["die"].value == 7
    assert (markers / "die.died").exists()
    assert len((markers / "die.attempts").read_text().split()) == 2  # the lost attempt and its one re-run
    assert results["bad"].status == "crashed" and "boom in bad" in results["bad"].error


def test_retries_exhausted_is_a_crashed_run(local_ray, tmp_path):
    markers = tmp_path / "markers"
    options = {"seconds": 0.1, "die_once_ids": ["die"], "marker_dir": str(markers)}
    executor = RayExecutor("sleep", options, workers=1, domain_ref=REF, max_retries=0)
    try:
        executor.submit("sleep", request("die", tmp_path))
        results = collect(executor, 1)
    finally:
        executor.shutdown()
    assert results["die"].status == "crashed" and "worker was lost" in results["die"].error


def test_shutdown_cancels_runs_in_flight(local_ray, tmp_path):
    markers = tmp_path / "markers"
    executor = RayExecutor("sleep", {"seconds": 600, "marker_dir": str(markers)}, workers=2, domain_ref=REF)
    executor.submit("sleep", request("long", tmp_path))
    until("the run to start", (markers / "long.attempts").exists)  # in flight, not still queued
    started = time.monotonic()
    executor.shutdown()
    assert time.monotonic() - started < 300  # did not wait out the 10-minute run (a bound, not a rate)
    assert executor.in_flight() == 0 and executor.wait(timeout=0.01) == []


def test_a_campaign_runs_on_ray_with_the_same_loop(local_ray, tmp_path):
    """The loop with `--executor ray`: runs are Ray tasks, results come back to the single writer."""
    from ledgerlab.core.campaign import Agent, Campaign
    from ledgerlab.core.config import CampaignConfig
    from ledgerlab.core.registry import load_domain, load_proposer
    from ledgerlab.storage.memory import InMemoryLedger

    config = CampaignConfig(domain="marketing", budgets={"max_hypotheses": 3},
                            executor={"kind": "ray", "workers": 2})
    domain = load_domain("marketing", {})
    executor = make_executor(config.executor, domain, "marketing", {})
    try:
        state = Campaign(InMemoryLedger(), domain, config, agents=[Agent("a", load_proposer(config.proposer))],
                         executor=executor, runs_dir=tmp_path / "runs").run()
    finally:
        domain.close()
    assert state.status == "finished" and len(state.hypotheses) == 3
    assert state.n_runs >= 6 and all(r.status == "finished" for r in state.runs.values())
