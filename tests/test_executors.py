"""The local executor: parallel slots, per-slot resources, crashed domains, exactly one result per run."""

from __future__ import annotations

import threading

import pytest

from ledgerlab.core.config import ExecutorConfig
from ledgerlab.core.executors import LocalExecutor, make_executor
from ledgerlab.core.executors.local import detect_gpus, parse_nvidia_smi, threads_for
from ledgerlab.errors import ExecutorError
from ledgerlab.testing.sleep_domain import SleepDomain, collect, request


def test_two_workers_run_two_at_once(tmp_path):
    # Each run waits for a second one to start (see SleepDomain's `meet`): overlap by construction, not a race.
    domain = SleepDomain(seconds=0.1, marker_dir=str(tmp_path / "markers"), meet=2)
    executor = LocalExecutor(domain, workers=2, cores=4, gpus=[])
    try:
        for i in range(4):
            executor.submit("sleep", request(f"r{i}", tmp_path, seed=i))
        assert executor.in_flight() == 4
        results = collect(executor, 4)
    finally:
        executor.shutdown()
    assert sorted(results) == ["r0", "r1", "r2", "r3"]
    assert all(results[f"r{i}"].value == i for i in range(4))  # each result under its own run id
    assert executor.in_flight() == 0
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in results.values())
    # At most two at once, and the runs did overlap (their own clocks say so, whatever the machine's load).
    for t, _ in spans:
        assert sum(1 for s, e in spans if s <= t < e) <= 2
    assert spans[0][0] < spans[1][0] < spans[0][1]


def test_threads_divided_and_gpus_per_slot(tmp_path):
    executor = LocalExecutor(SleepDomain(seconds=0.2), workers=2, cores=8, gpus=["0", "1"])
    try:
        for i in range(4):
            executor.submit("sleep", request(f"r{i}", tmp_path))
        executor.submit("sleep", request("mine", tmp_path, threads=7, device="cpu"))
        results = collect(executor, 5)
    finally:
        executor.shutdown()
    assert {results[f"r{i}"].metrics["threads"] for i in range(4)} == {4}
    devices = {results[f"r{i}"].metrics["device"] for i in range(4)}
    assert devices <= {"cuda:0", "cuda:1"} and len(devices) == 2
    # Two runs that overlap never share a GPU.
    spans = [(r.metrics["start"], r.metrics["end"], r.metrics["device"]) for r in results.values()
             if r.metrics["device"] != "cpu"]
    for s1, e1, d1 in spans:
        for s2, e2, d2 in spans:
            if (s1, e1) != (s2, e2) and s1 < e2 and s2 < e1:
                assert d1 != d2
    assert results["mine"].metrics["threads"] == 7 and results["mine"].metrics["device"] == "cpu"


def test_resource_helpers(monkeypatch):
    assert threads_for(2, 4) == 1 and threads_for(16, 4) == 4 and threads_for(3, 1) == 3
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
    listing = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1f2e)\n"
               "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-3a4b)\n")
    assert parse_nvidia_smi(listing) == ["0", "1"]
    mig = ("GPU 0: NVIDIA A100 (UUID: GPU-aa)\n"
           "  MIG 3g.20gb     Device  0: (UUID: MIG-1111-2222)\n"
           "  MIG 3g.20gb     Device  1: (UUID: MIG-3333-4444)\n")
    assert parse_nvidia_smi(mig) == ["MIG-1111-2222", "MIG-3333-4444"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    executor = LocalExecutor(SleepDomain(), workers=3)
    try:
        assert executor.gpus == () and executor.device_for(0) is None
    finally:
        executor.shutdown()


def test_a_raising_domain_is_a_crashed_run(tmp_path):
    executor = LocalExecutor(SleepDomain(seconds=0.05, fail_ids=["bad"]), workers=2, gpus=[])
    try:
        executor.submit("sleep", request("bad", tmp_path))
        executor.submit("sleep", request("good", tmp_path, seed=5))
        results = collect(executor, 2)
    finally:
        executor.shutdown()
    assert results["bad"].status == "crashed" and "RuntimeError: boom in bad" in results["bad"].error
    assert results["good"].status == "finished" and results["good"].value == 5


def test_wait_semantics_and_duplicates(tmp_path):
    executor = LocalExecutor(SleepDomain(seconds=0.3), workers=1, gpus=[])
    try:
        assert executor.wait(timeout=0.01) == [] and executor.wait() == []  # nothing in flight
        executor.submit("sleep", request("r0", tmp_path))
        with pytest.raises(ExecutorError, match="already in flight"):
            executor.submit("sleep", request("r0", tmp_path))
        assert executor.wait(timeout=0.01) == []  # timeout
        got = executor.wait(timeout=5)
        assert [run_id for run_id, _ in got] == ["r0"]
        assert executor.wait(timeout=0.01) == []  # returned once only
        executor.submit("sleep", request("r0", tmp_path))  # a re-run after its result is fine
        assert [run_id for run_id, _ in executor.wait(timeout=5)] == ["r0"]
    finally:
        executor.shutdown()


class _BlockingDomain(SleepDomain):
    """Runs that last until the test lets them end: whether shutdown waited for one needs no clock."""

    def __init__(self) -> None:
        super().__init__(seconds=0.0)
        self.started, self.release, self.finished = threading.Event(), threading.Event(), []

    def run(self, request):
        self.started.set()
        self.release.wait(timeout=600)
        self.finished.append(request.run_id)
        return super().run(request)


def test_shutdown_stops(tmp_path):
    domain = _BlockingDomain()
    executor = LocalExecutor(domain, workers=1, gpus=[])
    for i in range(5):
        executor.submit("sleep", request(f"r{i}", tmp_path))
    assert domain.started.wait(timeout=180)
    try:
        executor.shutdown()
        # It returned while the run in flight was still running and before the queue was started: it waited
        # for neither (an event, not a bound on the time it took).
        assert domain.finished == []
    finally:
        domain.release.set()
    assert domain.cancelled and executor.in_flight() == 0 and executor.wait(timeout=0.01) == []
    with pytest.raises(ExecutorError, match="shut down"):
        executor.submit("sleep", request("late", tmp_path))


def test_make_executor(monkeypatch):
    executor = make_executor(ExecutorConfig(kind="local", workers=3), SleepDomain(), "sleep", {}, gpus=[])
    try:
        assert isinstance(executor, LocalExecutor) and executor.slots == 3 and executor.name == "local"
    finally:
        executor.shutdown()
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ExecutorError, match=r"pip install 'ledgerlab\[ray\]'"):
        make_executor(ExecutorConfig(kind="ray"), SleepDomain(), "sleep", {})
