"""The ml_training GPU profile in one short call on a GPU machine: prepare here, run there.

    .venv/bin/python bench/gpu_profile.py prepare [--source demo] [--python 3.12]   # here: fills .gpu/
    python3 bench/gpu_profile.py run [--deadline 450] [--out DIR]                   # there, from the repo root

`prepare` fills `.gpu/` (git-ignored) with what a bare GPU machine without a package index lacks: the wheels
of ledgerlab and of those of its dependencies a CUDA PyTorch image does not hold (DEVICE_WHEELS, at the
versions installed here, for the machine's Python), bubblewrap's .deb (the sandbox; unpacked there into
.gpu/root, never into /), and a copy of a finished CPU campaign (`--source`, default ./demo from `make demo`).

`run` installs the wheels into /tmp/site and measures, each step under what is left of `--deadline` seconds:

1. facts: the GPU, torch, the isolation a run gets there, and whether a sandboxed run sees the GPU;
2. transfer: the carried campaign's accepted lineage re-measured on the GPU at its own token budget
   (`ledgerlab transfer --option device=cuda ...`): do the CPU gains hold on another device? Its events go to
   the copied ledger, which comes back as ledger.duckdb;
3. noise: the GPU profile's seed-to-seed noise of val_bpb (the basis of its δ, a placeholder so far) and its
   training throughput, at a short wall-clock budget (`measure_noise --budget-s`).

It writes facts.json, transfer.log, ledger.duckdb, noise.log, noise.json and gpu_profile.json (each step's exit
code, seconds and output tail) to --out (default $OUT, the device tool's folder that comes back), and prints a
table. A step that fails or runs out of time is recorded as such and the next one still runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / ".gpu"
# Dependencies a CUDA PyTorch image lacks or may hold at an untested version (docs: the device's KINDS.md lists
# its packages): carried at the versions installed here. litellm is left out on purpose: only the LLM
# proposer imports it, and this profile uses the offline knob proposer.
DEVICE_WHEELS = ("duckdb", "sqlmodel", "SQLAlchemy", "pydantic", "pydantic_core", "annotated-types",
                 "typing-inspection", "typing_extensions", "cryptography", "cffi", "pycparser", "typer", "click",
                 "rich", "annotated-doc", "shellingham")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux_2_34_x86_64", "manylinux1_x86_64")
SITE = Path("/tmp/site")
# The source campaign's CPU budget, kept on the GPU so that only the device differs (domains/ml_training).
TRANSFER_OPTIONS = ("budget_tokens=49152", "eval_tokens=32768")
NOISE_SEEDS, NOISE_BUDGET_S = 3, 15
GRACE_S = 20  # a step out of time gets this long to stop after SIGTERM
MIN_STEP_S = 20  # a step with less time than this left is skipped


# ------------------------------------------------------------------------------------------------ prepare


def prepare(args: argparse.Namespace) -> int:
    """Fill .gpu/: wheels for the GPU machine's Python, bubblewrap's .deb, the source campaign."""
    source = Path(args.source).resolve()
    if not (source / ".ledgerlab" / "ledger.duckdb").is_file():
        print(f"error: {source} holds no campaign (.ledgerlab/ledger.duckdb); run `make demo` first, "
              "or name one with --source DIR", file=sys.stderr)
        return 2
    shutil.rmtree(STAGE, ignore_errors=True)
    wheels = STAGE / "whl"
    wheels.mkdir(parents=True)
    made_here = not (ROOT / "build").exists()  # setuptools builds in ./build: remove it unless it was there
    _check([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
            str(wheels), str(ROOT)], "building the ledgerlab wheel")
    if made_here:
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in DEVICE_WHEELS]
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    _check([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--python-version", args.python, "--implementation", "cp", *platform_args, "-d", str(wheels), *pins],
           "downloading the dependency wheels")
    debs = STAGE / "deb"
    debs.mkdir()
    _check(["apt-get", "download", "bubblewrap"], "downloading bubblewrap (apt-get update first?)", cwd=debs)
    campaign = STAGE / "source"
    shutil.copytree(source, campaign, ignore=shutil.ignore_patterns("runs", "*.wal", "*.lock"))
    (campaign / ".ledgerlab" / "runs").mkdir(exist_ok=True)
    size = sum(p.stat().st_size for p in STAGE.rglob("*") if p.is_file())
    print(f"prepared {STAGE} ({size / 2**20:.1f} MiB: {len(list(wheels.iterdir()))} wheels, bubblewrap, "
          f"the campaign of {source})")
    print('then, on the GPU machine: run(command="python3 bench/gpu_profile.py run", carry=[".gpu"], '
          "timeout_s=510)")
    return 0


def _check(argv: list[str], what: str, cwd: Path | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"error: {what} failed: {' / '.join(tail)}")


# ------------------------------------------------------------------------------------------------ run


class Steps:
    """Runs the steps under one deadline and records each one's exit code, seconds and output tail."""

    def __init__(self, out: Path, deadline_s: float, env: dict[str, str]) -> None:
        self.out, self.env = out, env
        self.records: dict[str, Any] = {}
        self.end = time.monotonic() + deadline_s

    def left(self) -> float:
        return self.end - time.monotonic()

    def run(self, name: str, argv: list[str], log: str | None = None, reserve_s: float = 0.0) -> int:
        budget = self.left() - reserve_s - GRACE_S
        if budget < MIN_STEP_S:
            self.records[name] = {"rc": None, "seconds": 0.0, "tail": f"skipped: {budget:.0f} s left"}
            return -1
        start = time.monotonic()
        # Not from the repository root, which is the package's own folder: its modules would shadow others.
        child = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 cwd=tempfile.gettempdir(), start_new_session=True)
        try:
            text, rc = child.communicate(timeout=budget)[0], child.returncode
        except subprocess.TimeoutExpired:
            # SIGTERM first: a transfer then pauses (CampaignPaused) and closes its ledger, which `run` copies.
            os.killpg(child.pid, signal.SIGTERM)
            try:
                text = child.communicate(timeout=GRACE_S)[0]
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                text = child.communicate()[0]
            rc, text = 124, f"{text}\n[stopped after {budget:.0f} s]"
        if log:
            (self.out / log).write_text(text)
        self.records[name] = {"rc": rc, "seconds": round(time.monotonic() - start, 1), "tail": text[-3000:]}
        return rc


