"""The local socket a running campaign answers read-only queries on: where it is, and its JSON lines.

    <ledger>.sock                   # e.g. .ledgerlab/ledger.duckdb.sock, a Unix socket, mode 0600

One request per line, {"op": "query", "sql": ..., "params": ..., "timeout_s": ...}, {"op": "snapshot",
"out": ...} or {"op": "ping"}; the answer to a query is a header line {"ok": true, "columns": [[name, type],
...]}, then lines {"rows": [...]} and a closing {"end": true}, or one line {"ok": false, "error": ..., "kind":
...}. Values that JSON has no type for travel as text (timestamps in ISO 8601, decimals, UUIDs) or base64
(blobs) and are turned back by their column's type, so a caller gets what a DuckDB cursor would give it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

MAX_LINE = 1 << 20  # a request line (SQL text and parameters) longer than this is refused
_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS


def socket_path(ledger_path: Path) -> Path:
    """The socket a campaign writing `ledger_path` listens on."""
    return ledger_path.with_name(ledger_path.name + ".sock")


def supported() -> bool:
    """Whether this system has Unix sockets (Windows' Python does not: readers open the file there)."""
    return hasattr(socket, "AF_UNIX")


@contextmanager
def address(path: Path) -> Iterator[str]:
    """A name to bind or connect `path` by: itself, or through /proc/self/fd when it is too long for a socket."""
    if len(os.fsencode(path)) < _SUN_PATH_MAX or not os.path.isdir("/proc/self/fd"):
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ lines


def dumps(message: dict[str, Any]) -> bytes:
    """One message as a JSON line; values JSON cannot hold become text."""
    try:
        text = json.dumps(message, default=_to_json, separators=(",", ":"))
    except (TypeError, ValueError):  # e.g. a MAP with keys JSON objects cannot have
        text = json.dumps(_plain(message), default=_to_json, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def loads(line: bytes) -> dict[str, Any]:
    """One message from a JSON line (ValueError if it is not a JSON object)."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message is a JSON object")
    return message


def _to_json(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)  # Decimal, UUID, anything else: its text


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------- values back, by column type


def _time_zone(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "TIMESTAMP": dt.datetime.fromisoformat,
    "TIMESTAMP_NS": dt.datetime.fromisoformat,
    "TIMESTAMP_MS": dt.datetime.fromisoformat,
    "TIMESTAMP_S": dt.datetime.fromisoformat,
    "TIMESTAMP WITH TIME ZONE": _time_zone,
    "DATE": dt.date.fromisoformat,
    "TIME": dt.time.fromisoformat,
    "UUID": UUID,
    "BLOB": base64.b64decode,
    "INTERVAL": lambda seconds: dt.timedelta(seconds=seconds),
}


def decoder(type_name: str) -> Callable[[Any], Any] | None:
    """How to turn a value of this DuckDB column type back from JSON (None: as JSON gives it)."""
    if type_name.startswith("DECIMAL"):
        return Decimal
    return _DECODERS.get(type_name)


def decode_rows(types: list[str], rows: list[list[Any]]) -> list[tuple[Any, ...]]:
    """Rows as tuples, each value of a typed column turned back (NULL stays None)."""
    fns = [decoder(t) for t in types]
    if not any(fns):
        return [tuple(row) for row in rows]
    return [tuple(v if f is None or v is None else f(v) for f, v in zip(fns, row)) for row in rows]
