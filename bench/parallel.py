"""Benchmark parallel runs: throughput with 1, 2 and 4 workers, locally and on a local Ray instance.

Run: python -m ledgerlab.bench.parallel [--seconds 1.0] [--runs 8] [--workers 1 2 4] [--no-ray]
Prints a table and writes bench/results/parallel.json.

Each run of the test domain (ledgerlab/testing/sleep_domain.py) sleeps a fixed time, so the numbers measure the
executor (slots, scheduling, result collection), not CPU contention. The loop keeps at most `slots` runs in
flight, as the campaign loop does. Every configuration starts with one untimed wave (`workers` runs) so Ray's
worker processes and the domain are loaded before timing. Throughput is runs per minute; `speedup` is the
ratio to 1 worker of the same executor in the same invocation. Target (issue 7): >= 1.8x at 2 workers.

The local Ray instance gets a token in RAY_AUTH_TOKEN and a temporary session folder (removed afterwards), so
nothing is left under ~/.ray or /tmp/ray; it is given as many logical CPUs as the largest worker count, since
a sleeping run needs no core.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledgerlab.core.executors import LocalExecutor
from ledgerlab.core.protocols import RunRequest
from ledgerlab.kinds import VerdictDecision
from ledgerlab.testing.sleep_domain import REF as SLEEP_REF
from ledgerlab.testing.sleep_domain import SleepDomain

RESULTS = Path(__file__).resolve().parent / "results" / "parallel.json"
DOMAIN_REF = SLEEP_REF  # a Ray worker loads the domain by file


# ------------------------------------------------------------------------------------------- measuring


def drive(executor: Any, n_runs: int, workdir: Path, prefix: str) -> dict[str, Any]:
    """Run `n_runs` runs, at most `executor.slots` in flight; time them, check each result came once."""
    results: dict[str, Any] = {}
    next_run = 0
    started = time.monotonic()
    while len(results) < n_runs:
        while next_run < n_runs and executor.in_flight() < executor.slots:
            run_id = f"{prefix}-{next_run}"
            executor.submit("sleep", RunRequest(run_id=run_id, candidate_id="c0", files={"x.txt": "0"},
                                                seed=next_run, workdir=workdir / run_id))
            next_run += 1
        for run_id, result in executor.wait(timeout=60):
            if run_id in results:
                raise RuntimeError(f"duplicate result for {run_id}")
            results[run_id] = result
    elapsed = time.monotonic() - started
    bad = [r for r in results.values() if r.status != "finished"]
    if bad:
        raise RuntimeError(f"{len(bad)} runs did not finish: {bad[0].error}")
    return {"runs": n_runs, "elapsed_s": round(elapsed, 3), "runs_per_min": round(60 * n_runs / elapsed, 2)}


def measure(make: Callable[[int], Any], workers_list: list[int], n_runs: int, workdir: Path,
            kind: str) -> list[dict[str, Any]]:
    rows = []
    for workers in workers_list:
        executor = make(workers)
        try:
            drive(executor, workers, workdir, f"{kind}-w{workers}-warm")  # untimed warm-up wave
            timed = drive(executor, n_runs, workdir, f"{kind}-w{workers}")
            row = {"executor": kind, "workers": workers, **timed}
        finally:
            executor.shutdown()
        rows.append(row)
    base = next((r["runs_per_min"] for r in rows if r["workers"] == 1), None)
    for row in rows:
        row["speedup"] = round(row["runs_per_min"] / base, 3) if base else None
    return rows


def bench_local(seconds: float, workers_list: list[int], n_runs: int, workdir: Path) -> list[dict[str, Any]]:
    return measure(lambda w: LocalExecutor(SleepDomain(seconds=seconds), w, gpus=[]), workers_list, n_runs,
                   workdir, "local")


def bench_ray(seconds: float, workers_list: list[int], n_runs: int, workdir: Path) -> list[dict[str, Any]]:
    import ray

    from ledgerlab.core.executors.ray import RayExecutor

    old_token = os.environ.get("RAY_AUTH_TOKEN")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))  # no token file under ~/.ray
    temp_dir = tempfile.mkdtemp(prefix="llray", dir="/tmp")  # short: Ray's socket paths are limited
    try:
        ray.init(num_cpus=max(workers_list), include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
        return measure(lambda w: RayExecutor("sleep", {"seconds": seconds}, w, domain_ref=DOMAIN_REF),
                       workers_list, n_runs, workdir, "ray")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        if old_token is None:
            os.environ.pop("RAY_AUTH_TOKEN", None)


# ------------------------------------------------------------------------- the decisions hook (lead)


class _Script:
    """Proposes a fixed list of knob settings in order (the same stream whatever the worker count)."""

    name = "script"

    def __init__(self, steps: list[dict[str, float]]) -> None:
        self.steps = list(steps)

    def propose(self, context: Any, sink: Any = None) -> Any:
        from ledgerlab.core.knobs import write_knob
        from ledgerlab.core.protocols import Proposal

        if not self.steps:
            return None
        step, files = self.steps.pop(0), dict(context.incumbent_files)
        for name, value in step.items():
            files = write_knob(files, next(k for k in context.knobs if k.name == name), value)
        return Proposal(rationale=f"set {step}", files=files, changes=step)


def decisions_unchanged(workers_list: list[int]) -> dict[str, Any]:
    """One scripted campaign through the loop per worker count: does parallelism change any verdict?

    Runs are deterministic per (seed, candidate), so a hypothesis judged in two campaigns sees the same
    replicates. With more workers some hypotheses are tested against an incumbent that changes meanwhile and
    are rejected as stale (never judged against a stale comparison); every hypothesis that got a
    statistical verdict at each worker count must get the same one.
    """
    from ledgerlab.bench.overhead import FreeDomain  # the bench's zero-cost deterministic domain
    from ledgerlab.core.campaign import Agent, Campaign
    from ledgerlab.core.config import CampaignConfig
    from ledgerlab.storage.memory import InMemoryLedger

    steps = [{"K0": 3.0}, {"K1": 6.0}, {"K2": 5.5}, {"K3": 3.0}, {"K4": 7.0}, {"K5": 4.9}, {"K1": 4.0},
             {"K2": 3.0}, {"K4": 5.1}, {"K5": 3.5}, {"K3": 8.0}, {"K0": 2.0}]
    verdicts: dict[int, dict[str, VerdictDecision]] = {}
    stale: dict[int, int] = {}
    for workers in workers_list:
        domain = FreeDomain(sleep_s=0.05)
        config = CampaignConfig(domain="free", budgets={"max_hypotheses": len(steps)},
                                executor={"workers": workers})
        with tempfile.TemporaryDirectory() as tmp:
            state = Campaign(InMemoryLedger(), domain, config, agents=[Agent("a", _Script(steps))],
                             executor=LocalExecutor(domain, workers), runs_dir=Path(tmp)).run()
        judged = {h.rationale: h.verdict.decision for h in state.hypotheses.values()
                  if h.verdict is not None and h.verdict.test not in ("stale", "run-failed")}
        verdicts[workers] = judged
        stale[workers] = sum(1 for h in state.hypotheses.values()
                             if "stale" in h.reason or (h.verdict is not None and h.verdict.test == "stale"))
    base = verdicts[workers_list[0]]
    compared = {w: [r for r in v if r in base] for w, v in verdicts.items()}
    differing = {w: [r for r in compared[w] if verdicts[w][r] != base[r]] for w in verdicts}
    return {"workers": workers_list, "identical": not any(differing.values()),
            "compared": {w: len(c) for w, c in compared.items()}, "differing": differing, "stale": stale,
            "accepted": {w: sorted(r for r, d in v.items() if d == "accept") for w, v in verdicts.items()}}


# ------------------------------------------------------------------------------------------- output


def print_table(rows: list[dict[str, Any]], seconds: float) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        for row in rows:
            print(row)
        return
    table = Table(title=f"Parallel runs ({seconds:g} s each): throughput and speedup over 1 worker")
    for col in ("executor", "workers", "runs", "elapsed s", "runs/min", "speedup"):
        table.add_column(col, justify="left" if col == "executor" else "right")
    for r in rows:
        table.add_row(r["executor"], str(r["workers"]), str(r["runs"]), f"{r['elapsed_s']:.2f}",
                      f"{r['runs_per_min']:.1f}", f"{r['speedup']:.2f}x" if r["speedup"] else "-")
    Console().print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="how long each run sleeps")
    parser.add_argument("--runs", type=int, default=8, help="timed runs per configuration")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    workers_list = sorted(set(args.workers) | {1})
    rows: list[dict[str, Any]] = []
    ray_note = None
    with tempfile.TemporaryDirectory(prefix="ledgerlab-bench-") as tmp:
        rows += bench_local(args.seconds, workers_list, args.runs, Path(tmp))
        if args.no_ray:
            ray_note = "skipped (--no-ray)"
        elif importlib.util.find_spec("ray") is None:
            ray_note = "skipped: pip install 'ledgerlab[ray]'"
        else:
            rows += bench_ray(args.seconds, workers_list, args.runs, Path(tmp))
    print_table(rows, args.seconds)
    if ray_note:
        print(f"ray: {ray_note}")
    report = {
        "benchmark": "parallel",
        "seconds_per_run": args.seconds,
        "runs_per_config": args.runs,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform()},
        "rows": rows,
        "ray": ray_note or "measured",
        "decisions_unchanged": (same := decisions_unchanged(workers_list)),
        "target": "speedup >= 1.8 at 2 workers",
    }
    print(f"judge decisions unchanged by parallelism: {same['identical']} (hypotheses judged at each worker "
          f"count: {same['compared']}; rejected as stale: {same['stale']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
