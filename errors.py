"""ledgerlab's exceptions: one root, a few branches, messages a user can act on.

At the package root, not in core/: storage, core, domains and the CLI all raise them, and storage must not
import core (tests/test_layering.py).

    LedgerlabError
    ├── ConfigError              ledgerlab.toml or an option is invalid
    ├── LedgerError
    │   ├── ConcurrencyError     an append with a stale expected version
    │   ├── LedgerLockedError    another process holds the ledger past the wait limit
    │   ├── IntegrityError       the hash chain or sequence is broken
    │   ├── SigningKeyError      the checkpoint signing key cannot be made, read, or trusted
    │   └── QueryError           a user query is malformed
    │       └── ReadOnlyQueryError   a user query tried to write
    ├── DomainError
    │   ├── UnknownDomainError   no domain of that name is installed
    │   └── InvalidCandidate     a candidate's files break the domain's rules
    ├── PatchError               a diff does not apply or touches files outside the artifact
    ├── ProposerError            a proposer could not produce a hypothesis
    │   ├── ProviderDownError    an LLM provider stays unreachable after retries
    │   ├── ProviderRefusedError an LLM provider refuses the request (rejected key, unknown model)
    │   └── ProposalRejected     a hypothesis whose edit is unusable (recorded as PatchRejected)
    ├── IsolationUnavailable     the sandbox a run needs cannot be made here (isolation = "strict")
    ├── ExecutorError            an executor could not run a run (not the run failing)
    └── CampaignError            no campaign, or a campaign in the wrong state
"""

from __future__ import annotations


class LedgerlabError(Exception):
    """Root of every error ledgerlab raises on purpose."""


class ConfigError(LedgerlabError):
    """The configuration file or an option is invalid."""


class LedgerError(LedgerlabError):
    """A problem with the event ledger."""


class ConcurrencyError(LedgerError):
    """Another writer appended to the campaign stream first."""


class LedgerLockedError(LedgerError):
    """The ledger file stayed locked by another process past the wait limit."""


class IntegrityError(LedgerError):
    """The ledger's sequence or hash chain is broken."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class SigningKeyError(LedgerError):
    """The key that signs ledger checkpoints cannot be created or read, or is readable by others."""


class QueryError(LedgerError):
    """A user SQL query is malformed or failed."""


class ReadOnlyQueryError(QueryError):
    """A user SQL query tried to change the ledger."""


class DomainError(LedgerlabError):
    """A problem with a domain plug-in."""


class UnknownDomainError(DomainError):
    """No installed domain has the requested name."""


class InvalidCandidate(DomainError):
    """A candidate's files break the domain's rules (the reason is the message)."""


class PatchError(LedgerlabError):
    """A diff does not apply, or touches files outside the artifact."""


class ProposerError(LedgerlabError):
    """A proposer could not produce a hypothesis."""


class ProviderDownError(ProposerError):
    """An LLM provider stayed unreachable after all retries."""


class ProviderRefusedError(ProposerError):
    """An LLM provider refused the request (a rejected key, an unknown model): retrying cannot help."""


class IsolationUnavailable(LedgerlabError):
    """The sandbox a run needs cannot be created here (e.g. isolation = "strict" without bubblewrap)."""


class ExecutorError(LedgerlabError):
    """An executor could not run a run at all."""


class CampaignError(LedgerlabError):
    """No campaign, or a campaign in a state that does not allow the action."""


class ProposalRejected(ProposerError):
    """A proposer produced a hypothesis whose edit is unusable; the loop records it as PatchRejected."""

    def __init__(self, reason: str, rationale: str = "", diff: str = "", changes: dict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rationale = rationale
        self.diff = diff
        self.changes = dict(changes or {})
