"""Discoveries that travel: a campaign's accepted changes as a self-contained bundle, imported by another
campaign of the same domain as hypotheses its own judge tests against its own incumbent.

    body = bundle_body(rows, head, checkpoint)           # from one campaign's stored events
    body = store_body(store, campaign_id)                # the same, read from an in-process event store
    text = bundle_text(body, key)                        # {"format", "version", "content_hash", "signature", "body"}
    bundle = read_bundle(text, "shop.json")              # IntegrityError: body ≠ its hash, or a bad signature
    check_trusted(bundle, trusted, "shop.json")          # IntegrityError unless one of `trusted` signed it
    events, skipped = import_events(bundle, state, "marketing")   # one DiscoveryImported per new discovery
    proposal_events(item, state, domain, files_of)       # the loop: HypothesisProposed (+ PatchRejected)

An import is a hypothesis, never an adoption: the loop proposes the queued ones (`CampaignState.pending_imports`)
before its agents' own ideas, and the judge accepts one only on this campaign's runs. A patch that no longer
applies to this incumbent is re-expressed through its knob changes, or rejected with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ledgerlab.core.effects import confirmed
from ledgerlab.core.knobs import write_knob
from ledgerlab.core.patches import apply_diff, make_diff
from ledgerlab.core.protocols import Domain
from ledgerlab.core.state import CampaignState, HypothesisRecord, fold
from ledgerlab.errors import CampaignError, IntegrityError, LedgerlabError, PatchError
from ledgerlab.storage import events as ev
from ledgerlab.storage.ledger import EventStore

if TYPE_CHECKING:
    from ledgerlab.storage.signing import SigningKey

FORMAT = "ledgerlab-discoveries"
VERSION = 1
PROPOSER = "imported"  # the `proposer` of an imported hypothesis; its agent is "imported:<source campaign>"
# A bundle is a diff and a few numbers per change: a campaign's worth is kilobytes. A file in a share folder is
# anyone's to write, so one far larger than any bundle is refused before it is read into memory.
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
# The events that make an accepted change, whose seqs and hashes the bundle keeps as its provenance.
LINKS = ("HypothesisProposed", "CandidateCreated", "VerdictReached", "IncumbentChanged")

FilesOf = Callable[[str], dict[str, str]]


# ------------------------------------------------------------------------------------------ the bundle


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")  # newer bundles may add fields: the hash covers them


class DomainInfo(_Model):
    """What the source campaign ran: its domain, metric and run design (an import is tested on ours)."""

    name: str
    metric: dict[str, Any]
    design: str = "independent"
    run_design: dict[str, Any] = {}
    domain_options: dict[str, Any] = {}
    baseline_candidate_id: str = ""
    data_checksum: str | None = None


class Source(_Model):
    """Where the discoveries were recorded: the campaign, its ledger's head and last signed checkpoint."""

    campaign_id: str
    status: str = ""
    events: int = 0
    head: dict[str, Any] = {}  # {"seq", "hash"} of the whole ledger when exported
    checkpoint: dict[str, Any] | None = None  # the last CheckpointSigned, with `signature_valid`


class Discovery(_Model):
    """One accepted change: its patch, knob changes, rationale, verdict, confirmed effect and event seqs."""

    hypothesis_id: str
    number: int
    agent: str = ""
    proposer: str = ""
    rationale: str
    parent_candidate_id: str = ""
    candidate_id: str = ""
    diff: str
    changes: dict[str, Any] = {}
    verdict: dict[str, Any]
    confirmed: dict[str, Any] | None = None  # {"effect", "ci_low", "ci_high", "method"} on fresh runs
    events: dict[str, dict[str, Any]] = {}  # event type -> {"seq", "hash"}


class Body(_Model):
    exported_at: str
    ledgerlab_version: str = ""
    domain: DomainInfo
    source: Source
    discoveries: list[Discovery]


