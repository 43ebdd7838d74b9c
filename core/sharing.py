"""Campaigns that share while they run (`ledgerlab run --share DIR`): each of this campaign's accepts is
published to a shared folder as a one-change discoveries bundle, and the other campaigns' bundles are imported
from it as they appear, as hypotheses this campaign's judge re-tests (core/discoveries.py).

    share = ShareFolder(Path("/mnt/lab/shop"), warn=print)
    share.step(state, store, "marketing", append)   # the loop, between hypotheses: publish, then import
    share.publish(state, store)                     # the loop's end: the last accepts too

The folder is the only channel: no server, no locks. A bundle is written under a hidden temporary name in the
folder, fsynced and renamed, so a reader sees a whole file or none, on one machine or on a network filesystem
whose rename is atomic. Its name is `<campaign id>-<seq of its VerdictReached>.json`: two campaigns never write
the same name, and publishing an accept again writes the same name (an existing one is left as it is). What
this campaign imported is remembered in its own ledger (each DiscoveryImported holds its bundle's content
hash, and its source campaign and hypothesis), so a restarted runner imports nothing twice. Each bundle is
signed with the runner's key (its checkpoints' key); with `trusted` keys (`--trust`), only bundles one of them
signed are imported, the others skipped with one warning each.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ledgerlab.core.discoveries import (
    PROPOSER,
    Bundle,
    bundle_body,
    bundle_file_text,
    bundle_text,
    check_trusted,
    import_events,
    read_bundle,
)
from ledgerlab.core.state import CampaignState
from ledgerlab.errors import LedgerlabError
from ledgerlab.storage.ledger import EventStore
from ledgerlab.storage.signing import CheckpointSigner

SUFFIX = ".json"
# An idle loop (its agents busy, its runs in flight) lists the folder at most this often; a hypothesis decided
# lists it at once. Listing is one directory read, cheap even on a network filesystem at this rate.
SCAN_EVERY_S = 1.0

Append = Callable[..., None]  # the loop's `_append(*events)`: the only writer records the imports
Warn = Callable[[str], None]


def bundle_name(campaign_id: str, seq: int) -> str:
    """The file an accept is published under: unique per campaign and accept, sorted in accept order."""
    return f"{campaign_id}-{seq:012d}{SUFFIX}"


def write_atomically(path: Path, text: str) -> None:
    """`text` at `path`, all or nothing: a hidden temporary name in the same folder, fsync, then rename."""
    # A fresh random name, created exclusively: whoever else writes to the folder cannot have planted a
    # symlink there that would make this runner write through it into one of its own user's files.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the bundle from other users' campaigns
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)  # only left behind when the write or the rename failed
    try:  # the rename itself survives a crash once the folder is synced (not possible everywhere)
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)
    except OSError:
        pass
    finally:
        os.close(folder)


class ShareFolder:
    """One runner's view of a share folder: what it published and which files it has read (this process only;
    what it imported is in the ledger)."""

    def __init__(self, folder: Path, warn: Warn | None = None, scan_every_s: float = SCAN_EVERY_S,
                 trusted: frozenset[str] = frozenset(), signer: CheckpointSigner | None = None) -> None:
        self.folder, self.scan_every_s, self.trusted = folder, scan_every_s, trusted
        self._warn = warn or (lambda _line: None)
        # The runner's key, the one its checkpoints use (pass the campaign's signer: one load, one warning).
        self.signer = signer or CheckpointSigner(warn=self._warn)
        self._warned: set[str] = set()
        self._seen: dict[str, tuple[int, int]] = {}  # file name -> (mtime_ns, size) when it was read
        self._accepts = -1  # accepts in the state at the last publish: -1 so a (re)started runner catches up
        self._decided = -1  # decided hypotheses at the last scan
        self._scanned_at = -math.inf

    def step(self, state: CampaignState, store: EventStore, domain: str, append: Append) -> None:
        """Publish new accepts; then, when a hypothesis was decided or SCAN_EVERY_S passed, import new bundles."""
        self.publish(state, store)
        decided = sum(h.status in ("accepted", "rejected", "patch_rejected") for h in state.hypotheses.values())
        now = time.monotonic()
        if decided == self._decided and now - self._scanned_at < self.scan_every_s:
            return
        self._decided, self._scanned_at = decided, now
        self.scan(state, domain, append)

    # ------------------------------------------------------------------------------------- publish

    def publish(self, state: CampaignState, store: EventStore) -> None:
        """Write each of this campaign's own accepts not yet in the folder (imports went out from their source)."""
        accepts = sum(v.decision == "accept" for v in state.verdicts)
        if accepts == self._accepts:
            return
        self._accepts = accepts
        own = [v for v in state.verdicts if v.decision == "accept"
               and state.hypotheses[v.hypothesis_id].proposer != PROPOSER]
        if not own:
            return
        rows = store.read(state.campaign_id)
        marks = [row for row in rows if row.type == "CheckpointSigned"]
        # This runner is the ledger's only writer and its campaign the newest, so its last event is the head.
        body = bundle_body(rows, (rows[-1].seq, rows[-1].hash), marks[-1] if marks else None, _version())
        for found in body["discoveries"]:
            if found["proposer"] == PROPOSER:
                continue
            path = self.folder / bundle_name(state.campaign_id, found["events"]["VerdictReached"]["seq"])
            if path.exists():
                continue
            try:
                write_atomically(path, bundle_text({**body, "discoveries": [found]}, self.signer.key()))
            except OSError as exc:
                self._once(str(path), f"cannot publish #{found['number']} to {path}: {exc.strerror or exc}; "
                                      "the campaign goes on, and its next accept tries again")

    # ---------------------------------------------------------------------------------------- import

    def scan(self, state: CampaignState, domain: str, append: Append) -> None:
        """Import every bundle in the folder this campaign has not imported, in name order (a source's accepts
        in the order it made them); skip its own, and skip with one warning a file that is not a whole bundle."""
        try:
            entries = sorted(os.scandir(self.folder), key=lambda entry: entry.name)
        except OSError as exc:
            self._once("", f"cannot read the share folder {self.folder}: {exc.strerror or exc}")
            return
        own = f"{state.campaign_id}-"
        for entry in entries:
            name = entry.name
            if not name.endswith(SUFFIX) or name.startswith((".", own)):
                continue
            try:
                stat = entry.stat()
            except OSError:
                continue  # gone since the listing
            mark = (stat.st_mtime_ns, stat.st_size)
            if self._seen.get(name) == mark:
                continue
            self._seen[name] = mark  # a file rewritten later (another size or time) is read again
            bundle = self._read(Path(entry.path))
            if bundle is not None and not _imported(bundle, state):
                self._import(bundle, state, domain, append, Path(entry.path))

    def _read(self, path: Path) -> Bundle | None:
        try:
            bundle = read_bundle(bundle_file_text(path), str(path))
            check_trusted(bundle, self.trusted, path.name)
            return bundle
        except OSError as exc:
            self._once(path.name, f"share folder: skipped {path.name}: {exc.strerror or exc}")
        except LedgerlabError as exc:
            self._once(path.name, f"share folder: skipped {exc}")
        return None

    def _import(self, bundle: Bundle, state: CampaignState, domain: str, append: Append, path: Path) -> None:
        try:
            new, _already = import_events(bundle, state, domain, str(path))
        except LedgerlabError as exc:  # another domain's bundle: this campaign could not test it
            self._once(path.name, f"share folder: skipped {exc}")
            return
        if new:
            append(*new)

    def _once(self, key: str, line: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(line)


def _imported(bundle: Bundle, state: CampaignState) -> bool:
    """Whether this campaign has this bundle already (its content hash is in a DiscoveryImported), or wrote it."""
    if bundle.body.source.campaign_id == state.campaign_id:
        return True
    return any(item.provenance.get("content_hash") == bundle.content_hash for item in state.imports.values())


def _version() -> str:
    from ledgerlab import __version__

    return __version__



def open_share(path: Path, warn: Warn | None = None, trusted: frozenset[str] = frozenset(),
               signer: CheckpointSigner | None = None) -> ShareFolder:
    """The share folder at `path` (made when missing), or a one-line error when this runner cannot use it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerlabError(f"--share {path}: cannot make the share folder: {exc.strerror or exc}") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise LedgerlabError(f"--share {path}: this user cannot read and write that folder")
    return ShareFolder(path.resolve(), warn, trusted=trusted, signer=signer)