def install(stage: Path) -> tuple[dict[str, str], list[str]]:
    """Install the carried wheels into /tmp/site and unpack bubblewrap: the steps' environment, and notes."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", LEDGERLAB_CACHE="/tmp/ledgerlab-cache")
    notes = []
    wheels = sorted(str(p) for p in (stage / "whl").glob("*.whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(SITE), *wheels], check=True)
        env["PYTHONPATH"] = str(SITE)
        notes.append(f"installed {len(wheels)} wheels into {SITE}")
    if shutil.which("bwrap") is None:  # without it runs are not sandboxed: the facts step says which it was
        root = stage / "root"
        try:
            for deb in sorted((stage / "deb").glob("*.deb")):
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True)
                notes.append(f"unpacked {deb.name}")
        except (OSError, subprocess.CalledProcessError) as exc:
            notes.append(f"bubblewrap not unpacked: {exc}")
        if (root / "usr" / "bin" / "bwrap").exists():
            env["PATH"] = f"{root / 'usr' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return env, notes


FACTS = """
import json, os, shutil, subprocess, sys, tempfile
from pathlib import Path
import torch
device = os.environ["PROFILE_DEVICE"]
from ledgerlab.core import sandbox
facts = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.cuda.is_available(),
         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
         "bwrap": shutil.which("bwrap"), "bwrap_problem": sandbox.bwrap_problem(),
         "isolation": sandbox.resolve_isolation("auto")}
smi = shutil.which("nvidia-smi")
facts["nvidia_smi"] = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout.strip() if smi else None
with tempfile.TemporaryDirectory() as folder:
    Path(folder, "probe.py").write_text(f"import torch; x = torch.ones(2, device={device!r}); "
                                        "print('sandboxed', x.device, float(x.sum()))")
    log = Path(folder) / "probe.log"
    result = sandbox.run_sandboxed([sys.executable, "probe.py"], Path(folder), log, timeout_s=60,
                                   device=device, isolation=facts["isolation"])
    facts["sandboxed_run"] = {"exit_code": result.exit_code, "isolation": result.isolation,
                              "tail": result.log_tail[-600:]}
