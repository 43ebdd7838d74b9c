"""The market as a small JSON service on the stdlib HTTP server.

    python -m ledgerlab.cli.marketing serve --port 8765        # or: ledgerlab marketing serve --port 8765

    GET  /health                      {"status": "ok", "seed": ..., "null": ...}
    POST /experiments                 {"arms": {name: variant}, "visitors": N, "seed": S, "start_hour": H,
                                       "split": {name: weight}, "fault": {"drop": {name: share}}} -> {"id": ...}
    GET  /experiments/{id}            per-arm visitors, conversions, revenue sums (raw and winsorized)
    GET  /truth?variant=<json>        ground truth, for evaluation only: conversion_rate, revenue_per_visitor
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ledgerlab.domains.marketing.market import ExperimentResult, Market
from ledgerlab.errors import InvalidCandidate

MAX_VISITORS = 10_000_000  # one request may not tie the server up for minutes
MAX_KEPT = 10_000  # experiments remembered; the oldest are forgotten first


class BadRequest(Exception):
    """The request cannot be served (the message goes back to the client with status 400)."""


class MarketService:
    """The service's state: one market and the experiments run on it (thread-safe)."""

    def __init__(self, market: Market, seed: int | None = None) -> None:
        self.market = market
        self.seed = seed
        self._experiments: OrderedDict[str, ExperimentResult] = OrderedDict()
        self._lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "seed": self.seed, "null": self.market.truth.null}

    def create(self, body: Any) -> dict[str, Any]:
        """Run the experiment a POST describes (it is fast) and remember its result."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        arms = body.get("arms")
        if not isinstance(arms, dict) or not arms:
            raise BadRequest("'arms' must map arm names to variants")
        visitors = _int(body, "visitors", None)
        if not 1 <= visitors <= MAX_VISITORS:
            raise BadRequest(f"'visitors' must be between 1 and {MAX_VISITORS}")
        fault = body.get("fault") or {}
        drop = fault.get("drop") if isinstance(fault, dict) else None
        if drop is not None and not (isinstance(drop, dict) and set(drop) <= set(arms)
                                     and all(isinstance(s, (int, float)) and 0 <= s < 1 for s in drop.values())):
            raise BadRequest("'fault.drop' must map arm names to shares in [0, 1)")
        try:
            result = self.market.run_experiment(
                arms, visitors=visitors, seed=_int(body, "seed", 0), start_hour=_int(body, "start_hour", 0),
                split=body.get("split"), drop=drop,
            )
        except (InvalidCandidate, ValueError, TypeError, AttributeError) as exc:
            raise BadRequest(str(exc)) from None
        experiment_id = uuid.uuid4().hex
        with self._lock:
            self._experiments[experiment_id] = result
            while len(self._experiments) > MAX_KEPT:
                self._experiments.popitem(last=False)
        return {"id": experiment_id}

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        with self._lock:
            result = self._experiments.get(experiment_id)
        return None if result is None else {"id": experiment_id, **result.to_dict()}

    def truth(self, query: dict[str, list[str]]) -> dict[str, Any]:
        raw = query.get("variant", [None])[0]
        if raw is None:
            raise BadRequest("pass the variant as ?variant=<JSON object of levers>")
        try:
            return self.market.true_effects(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise BadRequest(f"variant is not JSON: {exc}") from None
        except InvalidCandidate as exc:
            raise BadRequest(str(exc)) from None


def _int(body: dict[str, Any], key: str, default: int | None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{key}' must be an integer")
    return value


# ------------------------------------------------------------------------------------------ HTTP


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "ledgerlab-market/1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        url = urlsplit(self.path)
        service = self.server.service
        if url.path == "/health":
            self._send(HTTPStatus.OK, service.health())
        elif url.path == "/truth":
            self._guarded(lambda: service.truth(parse_qs(url.query)))
        elif url.path.startswith("/experiments/"):
            found = service.get(url.path.removeprefix("/experiments/"))
            if found is None:
                self._send(HTTPStatus.NOT_FOUND, {"error": "no such experiment"})
            else:
                self._send(HTTPStatus.OK, found)
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {url.path}"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if urlsplit(self.path).path != "/experiments":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
            return
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": f"the body is not JSON: {exc}"})
            return
        self._guarded(lambda: self.server.service.create(body), status=HTTPStatus.CREATED)

    def _guarded(self, action: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        try:
            payload = action()
        except BadRequest as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001 - a bug answers 500, the server keeps serving
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self._send(status, payload)

    def _send(self, status: HTTPStatus, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # request logs would flood a campaign's output


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: MarketService


class MarketServer:
    """A market service listening on a port, served from a background thread."""

    def __init__(self, service: MarketService, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _Server((host, port), _Handler)
        self._httpd.service = service
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        assert isinstance(host, str)  # an IPv4 server's address: (host, port)
        return f"http://{host}:{port}"

    def start(self) -> MarketServer:
        """Serve in a daemon thread; returns at once."""
        # A short poll interval makes stop() quick (shutdown waits for the loop's next poll).
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="ledgerlab-market",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()


def start_market_server(seed: int | None = None, null: bool = False, host: str = "127.0.0.1",
                        port: int = 0) -> MarketServer:
    """Start a market service in the background (port 0: a free port); stop it with `.stop()`."""
    return MarketServer(MarketService(Market.seeded(seed, null=null), seed=seed), host, port).start()
