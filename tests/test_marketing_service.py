"""The market's HTTP service and its client over real loopback connections, including servers that misbehave."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from ledgerlab.domains.marketing.client import MarketClient, MarketError
from ledgerlab.domains.marketing.market import Market
from ledgerlab.domains.marketing.service import MarketServer, start_market_server
from ledgerlab.domains.marketing.variant import template_variant

BASE = template_variant().to_dict()
CHEAPER = {**BASE, "price": 35.0, "free_shipping": True}


@pytest.fixture(scope="module")
def server() -> Iterator[MarketServer]:
    market = start_market_server()
    yield market
    market.stop()


@pytest.fixture
def client(server: MarketServer) -> Iterator[MarketClient]:
    with MarketClient(server.url, timeout_s=5, retries=0) as c:
        yield c


# ------------------------------------------------------------------------------------------ the service


def test_health(client: MarketClient) -> None:
    assert client.health() == {"status": "ok", "seed": None, "null": False}


def test_experiment_round_trip_matches_the_in_process_market(client: MarketClient) -> None:
    arms = {"control": BASE, "treatment": CHEAPER}
    experiment_id = client.create_experiment(arms, visitors=30_000, seed=9, start_hour=12)
    answer = client.get_experiment(experiment_id)
    local = Market.canonical().run_experiment(arms, visitors=30_000, seed=9, start_hour=12)
    assert answer["arms"] == {name: vars(stats) for name, stats in local.arms.items()}
    assert answer["split"] == {"control": 0.5, "treatment": 0.5}
    assert set(answer["arms"]["control"]) == {"visitors", "conversions", "revenue_sum", "revenue_sumsq",
                                              "revenue_wsum", "revenue_wsumsq"}
    assert answer["winsor_cap"] > 0 and answer["hours"] >= 1


def test_truth_endpoint(client: MarketClient) -> None:
    assert client.truth(BASE) == pytest.approx(Market.canonical().true_effects(BASE))
    assert client.truth(CHEAPER)["conversion_rate"] > client.truth(BASE)["conversion_rate"]


def test_sample_ratio_fault(client: MarketClient) -> None:
    experiment_id = client.create_experiment({"a": BASE, "b": BASE}, visitors=20_000, seed=1,
                                             fault={"drop": {"b": 0.2}})
    arms = client.get_experiment(experiment_id)["arms"]
    assert arms["b"]["visitors"] < 0.85 * arms["a"]["visitors"]


@pytest.mark.parametrize(("body", "message"), [
    ({"arms": {"a": {**BASE, "price": 1000}}, "visitors": 10, "seed": 1}, "outside"),
    ({"arms": {"a": {**BASE, "bogus": 1}}, "visitors": 10, "seed": 1}, "unknown key"),
    ({"arms": {}, "visitors": 10, "seed": 1}, "arms"),
    ({"arms": {"a": BASE}, "visitors": 0, "seed": 1}, "visitors"),
    ({"arms": {"a": BASE}, "visitors": "many", "seed": 1}, "visitors"),
    ({"arms": {"a": BASE}, "visitors": 10, "seed": 1, "split": {"b": 1}}, "split"),
    ({"arms": {"a": BASE}, "visitors": 10, "seed": 1, "fault": {"drop": {"a": 2}}}, "fault"),
])
def test_bad_requests_answer_400_and_are_not_retried(server: MarketServer, body: dict, message: str) -> None:
    response = httpx.post(f"{server.url}/experiments", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    sleeps: list[float] = []
    with MarketClient(server.url, retries=3, sleep=sleeps.append) as c, pytest.raises(MarketError, match="400"):
        c._request("POST", "/experiments", json=body)
    assert sleeps == []


def test_unknown_routes_and_experiments_answer_404(server: MarketServer) -> None:
    assert httpx.get(f"{server.url}/experiments/nope").status_code == 404
    assert httpx.get(f"{server.url}/nowhere").status_code == 404
    assert httpx.get(f"{server.url}/truth").status_code == 400
    assert httpx.post(f"{server.url}/experiments", content=b"{not json").status_code == 400


# ------------------------------------------------------------------------------------------ faults


class _Fault(BaseHTTPRequestHandler):
    behave: Callable[[_Fault], None]
    hits: list[str]

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        type(self).behave(self)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def _answer(status: int, body: bytes) -> Callable[[_Fault], None]:
    def behave(handler: _Fault) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return behave


@pytest.fixture
def fault_server() -> Iterator[Callable[[Callable[[_Fault], None]], tuple[str, list[str]]]]:
    """Starts a tiny stdlib server with a given behaviour; returns its URL and the paths it was asked for."""
    started: list[ThreadingHTTPServer] = []
    release = threading.Event()

    def start(behave: Callable[[_Fault], None]) -> tuple[str, list[str]]:
        hits: list[str] = []
        handler = type("Handler", (_Fault,), {"behave": staticmethod(behave), "hits": hits, "release": release})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", hits

    yield start
    release.set()
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def test_5xx_is_retried_with_exponential_backoff_then_raised(fault_server) -> None:
    url, hits = fault_server(_answer(500, b'{"error": "boom"}'))
    sleeps: list[float] = []
    with MarketClient(url, retries=4, backoff_s=0.1, max_backoff_s=0.5, sleep=sleeps.append) as c:
        with pytest.raises(MarketError, match="after 5 attempts: HTTP 500"):
            c.health()
    assert len(hits) == 5
    assert sleeps == [0.1, 0.2, 0.4, 0.5]  # doubling, capped


def test_real_backoff_delays_are_slept(fault_server) -> None:
    url, hits = fault_server(_answer(503, b"unavailable"))
    start = time.monotonic()
    with MarketClient(url, retries=2, backoff_s=0.05) as c, pytest.raises(MarketError):
        c.health()
    assert time.monotonic() - start >= 0.15 and len(hits) == 3


def test_a_hanging_server_times_out(fault_server) -> None:
    url, hits = fault_server(lambda handler: handler.release.wait(10))
    with MarketClient(url, timeout_s=0.2, retries=1, backoff_s=0.01) as c:
        with pytest.raises(MarketError, match="timed out"):  # the server would hang for 10 s
            c.health()
    assert len(hits) == 2


def test_garbage_is_retried_then_raised(fault_server) -> None:
    url, hits = fault_server(_answer(200, b"\x00<html>not json"))
    with MarketClient(url, retries=2, sleep=lambda s: None) as c, pytest.raises(MarketError, match="malformed JSON"):
        c.health()
    assert len(hits) == 3


def test_a_transient_failure_recovers(fault_server) -> None:
    answers = iter([_answer(502, b"bad gateway"), _answer(200, b"[1, 2"), _answer(200, b'{"status": "ok"}')])
    url, hits = fault_server(lambda handler: next(answers)(handler))
    with MarketClient(url, retries=3, sleep=lambda s: None) as c:
        assert c.health() == {"status": "ok"}
    assert len(hits) == 3


def test_connection_refused_is_a_market_error() -> None:
    with MarketClient("http://127.0.0.1:9", retries=1, sleep=lambda s: None) as c, pytest.raises(MarketError):
        c.health()


def test_client_takes_a_mock_transport() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(201, json={"id": "abc"})
        return httpx.Response(200, json={"id": "abc", "arms": {}})

    with MarketClient("http://market", transport=httpx.MockTransport(handler)) as c:
        assert c.create_experiment({"a": BASE}, visitors=10, seed=1) == "abc"
        assert c.get_experiment("abc")["arms"] == {}
    assert seen == ["POST /experiments", "GET /experiments/abc"]
