"""`make demo`'s campaign for several seeds, through the real CLI: wall time, runs, accepts, confirmed effects.

Each seed is `ledgerlab init ml_training` + `ledgerlab run --max-hypotheses 8 --workers 2 --time-limit 7m
--seed N` in a fresh folder (what `make demo` runs, with the seed varied), then `ledgerlab status --format json`. The table says, per seed, how
long the campaign took, how many runs and accepts it made, and each accepted change's effect as confirmed on
fresh runs (not the runs that selected it) and the incumbent's improvement over the baseline. The load
average at the start and end of each seed is recorded too: the figure depends on what else the machine does.

    python bench/demo.py [--seeds 0,1,2,3,4] [--jobs 1] [--workers 2] [--time-limit 7m] [--hypotheses 8]
                         [--out bench/results/demo.json] [--keep-logs DIR] [--merge]
    python bench/demo.py --seeds 3 -- --option budget_tokens=65536     # after --: extra `ledgerlab run` args

--jobs 2 runs two seeds at once: on two cores, each campaign then runs under the other's load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CLI = [sys.executable, "-m", "ledgerlab"]


def _cli(*args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One `ledgerlab` command; its output goes to `log` when given."""
    if log is None:
        return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
    with log.open("a") as out:
        return subprocess.run([*CLI, *args], stdout=out, stderr=subprocess.STDOUT, text=True, check=False)


def one_seed(seed: int, hypotheses: int, extra: list[str], keep: Path | None) -> dict[str, Any]:
    """Init, run and read the status of one demo campaign."""
    with tempfile.TemporaryDirectory(prefix=f"demo-{seed}-") as tmp:
        folder = Path(tmp) / "demo"
        log = (keep or Path(tmp)) / f"demo-seed{seed}.log"
        load_start = os.getloadavg()[0]
        started = time.monotonic()
        init = _cli("init", "ml_training", "--dir", str(folder), log=log)
        run = _cli("run", "--dir", str(folder), "--max-hypotheses", str(hypotheses), "--seed", str(seed), *extra,
                   log=log)
        wall = time.monotonic() - started
        status = _cli("status", "--dir", str(folder), "--format", "json")
        row: dict[str, Any] = {"seed": seed, "wall_s": round(wall, 1), "exit": run.returncode,
                               "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2)}
        if init.returncode or status.returncode:
            return {**row, "error": (status.stderr or status.stdout or log.read_text())[-500:]}
        return {**row, **summary(json.loads(status.stdout))}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the table shows of a `status --format json` report."""
    accepted = report.get("accepted") or []
    confirmed = [(a.get("confirmed") or {}).get("effect") for a in accepted]
    return {
        "hypotheses": report["hypotheses"]["tried"], "accepted": len(accepted),
        "runs": report["runs"]["finished"] + report["runs"]["failed"], "failed_runs": report["runs"]["failed"],
        "changes": [a["rationale"].split(" (")[0] for a in accepted], "confirmed_effects": confirmed,
        "baseline_value": report["baseline"]["value"], "incumbent_value": report["incumbent"]["value"],
        "improvement": report["improvement"].get("effect"), "finish_reason": report.get("finish_reason"),
        "positive_confirmed": any(e is not None and e > 0 for e in confirmed),
    }


def fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'seed':>4} {'wall':>7} {'runs':>4} {'acc':>3} {'confirmed effects':<22} {'baseline':>8} " \
           f"{'incumb.':>8} {'load':>9}  accepted changes"
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['seed']:>4} {r['wall_s']:>6.0f}s  error: {r['error'][-200:]}")
            continue
        effects = ", ".join(fmt(e, "+.3f") for e in r["confirmed_effects"]) or "-"
        lines.append(f"{r['seed']:>4} {r['wall_s'] / 60:>5.1f}m {r['runs']:>4} {r['accepted']:>3} {effects:<22} "
                     f"{fmt(r['baseline_value']):>8} {fmt(r['incumbent_value']):>8} "
                     f"{r['load_start']:>4.1f}-{r['load_end']:<4.1f}  {'; '.join(r['changes'])}")
    ok = [r for r in rows if "error" not in r]
    if ok:
        walls = sorted(r["wall_s"] for r in ok)
        lines.append(f"seeds with a positive confirmed effect: {sum(r['positive_confirmed'] for r in ok)} of "
                     f"{len(ok)}; wall {walls[0] / 60:.1f}-{walls[-1] / 60:.1f} min")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    extra = args_in[args_in.index("--") + 1:] if "--" in args_in else []
    own = args_in[:args_in.index("--")] if "--" in args_in else args_in
    parser = argparse.ArgumentParser(description="make demo's campaign over several seeds")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated campaign seeds")
    parser.add_argument("--jobs", type=int, default=1, help="seeds at once")
    parser.add_argument("--hypotheses", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="runs at once in each campaign (make demo: 2)")
    parser.add_argument("--time-limit", default="7m", help="each campaign's ceiling (make demo: 7m; 0: none)")
    parser.add_argument("--out", type=Path, default=RESULTS / "demo.json")
    parser.add_argument("--keep-logs", type=Path, default=None, help="a folder for each seed's console output")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of other seeds already in --out (measure seeds in several sittings)")
    args = parser.parse_args(own)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    extra = ["--workers", str(args.workers), "--time-limit", args.time_limit, *extra]
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda s: one_seed(s, args.hypotheses, extra, args.keep_logs), seeds))
    if args.merge and args.out.exists():
        earlier = [r for r in json.loads(args.out.read_text())["rows"] if r["seed"] not in seeds]
        rows = sorted(earlier + rows, key=lambda r: r["seed"])
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"jobs": args.jobs, "hypotheses": args.hypotheses, "run_args": extra,
                                    "cores": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
