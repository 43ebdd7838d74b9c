"""
Measure the seed-to-seed noise of val_bpb at the default budget, and how much pairing (same seed) helps.

    python -m ledgerlab.domains.ml_training.measure_noise --seeds 5 [--budget-s 30 | --budget-tokens N] [--out F]

Runs, one at a time (parallel runs would share the cores), the baseline and a variant with twice its embedding
learning rate (the demo's first likely gain) for each seed, through MLTrainingDomain.run, then prints
per-config mean ± SD, the correlation of the two configs across seeds (what matched seeds buy the paired
test), and the run times. Without --budget-s or --budget-tokens the device profile's budget applies (CPU:
49 152 tokens on one thread).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ledgerlab.core.knobs import read_knob, write_knob
from ledgerlab.core.protocols import RunRequest
from ledgerlab.domains.ml_training.domain import MLTrainingDomain
from ledgerlab.domains.ml_training.knobs import KNOBS

# Per run: steps and tokens as the run reports them (informational), then what the runner measured itself.
COLUMNS = ("reported_steps", "reported_tokens", "reported_training_seconds", "wall_seconds", "eval_seconds",
            "peak_memory_mb", "isolation")


def variant(files: dict[str, str], **values: object) -> dict[str, str]:
    knobs = {k.name: k for k in KNOBS}
    for name, value in values.items():
        files = write_knob(files, knobs[name], value)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="val_bpb noise across seeds")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--budget-tokens", type=int, default=None, help="a token budget instead of seconds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    domain = MLTrainingDomain(budget_s=args.budget_s, budget_tokens=args.budget_tokens, threads=args.threads)
    base = domain.baseline()
    embed_lr = float(read_knob(base, next(k for k in KNOBS if k.name == "EMBED_LR")))
    configs = {"baseline": base, "embed_lr_x2": variant(base, EMBED_LR=2 * embed_lr)}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name, files in configs.items():
                request = RunRequest(run_id=f"{name}-{seed}", candidate_id=name, files=files, seed=seed,
                                     workdir=Path(tmp) / f"{name}-{seed}")
                t0 = time.monotonic()
                result = domain.run(request)
                wall = time.monotonic() - t0
                row = {"config": name, "seed": seed, "status": result.status, "val_bpb": result.value,
                       "wall_s": round(wall, 2), **{k: result.metrics.get(k) for k in COLUMNS}}
                print(json.dumps(row), flush=True)
                rows.append(row)

    report: dict[str, Any] = {"budget_s": domain.budget_s, "budget_tokens": domain.budget_tokens, "rows": rows}
    values = {name: [r["val_bpb"] for r in rows if r["config"] == name and r["val_bpb"] is not None]
              for name in configs}
    for name, vals in values.items():
        if len(vals) > 1:
            report[name] = {"mean": statistics.mean(vals), "sd": statistics.stdev(vals), "n": len(vals)}
    a, b = values["baseline"], values["embed_lr_x2"]
    if len(a) == len(b) > 2:
        diffs = [x - y for x, y in zip(a, b)]
        report["pairing"] = {"correlation": statistics.correlation(a, b), "diff_mean": statistics.mean(diffs),
                             "diff_sd": statistics.stdev(diffs)}
    report["wall_s_mean"] = statistics.mean(r["wall_s"] for r in rows)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
