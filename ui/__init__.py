"""`ledgerlab ui`: a read-only web dashboard over campaigns' ledgers (ui/app.py), from the optional `ui` extra.

Its dependencies (Starlette, Jinja2, uvicorn, Plotly) are imported only by `ledgerlab ui` itself: `MISSING`
names what is not installed, so the command can say how to get it in one line.
"""

from __future__ import annotations

from importlib.util import find_spec

REQUIRES = ("starlette", "jinja2", "uvicorn", "plotly")
INSTALL = "pip install 'ledgerlab[ui]' (from a checkout: pip install -e '.[ui]')"


def missing() -> list[str]:
    """The dashboard's packages that are not installed."""
    return [name for name in REQUIRES if find_spec(name) is None]
