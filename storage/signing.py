"""The signing key and checkpoint signatures: what turns the ledger's hash chain into evidence.

    key = load_or_create_key()                     # ~/.config/ledgerlab/signing_key, mode 0600, made on first use
    event = key.checkpoint(head.seq, head.hash)    # a CheckpointSigned to append after `head`
    signature_valid(event)                         # its signature matches its own public key and head

Anyone who can write `.ledgerlab/ledger.duckdb` can edit a payload and recompute every later hash with
`events.row_hash`: the chain alone then still verifies. A checkpoint is an Ed25519 signature over the chain
head made with a key kept outside the project folder, so rewriting the events it covers needs that key.
What that does and does not prove is in README.md ("What `ledgerlab verify` proves").
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ledgerlab.errors import SigningKeyError
from ledgerlab.storage.events import CheckpointSigned

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_NAME = "signing_key"
DOMAIN = b"ledgerlab-checkpoint-v1|"  # no signature over a checkpoint is valid for any other message
BUNDLE_DOMAIN = b"ledgerlab-bundle-v1|"  # nor one over a discoveries bundle (core/discoveries.py)


# ------------------------------------------------------------------------------------------ the key


def key_dir() -> Path:
    """Where the key lives: $LEDGERLAB_KEY_DIR, else $XDG_CONFIG_HOME/ledgerlab, else ~/.config/ledgerlab."""
    if chosen := os.environ.get("LEDGERLAB_KEY_DIR"):
        return Path(chosen).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config).expanduser() / "ledgerlab"


def default_key_path() -> Path:
    """The signing key file `load_or_create_key` uses when given no path."""
    return key_dir() / KEY_NAME


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key and the file it came from."""

    private: Ed25519PrivateKey
    path: Path

    @property
    def public_key(self) -> str:
        """The raw 32-byte public key in hex, as checkpoints record it."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def checkpoint(self, head_seq: int, head_hash: str) -> CheckpointSigned:
        """A CheckpointSigned over the chain head (`head_seq`, `head_hash`), to append right after it."""
        signature = self.private.sign(checkpoint_message(head_seq, head_hash)).hex()
        return CheckpointSigned(head_seq=head_seq, head_hash=head_hash, public_key=self.public_key,
                                key_id=self.key_id, signature=signature)

    def sign_bundle(self, content_hash: str) -> dict[str, str]:
        """A discoveries bundle's signature over its content hash: {"public_key", "key_id", "signature"}."""
        signature = self.private.sign(BUNDLE_DOMAIN + content_hash.encode("ascii")).hex()
        return {"public_key": self.public_key, "key_id": self.key_id, "signature": signature}


def load_or_create_key(path: Path | None = None) -> SigningKey:
    """The key at `path` (default: `default_key_path()`), made with mode 0600 if there is none yet."""
    file = path or default_key_path()
    try:
        if not file.exists():
            _create(file)
        return SigningKey(_read_private(file), file)
    except OSError as exc:
        raise SigningKeyError(
            f"cannot create or read the signing key {file}: {exc.strerror or exc}; make its folder writable, "
            "or choose another with LEDGERLAB_KEY_DIR=<folder outside the project>"
        ) from None


def _create(file: Path) -> None:
    """Write a new key where no reader can see it half-written or with loose permissions."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    draft = file.with_name(f".{file.name}.{os.getpid()}.new")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(draft, file)  # atomic, and fails if another process made the key first: theirs is used
    except FileExistsError:
        pass
    finally:
        draft.unlink(missing_ok=True)


def _read_private(file: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    mode = stat.S_IMODE(file.stat().st_mode)
    if mode & 0o077:
        raise SigningKeyError(
            f"the signing key {file} can be read by other users (mode {mode:03o}), so it proves nothing; "
            f"make it private with `chmod 600 {file}` (or delete it to have a new key made)"
        )
    try:
        key = load_pem_private_key(file.read_bytes(), password=None)
    except ValueError as exc:
        raise SigningKeyError(f"{file} is not an unencrypted PEM private key ({exc}); move it away to have a "
                              "new key made") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{file} holds a {type(key).__name__}, not an Ed25519 key; move it away")
    return key


def read_public_key(file: Path) -> str:
    """The raw public key in hex from a key file: our private key file, a PEM public key, or 64 hex digits."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the key file {file}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY" in data:
        return SigningKey(_read_private(file), file).public_key
    if b"PUBLIC KEY" in data:
        try:
            key = load_pem_public_key(data)
        except ValueError as exc:
            raise SigningKeyError(f"{file} is not a readable PEM public key ({exc})") from None
        if isinstance(key, Ed25519PublicKey):
            return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    text = data.decode(errors="replace").strip().lower()
    if _is_public_hex(text):
        return text
    raise SigningKeyError(f"{file} holds no Ed25519 key (a PEM key, or 64 hex digits of a raw public key)")


