"""`ledgerlab ui`'s web app: read-only pages over the projects in one folder (Starlette, Jinja2, Plotly).

    app = create_app(Path("runs"))    # the folder holds one project, or projects one level down

Pages: `/` (campaigns, and a form to compare two), `/p/{project}/c/{campaign}` (chart, improvement, runs in
flight, budgets, hypotheses), `.../h/{number}` (one hypothesis), `/compare?a=PROJECT/CAMPAIGN&b=...`. Each
page polls its `live` twin every POLL_S seconds: the twin answers 204 while the ledger's head is unchanged,
else the page's parts re-rendered. Every read goes through `ledgerlab.open` (api.py), the path `ledgerlab sql`
takes, so a running campaign answers on its socket and is never blocked.

Safety: GET only, nothing is written; Jinja2 escapes every value (rationales and diffs come from LLMs); a
project in a URL is looked up among the folders found (`data.discover`), never joined to a path, and static
files are a fixed table read at start-up; the Host header must name the address served (no DNS rebinding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ledgerlab.api import Ledger
from ledgerlab.errors import CampaignError, LedgerlabError
from ledgerlab.ui import data

POLL_S = 2.0
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def static_files() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, content type): our own assets, and Plotly's JavaScript from the installed package."""
    files = {name: resources.files("ledgerlab.ui").joinpath("static", name).read_bytes()
             for name in ("app.js", "app.css")}
    files["plotly.min.js"] = resources.files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()
    return {name: (body, STATIC_TYPES[Path(name).suffix]) for name, body in files.items()}


