"""An httpx client for the market service, with bounded retries and exponential backoff.

    with MarketClient("http://127.0.0.1:8765") as market:
        experiment_id = market.create_experiment({"control": a, "treatment": b}, visitors=50_000, seed=1)
        market.get_experiment(experiment_id)["arms"]

Pass `transport=httpx.MockTransport(handler)` to test without a server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from ledgerlab.errors import DomainError


class MarketError(DomainError):
    """The market service could not answer (after retries) or answered something unusable."""


class MarketClient:
    """Talks JSON to a market service; transient failures are retried, then raised as MarketError."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.1,
                 max_backoff_s: float = 2.0, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)

    # ------------------------------------------------------------------------------------ API

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def create_experiment(self, arms: Mapping[str, Mapping[str, Any]], visitors: int, seed: int,
                          start_hour: int = 0, split: Mapping[str, float] | None = None,
                          fault: Mapping[str, Any] | None = None) -> str:
        """Start an A/B test; returns its id."""
        body: dict[str, Any] = {"arms": dict(arms), "visitors": visitors, "seed": seed, "start_hour": start_hour}
        if split is not None:
            body["split"] = dict(split)
        if fault:
            body["fault"] = dict(fault)
        # Retrying a POST may create a twin experiment: harmless, an experiment is fixed by its seed.
        answer = self._request("POST", "/experiments", json=body)
        if not isinstance(answer.get("id"), str):
            raise MarketError(f"the market answered without an experiment id: {answer!r}")
        return answer["id"]

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """An experiment's per-arm counts and the traffic window."""
        answer = self._request("GET", f"/experiments/{experiment_id}")
        if not isinstance(answer.get("arms"), dict):
            raise MarketError(f"the market's experiment has no arms: {answer!r}")
        return answer

    def truth(self, variant: Mapping[str, Any]) -> dict[str, float]:
        """Ground truth of a variant (evaluation only)."""
        return self._request("GET", "/truth", params={"variant": json.dumps(dict(variant))})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MarketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One call with retries: timeouts, connection errors, 5xx and malformed JSON are transient."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                last = f"timed out ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
                continue
            if response.status_code >= 500:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            try:
                payload = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                last = f"malformed JSON (HTTP {response.status_code}): {response.text[:200]!r}"
                continue
            if response.status_code >= 400:  # our request is wrong: retrying will not help
                error = payload.get("error") if isinstance(payload, dict) else payload
                raise MarketError(f"{method} {path}: HTTP {response.status_code}: {error}")
            if not isinstance(payload, dict):
                last = f"expected a JSON object, got {type(payload).__name__}"
                continue
            return payload
        raise MarketError(f"{method} {self.base_url}{path} failed after {self.retries + 1} attempts: {last}")
