"""`ledgerlab ui`: serve the read-only dashboard (ledgerlab/ui/) on 127.0.0.1 and print its URL."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from ledgerlab.cli.common import DirOption, user_errors
from ledgerlab.core.project import Project
from ledgerlab.errors import ConfigError

app = typer.Typer()  # joined to the `ledgerlab` command in cli/main.py

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def ui(
    dir: DirOption = None,
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0: any free one).")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but loopback lets other "
                                                     "machines read your ledgers.")] = "127.0.0.1",
) -> None:
    """A live, read-only web dashboard of the campaigns in a folder, in your browser."""
    from ledgerlab.ui import INSTALL, missing

    with user_errors():
        if missing():
            raise ConfigError(f"`ledgerlab ui` needs {', '.join(missing())}: {INSTALL}")
        root = Project.at(dir).root
        if not root.is_dir():
            raise ConfigError(f"no folder {root}")
        sock = _bind(host, port)
    _serve(root, host, sock)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, bound before the URL is printed (so port 0 prints the real port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; try another --port") from None
    sock.listen(64)
    return sock


def _serve(root: Path, host: str, sock: socket.socket) -> None:
    import uvicorn

    from ledgerlab.ui.app import create_app

    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    hosts = None if host in LOOPBACK else ["*"]  # bound elsewhere on purpose: any Host header is the user's
    if hosts:
        typer.echo(f"warning: listening on {host}: anyone who can reach this machine can read these ledgers",
                   err=True)
    typer.echo(f"ledgerlab ui: http://{shown}:{port}/  (read-only, {root}; Ctrl-C stops it)", err=False)
    config = uvicorn.Config(create_app(root, hosts=hosts), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