def environment() -> Environment:
    """Jinja2 with autoescape on for every template, and the number filters the pages use."""
    env = Environment(loader=PackageLoader("ledgerlab.ui", "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, interval=interval, duration=duration, short=lambda s: (s or "")[:12],
                       pct=lambda x: "–" if x is None else f"{x:+.1%}", stamp=stamp)
    return env


def num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def interval(pair: Any) -> str:
    low, high = pair if pair else (None, None)
    return f"[{num(low)}, {num(high)}]" if low is not None and high is not None else ""


def duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    if seconds < 10:  # a marketing run takes a fraction of a second
        return f"{max(0.0, seconds):.1f}s"
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def stamp(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else "–"


class Dashboard:
    """The pages, over the projects found in `root` (looked up afresh on each request: new ones appear)."""

    def __init__(self, root: Path, poll_s: float = POLL_S) -> None:
        self.root, self.poll_s = root, poll_s
        self.env = environment()
        self.static = static_files()

    # --- lookups: a URL's names are keys of what was found, never paths

    def projects(self) -> dict[str, Ledger]:
        return data.discover(self.root)

    def lab(self, name: str) -> Ledger:
        lab = self.projects().get(name)
        if lab is None:
            raise CampaignError(f"no project {name!r} in this dashboard")
        return lab

    def pair(self, ref: str) -> tuple[str, str, Ledger]:
        """`PROJECT/CAMPAIGN` from the compare form."""
        name, _, campaign = (ref or "").partition("/")
        if not campaign:
            raise CampaignError("compare takes two campaigns as PROJECT/CAMPAIGN; pick them on the campaigns page")
        return name, campaign, self.lab(name)

    # --- rendering

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        body = self.env.get_template(template).render(poll_ms=int(self.poll_s * 1000), **context)
        return HTMLResponse(body, status_code=status_code)

    def parts(self, template: str, macros: list[str], **context: Any) -> dict[str, str]:
        """Macros of `template` rendered alone, for a live update (the same macros the page itself calls)."""
        module = self.env.get_template(template).make_module()
        out = {}
        for name in macros:
            macro = getattr(module, name)
            out[name.replace("_", "-")] = str(macro(**{k: v for k, v in context.items() if k in macro.arguments}))
        return out

    # --- pages

    def index(self, request: Request) -> Response:
        projects = self.projects()
        return self.render("index.html", rows=data.campaign_rows(projects), seq=data.heads(projects),
                           root=str(self.root), live="/live")

    def index_live(self, request: Request) -> Response:
        projects = self.projects()
        seq = data.heads(projects)
        if request.query_params.get("seq") == seq:
            return Response(status_code=204)
        rows = data.campaign_rows(projects)
        return JSONResponse({"seq": seq, "parts": self.parts("parts.html", ["campaign_table"], rows=rows)})

    def campaign(self, request: Request) -> Response:
        name, cid = request.path_params["project"], request.path_params["campaign"]
        page = data.campaign_page(self.lab(name), cid)
        return self.render("campaign.html", page=page, project=name, base=_base(name, cid),
                           seq=str(page.snap.head_seq), live=_base(name, cid) + "/live")

    def campaign_live(self, request: Request) -> Response:
        name, cid = request.path_params["project"], request.path_params["campaign"]
        lab = self.lab(name)
        if request.query_params.get("seq") == str(lab.head()):
            return Response(status_code=204)
        page = data.campaign_page(lab, cid)
        parts = self.parts("parts.html", ["summary", "running", "budgets", "hypotheses_body"], page=page,
                           base=_base(name, cid))
        return JSONResponse({"seq": str(page.snap.head_seq), "parts": parts, "figures": {"chart": page.figure}})

    def hypothesis(self, request: Request) -> Response:
        name, cid, number = (request.path_params[k] for k in ("project", "campaign", "number"))
        got = data.hypothesis_page(self.lab(name), cid, number)
        return self.render("hypothesis.html", project=name, base=_base(name, cid), seq=str(got["snap"].head_seq),
                           live=f"{_base(name, cid)}/h/{number}/live", **got)

    def hypothesis_live(self, request: Request) -> Response:
        name, cid, number = (request.path_params[k] for k in ("project", "campaign", "number"))
        lab = self.lab(name)
        if request.query_params.get("seq") == str(lab.head()):
            return Response(status_code=204)
        got = data.hypothesis_page(lab, cid, number)
        parts = self.parts("parts.html", ["hypothesis_state"], base=_base(name, cid), **got)
        return JSONResponse({"seq": str(got["snap"].head_seq), "parts": parts})

    def compare(self, request: Request) -> Response:
        sides = self._sides(request)
        return self.render("compare.html", sides=sides, seq=self._compare_seq(sides),
                           live="/compare/live?" + str(request.query_params))

    def compare_live(self, request: Request) -> Response:
        heads = "-".join(str(self.pair(request.query_params.get(key, ""))[2].head()) for key in ("a", "b"))
        if request.query_params.get("seq") == heads:
            return Response(status_code=204)
        sides = self._sides(request)
        seq = self._compare_seq(sides)
        parts = {f"side-{k}": self.parts("parts.html", ["side"], side=s, k=k)["side"] for k, s in enumerate(sides)}
        return JSONResponse({"seq": seq, "parts": parts,
                             "figures": {f"chart-{k}": s["page"].figure for k, s in enumerate(sides)}})

    def _sides(self, request: Request) -> list[dict[str, Any]]:
        sides = []
        for key in ("a", "b"):
            name, cid, lab = self.pair(request.query_params.get(key, ""))
            sides.append({"project": name, "base": _base(name, cid), "page": data.campaign_page(lab, cid)})
        return sides

    @staticmethod
    def _compare_seq(sides: list[dict[str, Any]]) -> str:
        return "-".join(str(s["page"].snap.head_seq) for s in sides)

    def asset(self, request: Request) -> Response:
        found = self.static.get(request.path_params["name"])
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(found[0], media_type=found[1], headers={"Cache-Control": "max-age=3600"})


def _base(project: str, campaign: str) -> str:
    from urllib.parse import quote

    return f"/p/{quote(project, safe='')}/c/{quote(campaign, safe='')}"


def _guard(dash: Dashboard, page: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """A page whose ledgerlab errors become an error page (404: no such campaign; 503: the ledger's trouble)."""

    def handler(request: Request) -> Response:
        try:
            return page(request)
        except LedgerlabError as exc:
            code = 404 if isinstance(exc, CampaignError) else 503
            if request.url.path.endswith("/live"):
                return JSONResponse({"error": str(exc)}, status_code=code)
            return dash.render("error.html", status_code=code, message=str(exc))

    return handler


class _Headers:
    """ASGI middleware: a strict Content-Security-Policy and no sniffing on every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [(b"content-security-policy", CSP.encode()),
                                       (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(root: Path, *, hosts: list[str] | None = None, poll_s: float = POLL_S) -> Starlette:
    """The dashboard over `root`; `hosts`: Host header values accepted (default: loopback names only)."""
    dash = Dashboard(root, poll_s)
    page = lambda fn: _guard(dash, fn)  # noqa: E731
    base = "/p/{project}/c/{campaign}"
    routes = [
        Route("/", page(dash.index)), Route("/live", page(dash.index_live)),
        Route(base, page(dash.campaign)), Route(base + "/live", page(dash.campaign_live)),
        Route(base + "/h/{number:int}", page(dash.hypothesis)),
        Route(base + "/h/{number:int}/live", page(dash.hypothesis_live)),
        Route("/compare", page(dash.compare)), Route("/compare/live", page(dash.compare_live)),
        Route("/static/{name}", dash.asset),
    ]
    allowed = hosts or ["127.0.0.1", "localhost", "[::1]"]
    return Starlette(routes=routes, middleware=[Middleware(_Headers),
                                                Middleware(TrustedHostMiddleware, allowed_hosts=allowed)])