class Bundle(_Model):
    """A bundle read back and checked: its body, the hash that body has, and the public key (hex) whose valid
    signature it carries, if any."""

    content_hash: str
    body: Body
    signer: str | None = None


def canonical(body: dict[str, Any]) -> str:
    """The text the content hash covers: sorted keys, no whitespace (floats as Python writes them)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(body: dict[str, Any]) -> str:
    """`sha256:` and the SHA-256 hex of the body's canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def bundle_text(body: dict[str, Any], key: SigningKey | None = None) -> str:
    """The bundle file: format, version, the body's content hash, its signature by `key` if given, the body."""
    digest = content_hash(body)
    signature = {"signature": key.sign_bundle(digest)} if key is not None else {}
    bundle = {"format": FORMAT, "version": VERSION, "content_hash": digest, **signature, "body": body}
    return json.dumps(bundle, indent=1, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------------- export


def bundle_body(rows: Sequence[ev.StoredEvent], head: tuple[int, str], checkpoint: ev.StoredEvent | None,
                version: str = "") -> dict[str, Any]:
    """The bundle's body for the campaign whose events are `rows` (in order): every change it accepted."""
    if not rows:
        raise CampaignError("the campaign has no events: nothing to export")
    state = fold(rows[0].campaign_id, list(rows))
    started = state.started
    if started is None:
        raise CampaignError(f"campaign {state.campaign_id} has not started: it has no discoveries to export")
    links = _links(rows)
    accepted = [state.hypotheses[v.hypothesis_id] for v in state.verdicts if v.decision == "accept"]
    found = [_discovery(state, h, links.get(h.hypothesis_id, {})) for h in accepted]
    newest = max((link["seq"] for d in found for link in d["events"].values()), default=0)
    return {
        "exported_at": ev.utc_now().isoformat(), "ledgerlab_version": version,
        "domain": {"name": started.domain, "metric": started.metric, "design": started.design,
                   "run_design": dict(started.environment.get("run_design") or {}),
                   "domain_options": dict(started.config.get("domain_options") or {}),
                   "baseline_candidate_id": started.baseline_candidate_id, "data_checksum": started.data_checksum},
        "source": {"campaign_id": state.campaign_id, "status": state.status, "events": len(rows),
                   "head": {"seq": head[0], "hash": head[1]}, "checkpoint": _checkpoint(checkpoint, newest)},
        "discoveries": found,
    }


def store_body(store: EventStore, campaign_id: str, version: str = "") -> dict[str, Any]:
    """The bundle body of `campaign_id` read from any event store (in-process: benches, tests)."""
    every = store.read()
    head = (every[-1].seq, every[-1].hash) if every else (0, ev.GENESIS_HASH)
    marks = [row for row in every if row.type == "CheckpointSigned"]  # the chain's last signature, any campaign
    rows = [row for row in every if row.campaign_id == campaign_id]
    return bundle_body(rows, head, marks[-1] if marks else None, version)


def _links(rows: Sequence[ev.StoredEvent]) -> dict[str, dict[str, dict[str, Any]]]:
    """hypothesis id -> event type -> the seq and hash of its latest event of that type."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row.type in LINKS:
            hid = json.loads(row.payload).get("hypothesis_id")
            out.setdefault(hid, {})[row.type] = {"seq": row.seq, "hash": row.hash}
    return out


def _discovery(state: CampaignState, h: HypothesisRecord, links: dict[str, dict[str, Any]]) -> dict[str, Any]:
    v = h.verdict
    assert v is not None
    check = confirmed(state, h)
    verdict = v.model_dump(mode="json", exclude={"type", "hypothesis_id", "details"})
    verdict["guardrails"] = v.details.get("guardrails", [])
    return {
        "hypothesis_id": h.hypothesis_id, "number": h.number, "agent": h.agent, "proposer": h.proposer,
        "rationale": h.rationale, "parent_candidate_id": h.parent_candidate_id, "candidate_id": h.candidate_id,
        "diff": h.diff, "changes": h.changes, "verdict": verdict,
        "confirmed": None if check is None else {"effect": check.effect, "ci_low": check.low,
                                                 "ci_high": check.high, "method": check.method},
        "events": links,
    }


def _checkpoint(row: ev.StoredEvent | None, newest: int) -> dict[str, Any] | None:
    """The last signed checkpoint, whether its signature holds, and whether it covers every discovery."""
    if row is None:
        return None
    from ledgerlab.storage.signing import signature_valid

    event = row.event()
    assert isinstance(event, ev.CheckpointSigned)
    return {"seq": row.seq, **event.model_dump(mode="json", exclude={"type"}),
            "signature_valid": signature_valid(event), "covers_discoveries": event.head_seq >= newest}


# ------------------------------------------------------------------------------------------- import


def bundle_file_text(path: Path) -> str:
    """The text of the bundle file at `path`; anything but a regular file, or a file larger than any bundle, is
    refused unread (OSError passes)."""
    # Non-blocking: a FIFO planted in a share folder would otherwise hold the runner until someone writes to it.
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise LedgerlabError(f"{path} is not a regular file: it was not read")
        raw = f.read(MAX_BUNDLE_BYTES + 1)
    if len(raw) > MAX_BUNDLE_BYTES:
        raise LedgerlabError(f"{path} is larger than {MAX_BUNDLE_BYTES // 2**20} MiB, far more than a discoveries "
                             "bundle holds: it was not read")
    return raw.decode("utf-8", errors="replace")


def read_bundle(text: str, name: str) -> Bundle:
    """The bundle in `text` (from `name`), its content hash checked; one-line errors a user can act on."""
    try:
        data = json.loads(text)
    except ValueError as exc:  # not JSON, or a number too long to convert
        raise LedgerlabError(f"{name} is not a discoveries bundle: not JSON ({str(exc)[:120]})") from None
    except RecursionError:  # JSON nested thousands deep: no bundle is, and the parser gives up
        raise _too_deep(name) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LedgerlabError(f"{name} is not a discoveries bundle (no \"format\": \"{FORMAT}\"); write one with "
                             "`ledgerlab export --format discoveries`")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise LedgerlabError(f"{name} is a bundle of version {data.get('version')!r}; this ledgerlab reads "
                             f"version {VERSION}: upgrade ledgerlab")
    body, claimed = data.get("body"), data.get("content_hash")
    if not isinstance(body, dict):
        raise IntegrityError(f"{name} has no body: it was cut or edited; export it again from the source")
    try:
        actual = content_hash(body)
    except ValueError:  # a lone surrogate (\ud800) parses but has no UTF-8: no export writes one
        raise IntegrityError(f"{name} holds text that is not valid Unicode: it was not written by `ledgerlab "
                             "export`; nothing was imported") from None
    except RecursionError:  # nested just shallow enough to parse, too deep to serialize from a deeper stack
        raise _too_deep(name) from None
    if claimed != actual:
        raise IntegrityError(f"{name} fails its integrity check: its body hashes to {actual[:19]}…, not to the "
                             f"recorded {str(claimed)[:19]}…: it was changed after export; nothing was imported")
    try:
        parsed = Body.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise LedgerlabError(f"{name} is not a readable bundle: {where}: {first['msg']}") from None
    checkpoint = parsed.source.checkpoint
    if checkpoint is not None:
        _check_signature(checkpoint, name)
    return Bundle(content_hash=actual, body=parsed, signer=_signer(data, actual, name))


def _too_deep(name: str) -> LedgerlabError:
    return LedgerlabError(f"{name} is not a discoveries bundle: its JSON is nested too deep to read")


def _signer(data: dict[str, Any], digest: str, name: str) -> str | None:
    """The public key of the bundle's signature; a signature that does not verify means an edited bundle."""
    from ledgerlab.storage.signing import bundle_signature_valid

    if "signature" not in data:
        return None
    if not bundle_signature_valid(data["signature"], digest):
        raise IntegrityError(f"{name} carries a signature that does not verify: it was changed after it was "
                             "signed; nothing was imported")
    return str(data["signature"]["public_key"])


def check_trusted(bundle: Bundle, trusted: frozenset[str], name: str) -> None:
    """With keys to trust (`--trust`), refuse a bundle that none of them signed; one line saying whose it is."""
    if not trusted or bundle.signer in trusted:
        return
    from ledgerlab.storage.signing import key_id

    whose = f"signed by key {key_id(bundle.signer)}, which is not trusted" if bundle.signer else "not signed"
    raise IntegrityError(f"{name} is {whose}: nothing was imported; --trust the key of its source "
                         "(`ledgerlab verify` there prints it), or leave out --trust")


def _check_signature(checkpoint: dict[str, Any], name: str) -> None:
    """A bundle that carries a checkpoint whose signature does not verify was edited: refused."""
    from ledgerlab.storage.signing import signature_valid

    try:
        event = ev.CheckpointSigned(**{k: checkpoint[k] for k in ("head_seq", "head_hash", "public_key", "key_id",
                                                                  "signature")})
        valid = signature_valid(event)
    except (KeyError, ValueError, TypeError):
        valid = False
    if not valid:
        raise IntegrityError(f"{name} carries a signed checkpoint whose signature does not verify: it was "
                             "changed after export; nothing was imported")


def import_events(bundle: Bundle, state: CampaignState, domain: str,
                  origin: str = "") -> tuple[list[ev.DiscoveryImported], list[Discovery]]:
    """One DiscoveryImported per discovery this campaign has not imported yet, and the ones it already has.

    Raises CampaignError for a bundle of another domain or of this very campaign.
    """
    body = bundle.body
    if body.domain.name != domain:
        raise CampaignError(f"{origin or 'the bundle'} holds discoveries of domain {body.domain.name!r}, but this "
                            f"project's domain is {domain!r}: import it into a {body.domain.name} project")
    if body.source.campaign_id == state.campaign_id:
        raise CampaignError(f"{origin or 'the bundle'} comes from this campaign ({state.campaign_id}) itself: "
                            "its changes are already here")
    seen = {(i.source_campaign_id, i.source_hypothesis_id) for i in state.imports.values()}
    new: list[ev.DiscoveryImported] = []
    skipped: list[Discovery] = []
    for found in body.discoveries:
        if (body.source.campaign_id, found.hypothesis_id) in seen:
            skipped.append(found)
            continue
        seen.add((body.source.campaign_id, found.hypothesis_id))
        new.append(_imported(bundle, found, origin))
    return new, skipped


def _imported(bundle: Bundle, found: Discovery, origin: str) -> ev.DiscoveryImported:
    from ledgerlab.core.proposals import new_hypothesis_id

    body = bundle.body
    basis, effect = ("confirmed", found.confirmed) if found.confirmed else ("selected", found.verdict)
    return ev.DiscoveryImported(
        hypothesis_id=new_hypothesis_id(), source_campaign_id=body.source.campaign_id,
        source_hypothesis_id=found.hypothesis_id, source_number=found.number, domain=body.domain.name,
        rationale=found.rationale, diff=found.diff, changes=dict(found.changes), effect=effect.get("effect"),
        ci_low=effect.get("ci_low"), ci_high=effect.get("ci_high"), effect_basis=basis,
        provenance={
            "bundle": origin, "content_hash": bundle.content_hash, "exported_at": body.exported_at,
            "source_agent": found.agent, "source_proposer": found.proposer, "verdict": found.verdict,
            "confirmed": found.confirmed, "events": found.events, "head": body.source.head,
            "checkpoint": body.source.checkpoint, "metric": body.domain.metric,
            "run_design": body.domain.run_design, "design": body.domain.design, "signer": bundle.signer,
        },
    )


# -------------------------------------------------------------------------------------- in the loop


def check_queued_domain(state: CampaignState, domain: str | None) -> None:
    """A campaign that holds only imports starts in their domain: another one could not test them."""
    theirs = sorted({item.domain for item in state.imports.values()})
    if domain is not None and theirs and theirs != [domain]:
        raise CampaignError(f"this folder's next campaign ({state.campaign_id}) holds discoveries imported for "
                            f"domain {', '.join(theirs)}, not {domain!r}: `ledgerlab run {theirs[0]}` tests them, "
                            f"or `ledgerlab run {domain} --new` starts without them")



def retry(item: ev.DiscoveryImported) -> ev.DiscoveryImported:
    """The same import queued again, as a new hypothesis: its earlier attempt went stale, untested."""
    from ledgerlab.core.proposals import new_hypothesis_id

    return item.model_copy(update={"hypothesis_id": new_hypothesis_id(), "retry_of": item.hypothesis_id})


def agent_of(item: ev.DiscoveryImported) -> str:
    """The agent an imported hypothesis is recorded under."""
    return f"imported:{item.source_campaign_id}"


def proposal_events(item: ev.DiscoveryImported, state: CampaignState, domain: Domain,
                    files_of: FilesOf) -> tuple[ev.Event, ...]:
    """The queued import as a hypothesis on this incumbent, or that hypothesis and why its patch is rejected."""
    incumbent = state.incumbent_id
    base = files_of(incumbent)
    files, note, reason = express(item, base, domain)
    if item.retry_of in state.hypotheses:
        note += f" (tested again: the incumbent changed while #{state.hypotheses[item.retry_of].number} tested it)"

    def proposed(diff: str, rationale: str) -> ev.HypothesisProposed:
        return ev.HypothesisProposed(hypothesis_id=item.hypothesis_id, agent=agent_of(item), proposer=PROPOSER,
                                     rationale=rationale, parent_candidate_id=incumbent, diff=diff,
                                     changes=dict(item.changes))

    if files is None:
        return proposed(item.diff, item.rationale), ev.PatchRejected(hypothesis_id=item.hypothesis_id, reason=reason)
    if files == base:
        shown = ", ".join(f"{k} = {v!r}" for k, v in item.changes.items()) or "its patch"
        return (proposed(item.diff, item.rationale), ev.PatchRejected(
            hypothesis_id=item.hypothesis_id, reason=f"no-op: this incumbent already has the imported change ({shown})"))
    return (proposed(make_diff(base, files), item.rationale + note),)


def express(item: ev.DiscoveryImported, base: dict[str, str],
            domain: Domain) -> tuple[dict[str, str] | None, str, str]:
    """(files, a note for the rationale, "") with the change made on `base`, or (None, "", why it cannot be)."""
    failure = "the patch is empty"  # only a hand-made bundle has one; an empty diff "applies" as no change
    if item.diff.strip():
        try:
            return apply_diff(base, item.diff), "", ""
        except PatchError as exc:
            failure = str(exc).removeprefix("patch does not apply: ")
    if not item.changes:
        return None, "", (f"imported patch does not apply to this incumbent ({failure}), and it has no knob "
                          "changes to re-express it through")
    knobs = {k.name: k for k in domain.knobs()}
    unknown = sorted(set(item.changes) - set(knobs))
    if unknown:
        return None, "", (f"imported patch does not apply to this incumbent ({failure}), and {', '.join(unknown)} "
                          "is not a knob of this domain")
    files = dict(base)
    try:
        for name, value in item.changes.items():
            files = write_knob(files, knobs[name], value)
    except PatchError as exc:
        return None, "", f"imported patch does not apply to this incumbent ({failure}), nor its knob changes ({exc})"
    return files, " (re-expressed through its knob changes: its patch does not apply to this incumbent)", ""
