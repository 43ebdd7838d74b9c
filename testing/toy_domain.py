"""A small domain with a known effect: a quadratic bowl in two knobs plus seeded noise (runs in microseconds).

    from ledgerlab.testing import ToyDomain, true_loss
    result = ToyDomain().run(RunRequest(run_id="r", candidate_id="c", files=ToyDomain().baseline(), seed=0,
                                        workdir=Path("/tmp/r")))

The truth is known (`true_loss`), so tests and bench/proposers.py can score what a campaign kept. A seed's
shared noise (`seed_noise`) cancels between a candidate and the incumbent run on the same seed.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Mapping, Sequence

from ledgerlab.core.domain_base import DomainBase
from ledgerlab.core.knobs import read_knob
from ledgerlab.core.protocols import Knob, MetricSpec, RunRequest, RunResult
from ledgerlab.errors import InvalidCandidate, PatchError

BASELINE = 'X = 2.0\nY = 3\nMODE = "plain"\n'
KNOBS = (
    Knob(name="X", file="params.py", kind="float", low=0.0, high=10.0),
    Knob(name="Y", file="params.py", kind="int", low=0, high=8),
    Knob(name="MODE", file="params.py", kind="choice", choices=("plain", "fancy", "broken")),
)


def true_loss(x: float, y: int) -> float:
    """The noise-free metric (minimize): best at X = 6, Y = 5."""
    return 0.05 * (x - 6.0) ** 2 + 0.1 * abs(y - 5)


def _unit(*parts: object) -> random.Random:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class ToyDomain(DomainBase):
    """Minimize `loss`; runs take `sleep_s`; MODE="broken" crashes; X > `crash_above` crashes too."""

    name = "toy"
    metric = MetricSpec(name="loss", direction="minimize", delta=0.0)
    design = "independent"
    description = "Tune X and Y in params.py to minimize loss. MODE must not be 'broken'."

    def __init__(self, sleep_s: float = 0.0, noise: float = 0.05, seed_noise: float = 0.2,
                 crash_above: float = 99.0, fail_incumbent: bool = False) -> None:
        self.sleep_s, self.noise, self.seed_noise = sleep_s, noise, seed_noise
        self.crash_above, self.fail_incumbent = crash_above, fail_incumbent
        self.calls: list[RunRequest] = []

    def baseline(self) -> dict[str, str]:
        return {"params.py": BASELINE}

    def knobs(self) -> Sequence[Knob]:
        return KNOBS

    def validate(self, files: Mapping[str, str]) -> None:
        try:
            x = read_knob(dict(files), KNOBS[0])
        except PatchError as exc:  # params.py or its X line is missing
            raise InvalidCandidate(str(exc)) from None
        if not isinstance(x, (int, float)) or not 0 <= x <= 10:
            raise InvalidCandidate(f"X must be a number in [0, 10], got {x!r}")

    def run(self, request: RunRequest) -> RunResult:
        self.calls.append(request)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        files = dict(request.files)
        try:
            x, y = float(read_knob(files, KNOBS[0])), int(read_knob(files, KNOBS[1]))
            mode = read_knob(files, KNOBS[2])
        except PatchError as exc:  # failures are returned, never raised (the Domain protocol)
            return RunResult(status="invalid", error=str(exc), duration_s=self.sleep_s)
        if mode == "broken" or x > self.crash_above or (self.fail_incumbent and files == self.baseline()):
            return RunResult(status="crashed", error="Traceback: boom", log_tail="boom", duration_s=self.sleep_s)
        shared = _unit("seed", request.seed).gauss(0.0, self.seed_noise)  # cancels in matched pairs
        own = _unit("run", request.seed, request.candidate_id).gauss(0.0, self.noise)
        value = true_loss(x, y) + shared + own
        return RunResult(status="finished", value=value, metrics={"x": x, "y": y}, duration_s=self.sleep_s)
