"""A small concurrent (A/B) in-test domain whose runs can test several candidates in one window (A/B/n)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping

from ledgerlab.core.knobs import read_knob
from ledgerlab.core.protocols import MetricSpec, RunRequest, RunResult
from ledgerlab.errors import InvalidCandidate
from ledgerlab.testing import KNOBS, ToyDomain


def true_rate(files: Mapping[str, str]) -> float:
    """The conversion rate of a page: X moves it (best at X = 6); Y and MODE do nothing."""
    x = float(read_knob(dict(files), KNOBS[0]))
    return 0.05 + 0.002 * (4.0 - abs(x - 6.0))


class WindowDomain(ToyDomain):
    """Maximize a conversion rate; every run splits `visitors` evenly over the control and the candidates."""

    name = "window"
    metric = MetricSpec(name="rate", direction="maximize", kind="proportion", alpha=0.05)
    design = "concurrent"
    budget_unit = "visitors"

    def __init__(self, candidates_per_run: int = 3, visitors: int = 20_000, drop_arm: bool = False,
                 void_attempts: int = 0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.candidates_per_run, self.visitors, self.drop_arm = candidates_per_run, visitors, drop_arm
        self.void_attempts = void_attempts  # a window's attempts up to this one mismatch (a broken split)

    def run(self, request: RunRequest) -> RunResult:
        self.calls.append(request)
        try:
            self.validate(request.files)
        except InvalidCandidate as exc:  # failures are returned, never raised (the Domain protocol)
            return RunResult(status="invalid", error=str(exc))
        if read_knob(dict(request.files), KNOBS[2]) == "broken":
            return RunResult(status="crashed", error="Traceback: boom")
        if request.attempt <= self.void_attempts:  # what the marketing domain returns for a sample-ratio mismatch
            share = self.visitors // (2 + len(request.arms))  # the visitors it was shown all the same
            void = RunResult(status="invalid", error="sample ratio mismatch", retryable=True,
                             metrics={"units": 2 * share})
            return void.model_copy(update={"arms": {a.run_id: void for a in request.arms}})
        key = (request.seed, request.candidate_id, request.attempt, tuple(a.candidate_id for a in request.arms))
        rng = random.Random(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "big"))
        share = self.visitors // (2 + len(request.arms))
        control = self._arm(rng, request.control_files or self.baseline(), share)
        results = [self._result(rng, files, share, control) for files in
                   (request.files, *(a.files for a in request.arms))]
        arms = {a.run_id: r for a, r in zip(request.arms, results[1:])}
        if self.drop_arm and arms:
            arms.pop(next(iter(arms)))
        return results[0].model_copy(update={"arms": arms})

    @staticmethod
    def _arm(rng: random.Random, files: Mapping[str, str], n: int) -> dict[str, float]:
        rate = true_rate(files)  # once per arm, not per visitor: the same draws, without re-parsing the page
        successes = sum(rng.random() < rate for _ in range(n))
        return {"successes": successes, "trials": n, "units": 0}

    def _result(self, rng: random.Random, files: Mapping[str, str], n: int, control: dict) -> RunResult:
        arm = self._arm(rng, files, n)
        return RunResult(status="finished", value=arm["successes"] / n, metrics={**arm, "units": 2 * n},
                         control_value=control["successes"] / n, control_metrics=control)
