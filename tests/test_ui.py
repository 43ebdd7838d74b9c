"""`ledgerlab ui` without a browser: pages, live twins, escaping, lookups that never reach the filesystem, the CLI.

tests/test_ui_browser.py loads the same pages in headless Chromium.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_campaign import C4, C5, Stream, build_project, campaign_events
from typer.testing import CliRunner

pytest.importorskip("starlette", reason="the dashboard's `ui` extra is not installed: pip install -e '.[ui]'")
from starlette.testclient import TestClient  # noqa: E402

from ledgerlab.cli.main import app as cli  # noqa: E402
from ledgerlab.core.patches import make_diff  # noqa: E402
from ledgerlab.ui.app import create_app  # noqa: E402

CAMPAIGN = "c0ffee-campaign"
EVIL = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> & "quotes"'


def evil_events() -> list:
    """The realistic campaign of test_cli_campaign plus #6, whose rationale and diff hold markup."""
    s = Stream()
    s.hypothesis("e-h6", C4, C5, EVIL, diff=make_diff(C4, C5) + "+</pre><script>window.__xss = 3</script>\n")
    return campaign_events() + s.events


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two projects: `evil` (the campaign above) and `plain` (the same without #6)."""
    folder = tmp_path_factory.mktemp("ui")
    build_project(folder / "evil", evil_events())
    build_project(folder / "plain")
    (folder / "not-a-project").mkdir()
    (folder / "broken" / ".ledgerlab").mkdir(parents=True)
    (folder / "broken" / ".ledgerlab" / "ledger.duckdb").write_text("not a database")
    return folder


@pytest.fixture(scope="module")
def client(root: Path) -> TestClient:
    return TestClient(create_app(root, hosts=["testserver"]))


def test_index_lists_every_campaign(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.text.count(f"/c/{CAMPAIGN}") == 2 and "/p/evil/" in page.text and "/p/plain/" in page.text
    assert "not-a-project" not in page.text
    assert re.search(r"<td[^>]*>broken</td><td[^>]*>cannot read this ledger: ", page.text)  # the others still show
    assert 'id="compare-form"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self'")


def test_campaign_page(client: TestClient) -> None:
    page = client.get(f"/p/plain/c/{CAMPAIGN}")
    assert page.status_code == 200, page.text
    text = page.text
    assert '<span id="n-hypotheses">5</span>' in text and '<span id="n-accepted">2</span>' in text
    assert "paired t" in text  # the improvement says how it was measured
    figure = json.loads(re.search(r'class="figure" data-target="chart">(.*?)</script>', text, re.S).group(1))
    points = sum(len(t["x"]) for t in figure["data"] if t["mode"] == "markers")
    assert points == 16 and {a["text"] for a in figure["layout"]["annotations"]} == {"#1", "#4"}
    assert "/static/plotly.min.js" in text and "cdn" not in text.lower()
    for number in range(1, 6):
        assert f'href="/p/plain/c/{CAMPAIGN}/h/{number}"' in text
    # No runner holds the folder: the ledger's "running" campaign stopped, its run in flight is interrupted.
    assert "stopped unexpectedly" in text and "interrupted: <code>ledgerlab resume</code>" in text
    assert re.search(r'id="running-runs">.*<td>#5</td>', text, re.S)


def test_campaign_page_of_a_finished_campaign_says_what_will_stay_unmeasured(tmp_path: Path) -> None:
    from test_cli_campaign import H4

    from ledgerlab.storage import events as ev

    events = campaign_events()
    cut = 1 + next(i for i, e in enumerate(events) if isinstance(e, ev.IncumbentChanged) and e.hypothesis_id == H4)
    build_project(tmp_path / "ended", [*events[:cut], ev.CampaignFinished(reason="time_limit")])
    page = TestClient(create_app(tmp_path, hosts=["testserver"])).get(f"/p/ended/c/{CAMPAIGN}")
    assert page.status_code == 200, page.text
    improvement = re.search(r'id="improvement">(.*?)</td>', page.text, re.S)
    assert improvement is not None
    words = " ".join(improvement.group(1).split())
    assert words == "not measured (the campaign finished before the incumbent ran again after its selection)"
    assert "not confirmed: the campaign finished before its fresh runs" in page.text  # #4, accepted last
    fourth = TestClient(create_app(tmp_path, hosts=["testserver"])).get(f"/p/ended/c/{CAMPAIGN}/h/4")
    assert fourth.status_code == 200 and "not confirmed: the campaign finished before its fresh runs" in fourth.text


def test_hypothesis_pages(client: TestClient) -> None:
    accepted = client.get(f"/p/plain/c/{CAMPAIGN}/h/1").text
    for words in ("double the learning rate", "paired-t", "α spent", "0.01", "confirmed", 'class="add"'):
        assert words in accepted
    rejected = client.get(f"/p/plain/c/{CAMPAIGN}/h/2").text
    assert "patch does not apply" in rejected and "none: the patch was rejected" in rejected


def test_every_ledger_string_is_escaped(client: TestClient) -> None:
    """A rationale or diff holding markup shows as text on every page and in every live update."""
    base = f"/p/evil/c/{CAMPAIGN}"
    bodies = {url: client.get(url).text for url in ("/", base, base + "/h/6", f"/compare?a=evil/{CAMPAIGN}&b=plain/{CAMPAIGN}")}
    bodies[base + "/live"] = json.dumps(client.get(base + "/live?seq=0").json())
    bodies[base + "/h/6/live"] = json.dumps(client.get(base + "/h/6/live?seq=0").json())
    for url, body in bodies.items():
        assert "<script>window.__xss" not in body and "onerror=\"window" not in body, url
        assert "</pre><script>" not in body, url
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in bodies[base]  # the table, as text
    assert "&lt;/pre&gt;&lt;script&gt;window.__xss = 3" in bodies[base + "/h/6"]  # the diff, as text
    assert re.findall(r"<script[^>]*>", bodies[base]) == [
        '<script type="application/json" class="figure" data-target="chart">',
        '<script src="/static/plotly.min.js">', '<script src="/static/app.js">']


def test_live_twins_answer_204_until_the_ledger_moves(client: TestClient, root: Path) -> None:
    base = f"/p/plain/c/{CAMPAIGN}"
    first = client.get(base + "/live?seq=0").json()
    assert set(first["parts"]) == {"summary", "running", "budgets", "hypotheses-body"} and "chart" in first["figures"]
    assert client.get(base + f"/live?seq={first['seq']}").status_code == 204
    assert client.get(base + "/h/1/live?seq=" + first["seq"]).status_code == 204
    index = client.get("/live?seq=").json()
    assert client.get("/live?seq=" + index["seq"]).status_code == 204
    pair = f"/compare/live?a=plain/{CAMPAIGN}&b=evil/{CAMPAIGN}&seq="
    both = client.get(pair).json()
    assert both["figures"].keys() == {"chart-0", "chart-1"} and both["parts"].keys() == {"side-0", "side-1"}
    assert client.get(pair + both["seq"]).status_code == 204


@pytest.mark.parametrize("url", [
    "/p/nope/c/x", f"/p/plain/c/{CAMPAIGN}x", f"/p/plain/c/{CAMPAIGN}/h/99", "/p/../c/x", "/p/%2e%2e/c/x",
    "/p/not-a-project/c/x", "/static/../../../etc/passwd", "/static/app.py", "/static/%2e%2e%2fapp.py",
    "/compare?a=plain/x&b=../../etc", "/compare?a=/etc/passwd&b=plain",
])
def test_unknown_names_are_not_found_and_never_paths(client: TestClient, url: str) -> None:
    got = client.get(url)
    assert got.status_code == 404, (url, got.status_code)
    assert "root:" not in got.text and "import" not in got.text


def test_read_only_and_loopback_only(client: TestClient) -> None:
    assert client.post("/").status_code == 405
    assert client.post(f"/p/plain/c/{CAMPAIGN}/live").status_code == 405
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    assert client.get("/static/plotly.min.js").headers["content-type"].startswith("text/javascript")


def test_cli_without_the_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setattr("ledgerlab.ui.missing", lambda: ["plotly"])
    result = CliRunner().invoke(cli, ["ui", "--dir", str(root)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "pip install" in result.output and "[ui]" in result.output


def test_cli_port_in_use_is_one_line(root: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = CliRunner().invoke(cli, ["ui", "--dir", str(root), "--port", str(taken.getsockname()[1])])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "cannot listen on 127.0.0.1:" in result.output and "--port" in result.output


def test_help_imports_no_dashboard_dependency() -> None:
    code = ("import sys; from typer.testing import CliRunner; from ledgerlab.cli.main import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0 and ' ui ' in r.output, r.output; "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2', 'plotly', 'sqlmodel', 'torch', 'litellm') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