def _is_public_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def trusted_keys(keys: Iterable[str]) -> frozenset[str]:
    """The public keys given with `--trust`, normalized (SigningKeyError names one that is not a key)."""
    return frozenset(normalize_public_key(key) for key in keys)


def normalize_public_key(text: str) -> str:
    """A public key given on the command line (64 hex digits), lower-cased; SigningKeyError otherwise."""
    key = text.strip().lower()
    if not _is_public_hex(key):
        raise SigningKeyError(f"--trust {text!r}: give the raw Ed25519 public key as 64 hex digits")
    return key


# ------------------------------------------------------------------------------------- signatures


def key_id(public_key: str) -> str:
    """A short name for a public key: the first 16 hex digits of sha256(raw key)."""
    return hashlib.sha256(bytes.fromhex(public_key)).hexdigest()[:16]


def checkpoint_message(head_seq: int, head_hash: str) -> bytes:
    """The bytes a checkpoint signs: a fixed prefix, then `head_seq|head_hash`."""
    return DOMAIN + f"{head_seq}|{head_hash}".encode("ascii")


def signature_valid(event: CheckpointSigned) -> bool:
    """Whether the checkpoint's signature is its public key's over its head (says nothing of trust)."""
    try:
        message = checkpoint_message(event.head_seq, event.head_hash)
    except ValueError:  # a head hash that is not ASCII: no checkpoint ledgerlab wrote
        return False
    return _verifies(event.public_key, event.signature, message) and key_id(event.public_key) == event.key_id


def bundle_signature_valid(signature: object, content_hash: str) -> bool:
    """Whether a bundle's `signature` ({"public_key", "key_id", "signature"}) is its key's over `content_hash`."""
    if not isinstance(signature, dict):
        return False
    public_key, signed = signature.get("public_key"), signature.get("signature")
    if not isinstance(public_key, str) or not isinstance(signed, str):
        return False
    message = BUNDLE_DOMAIN + content_hash.encode("ascii")
    return _verifies(public_key, signed, message) and key_id(public_key) == signature.get("key_id")


def _verifies(public_key: str, signature: str, message: bytes) -> bool:
    """Whether `signature` (hex) is the Ed25519 key `public_key`'s (hex) over `message`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------- for a campaign


class CheckpointSigner:
    """Signs chain heads for a campaign with the key loaded on first use (see `load_or_create_key`).

    A key that cannot be made or read warns once and signs nothing from then on: a campaign never stops,
    nor fills its output with warnings, for want of its signature (`ledgerlab verify` shows what is unsigned).
    """

    def __init__(self, path: Path | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.path, self.warn = path, warn or _to_stderr
        self._key: SigningKey | None = None
        self._tried = False

    def key(self) -> SigningKey | None:
        """The key, loaded once; None when there is none usable. A runner's shared bundles use it too
        (core/sharing.py), so a missing key is one warning for both."""
        if not self._tried:
            self._tried = True
            self._key = usable_key(self.warn, "the ledger's checkpoints (and any bundles it shares) are not "
                                              "signed in this session", self.path)
        return self._key

    def checkpoint(self, head_seq: int, head_hash: str) -> CheckpointSigned | None:
        """A signed checkpoint of the head, or None when there is no usable key."""
        key = self.key()
        return key.checkpoint(head_seq, head_hash) if key is not None else None


def usable_key(warn: Callable[[str], None], unsigned: str, path: Path | None = None) -> SigningKey | None:
    """The key at `path` (default: the local key), or None after one warning: `unsigned` (what goes out
    unsigned), and why."""
    try:
        return load_or_create_key(path)
    except Exception as exc:  # noqa: BLE001 - a missing signature is reported, never fatal
        warn(f"{unsigned}: {exc}")
        return None


def _to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
