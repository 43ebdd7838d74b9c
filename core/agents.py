"""A campaign's agents: named proposers, run in threads, and which of them is busy, exhausted or failing.

The loop submits a proposal context for each agent `idle()` returns, `collect()`s what came back, and alone
turns it into events (it is the only writer of the ledger). Events a proposer emits while it works (LLM
calls), and a ProposerFailed for each call that raised, wait here until the loop takes them with `events()`.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledgerlab.core.protocols import Proposal, ProposalContext, Proposer
from ledgerlab.errors import ProposalRejected, ProviderDownError, ProviderRefusedError
from ledgerlab.storage.events import TRACEBACK_TAIL, ProposerFailed

MAX_PROPOSER_FAILURES = 3  # consecutive proposer exceptions before the campaign pauses


@dataclass(frozen=True)
class Agent:
    """A named proposer taking part in the campaign."""

    name: str
    proposer: Proposer


@dataclass(frozen=True)
class Returned:
    """What one proposal call came back with: a proposal or a rejected answer."""

    agent: Agent
    parent: str  # the incumbent it was asked to improve
    proposal: Proposal | None = None
    rejected: ProposalRejected | None = None


class AgentPool:
    """The agents' proposal calls in flight, and what each agent is known to be out of."""

    def __init__(self, agents: Sequence[Agent]) -> None:
        self.agents = list(agents)
        self._events: queue.Queue[Any] = queue.Queue()
        self._threads = cf.ThreadPoolExecutor(max_workers=max(1, len(self.agents)), thread_name_prefix="propose")
        self._calls: dict[cf.Future[Proposal | None], tuple[Agent, str]] = {}
        self._exhausted: dict[str, str] = {}  # agent -> the incumbent it had nothing more for
        self._failures: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        """Proposal calls not yet collected."""
        return len(self._calls)

    def emit(self, event: Any) -> None:
        """The sink proposers write side events to (from their threads)."""
        self._events.put(event)

    def events(self) -> list[Any]:
        """The side events emitted so far, oldest first, taken out of the pool."""
        batch = []
        while True:
            try:
                batch.append(self._events.get_nowait())
            except queue.Empty:
                return batch

    def idle(self, incumbent_id: str) -> list[Agent]:
        """Agents with no call in flight that have not run out of ideas for this incumbent."""
        busy = {agent.name for agent, _ in self._calls.values()}
        return [a for a in self.agents if a.name not in busy and self._exhausted.get(a.name) != incumbent_id]

    def submit(self, agent: Agent, context: ProposalContext) -> None:
        """Ask `agent` for a proposal in a thread."""
        future = self._threads.submit(agent.proposer.propose, context, self)
        self._calls[future] = (agent, context.incumbent_id)

    def wait(self, timeout: float) -> None:
        """Block until a call finishes or `timeout` seconds pass."""
        if self._calls:
            cf.wait(list(self._calls), timeout=timeout, return_when=cf.FIRST_COMPLETED)

    def collect(self) -> tuple[list[Returned], str | None]:
        """The finished calls' results, and why the campaign must pause, if it must."""
        returned: list[Returned] = []
        stop: str | None = None
        for future in [f for f in self._calls if f.done()]:
            agent, parent = self._calls.pop(future)
            try:
                proposal = future.result()
            except ProposalRejected as exc:
                self._failures[agent.name] = 0
                returned.append(Returned(agent, parent, rejected=exc))
                continue
            except (ProviderDownError, ProviderRefusedError) as exc:
                self._failed(agent, parent, exc)
                stop = f"agent {agent.name}: {exc}"
                continue
            except Exception as exc:  # noqa: BLE001 - a proposer bug must pause the campaign, not crash it
                stop = self._failed(agent, parent, exc) or stop
                continue
            self._failures[agent.name] = 0
            if proposal is None:
                self._exhausted[agent.name] = parent
            else:
                returned.append(Returned(agent, parent, proposal=proposal))
        return returned, stop

    def shutdown(self) -> None:
        """Stop waiting for calls in flight (their results are dropped; the next start proposes again)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _failed(self, agent: Agent, parent: str, exc: Exception) -> str | None:
        """Record the failure (a ProposerFailed for the loop); why the campaign must pause, once it must."""
        count = self._failures.get(agent.name, 0) + 1
        self._failures[agent.name] = count
        self.emit(failure_event(agent, parent, exc, count))
        if count < MAX_PROPOSER_FAILURES:
            return None
        return (f"proposer {agent.proposer.name!r} of agent {agent.name} failed {count} times in a row "
                f"(last: {type(exc).__name__}: {exc}); fix it or choose another with --proposer")


def failure_event(agent: Agent, parent: str, exc: BaseException, consecutive: int) -> ProposerFailed:
    """A proposer's exception as an event: its one-line error and the tail of its traceback."""
    lines = str(exc).splitlines()
    error = type(exc).__name__ + (f": {lines[0]}" if lines else "")
    trace = "".join(traceback.format_exception(exc))
    return ProposerFailed(agent=agent.name, proposer=agent.proposer.name, parent_candidate_id=parent, error=error,
                          traceback=trace[-TRACEBACK_TAIL:], consecutive=consecutive)