Path(os.environ["PROFILE_FACTS"]).write_text(json.dumps(facts, indent=1))
print(json.dumps(facts, indent=1))
sys.exit(0 if result.exit_code == 0 else 1)  # a sandboxed run that cannot use the device fails the step
"""


def run(args: argparse.Namespace) -> int:
    """On the GPU machine: install, then facts, transfer and noise under one deadline."""
    out = Path(args.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stage = Path(args.stage)
    env, notes = install(stage)
    env.update(PROFILE_DEVICE=args.device, PROFILE_FACTS=str(out / "facts.json"))
    steps = Steps(out, args.deadline - (time.monotonic() - started), env)
    python = sys.executable
    if "facts" in args.steps:  # about 30 s; never more than a fifth of what is left
        steps.run("facts", [python, "-c", FACTS], reserve_s=steps.left() * 0.8)
    campaign = Path(tempfile.mkdtemp(prefix="gpu-transfer-")) / "source"
    if "transfer" in args.steps and (stage / "source").is_dir():
        shutil.copytree(stage / "source", campaign)
        options = [a for o in (f"device={args.device}", *TRANSFER_OPTIONS) for a in ("--option", o)]
        # --noise-reserve: the noise step needs 2 × NOISE_SEEDS runs of NOISE_BUDGET_S, their start and evaluation.
        steps.run("transfer", [python, "-m", "ledgerlab", "transfer", "--dir", str(campaign), *options,
                               "--workers", str(args.workers)], log="transfer.log", reserve_s=args.noise_reserve)
        for name in ("ledger.duckdb", "ledger.duckdb.wal"):  # committed events not yet checkpointed are in the WAL
            if (campaign / ".ledgerlab" / name).exists():
                shutil.copy(campaign / ".ledgerlab" / name, out / name)
    if "noise" in args.steps:
        steps.run("noise", [python, "-m", "ledgerlab.domains.ml_training.measure_noise", "--seeds", str(NOISE_SEEDS),
                            "--budget-s", str(NOISE_BUDGET_S), "--out", str(out / "noise.json")], log="noise.log")
    report = {"seconds": round(time.monotonic() - started, 1), "deadline_s": args.deadline, "device": args.device,
              "install": notes, "transfer_options": TRANSFER_OPTIONS,
              "noise": {"seeds": NOISE_SEEDS, "budget_s": NOISE_BUDGET_S}, "steps": steps.records}
    (out / "gpu_profile.json").write_text(json.dumps(report, indent=1))
    print(f"{'step':10} {'rc':>5} {'seconds':>8}")
    for name, record in steps.records.items():
        print(f"{name:10} {record['rc']!s:>5} {record['seconds']:8.1f}")
    print(steps.records.get("transfer", {}).get("tail", "")[-2500:])  # it ends with its table, done or paused
    print(f"wrote {out}")
    return 0 if all(r["rc"] == 0 for r in steps.records.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: fill .gpu/ with the wheels, bubblewrap and a campaign")
    p.add_argument("--source", default=str(ROOT / "demo"), help="a finished CPU campaign's folder")
    p.add_argument("--python", default="3.12", help="the GPU machine's Python version (the wheels' tag)")
    r = sub.add_parser("run", help="there: install from .gpu/ and measure")
    r.add_argument("--deadline", type=float, default=450.0, help="seconds for everything, install included")
    r.add_argument("--noise-reserve", type=float, default=220.0, help="seconds the transfer leaves to the noise step")
    r.add_argument("--workers", type=int, default=4, help="transfer runs at once (one GPU; the CPU model is small)")
    r.add_argument("--device", default="cuda", help="the device measured (cpu: a dry run of this script)")
    r.add_argument("--stage", default=str(STAGE), help="the folder `prepare` filled (default .gpu)")
    r.add_argument("--steps", default="facts,transfer,noise", type=lambda v: v.split(","),
                   help="which steps, comma-separated (default: all three)")
    r.add_argument("--out", default=None, help="folder for the results (default $OUT)")
    args = parser.parse_args(argv)
    return prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
