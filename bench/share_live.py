"""bench/swarm.py's re-verification arm through real `ledgerlab run --share` processes: live sharing, not rounds.

On each market (market_seed = index), K `ledgerlab run marketing` processes run at once, each in a folder
of its own, with bench/swarm.py's members' settings: campaign seeds 100·index + k, 1,000,000 visitors each,
25,000 per run, the marketing domain's default judge, the knob proposer. Arm "share" gives them one
`--share` folder: each imports the others' accepts as soon as they are published, and its own judge
re-tests them. Arm "none" runs the same campaigns without it. bench/swarm.py's `score` then scores every
campaign on the market's truth, and its `summarize` and `paired` give the same figures as its tables.

What a campaign imports depends on how fast the other processes run, so two runs of this bench differ where
bench/swarm.py's rounds do not.

    python bench/share_live.py --markets 10      # 10 markets x 4 campaigns x 2 arms (~10 min on 2 loaded cores)

Writes bench/results/share_live.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ledgerlab.bench import _campaigns as cb
from ledgerlab.bench import swarm
from ledgerlab.core.config import CampaignConfig
from ledgerlab.core.state import fold
from ledgerlab.domains.marketing.market import Market
from ledgerlab.storage.ledger import DuckDBLedger

ARMS = ("share", "none")


def run_market(index: int, arm: str, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """The K campaigns of market `index`, run at once as `ledgerlab run` processes; each scored on the truth."""
    share = tmp / f"share-{index}"
    folders = [tmp / f"{arm}-{index}-{k}" for k in range(args.k)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "ledgerlab", "run", "marketing", "--dir", str(folder), "--seed", str(100 * index + k),
         "--max-units", str(int(args.budget)), "--max-hypotheses", str(args.max_hypotheses), "-q",
         "--option", f"market_seed={index}", "--option", f"visitors_per_run={args.visitors_per_run}",
         *(["--share", str(share)] if arm == "share" else [])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
        for k, folder in enumerate(folders)]
    for proc, folder in zip(procs, folders):
        out, _ = proc.communicate()
        if proc.returncode != 0 and "hypotheses, " not in out:  # a crash after the summary leaves a whole ledger
            raise SystemExit(f"a campaign failed ({proc.returncode}):\n{out[-2000:]}")
        if proc.returncode != 0:
            print(f"  {folder.name}: exit {proc.returncode} after its summary: {out.splitlines()[-1]}", file=sys.stderr)
    market = Market.seeded(index)
    return [score(folder, index, k, arm, args, market) for k, folder in enumerate(folders)]


def score(folder: Path, index: int, k: int, arm: str, args: argparse.Namespace, market: Market) -> dict[str, Any]:
    with DuckDBLedger(folder / ".ledgerlab" / "ledger.duckdb") as store:
        cid = store.campaign_ids()[-1]
        config = CampaignConfig(domain="marketing", seed=100 * index + k)
        member = swarm.Member(cid, store, config, folder / "runs", fold(cid, store.read(cid)))  # type: ignore[arg-type]
        return swarm.score(member, market, arm, index, k)


def _pct(ci: tuple[float | None, float | None, float | None]) -> str:
    return "-" if ci[0] is None else f"{ci[0]:.0%} [{ci[1]:.0%}, {ci[2]:.0%}]"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markets", type=int, default=10, help="seeded markets (default 10)")
    ap.add_argument("--k", type=int, default=4, help="campaigns per market (default 4)")
    ap.add_argument("--budget", type=float, default=1_000_000, help="visitors per campaign (default 1,000,000)")
    ap.add_argument("--visitors-per-run", type=int, default=25_000)
    ap.add_argument("--max-hypotheses", type=int, default=2000, help="a safety cap; the visitor budget binds")
    ap.add_argument("--out", type=Path, default=cb.RESULTS / "share_live.json")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory(prefix="ledgerlab-share-live-") as tmp:
        for index in range(args.markets):
            for arm in ARMS:
                got = run_market(index, arm, args, Path(tmp))
                rows[arm].extend(got)
                lifts = " ".join(f"{r['lift_rel']:+.1%}" for r in got)
                print(f"  market {index:3} {arm:5}: lifts {lifts}, "
                      f"imports {sum(r['imports'] for r in got)}, accepted {sum(r['imports_accepted'] for r in got)}",
                      file=sys.stderr, flush=True)
    summary = {arm: swarm.summarize(rs) for arm, rs in rows.items()}
    diff = swarm.paired(rows, "share", "none")
    for arm, s in summary.items():
        lift = s["lift_rel"]
        print(f"{arm:5}: true lift {lift[0]:+.1%} [{lift[1]:+.1%}, {lift[2]:+.1%}], changes {s['changes']}, "
              f"false {s['fd']}, imports {s['imports']} (tested {s['imports_tested']}, accepted "
              f"{s['imports_accepted']}; of the real ones tested, {s['real_imports_tested']}, accepted "
              f"{_pct(s['real_imports_accepted'])})")
    print(f"share - none: {diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]" if diff[0] is not None else "")
    elapsed = time.perf_counter() - started
    print(f"{elapsed:.0f} s in all")
    cb.write_json(args.out, {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                             "summary": summary, "share_minus_none": diff, "campaigns": rows, "seconds": elapsed,
                             "code": cb.code_versions()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
