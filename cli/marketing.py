"""`ledgerlab marketing ...`: run the simulated market as a standalone HTTP service.

    ledgerlab marketing serve --port 8765 [--seed 7] [--null]
    python -m ledgerlab.cli.marketing serve --port 8765          # the same, without the main app
"""

from __future__ import annotations

from typing import Annotated

import typer

marketing_app = typer.Typer(
    name="marketing",
    help="The marketing domain's simulated market.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@marketing_app.callback()
def marketing() -> None:
    """The marketing domain's simulated market."""


@marketing_app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    seed: Annotated[int | None, typer.Option(help="Draw a market from this seed (default: canonical).")] = None,
    null: Annotated[bool, typer.Option("--null", help="A/A market: no lever matters.")] = False,
) -> None:
    """Serve the market's JSON API until interrupted (Ctrl-C)."""
    from ledgerlab.domains.marketing.market import Market  # numpy only when serving
    from ledgerlab.domains.marketing.service import MarketServer, MarketService

    server = MarketServer(MarketService(Market.seeded(seed, null=null), seed=seed), host, port)
    typer.echo(f"market listening on {server.url} (seed={seed}, null={null})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("market stopped")


if __name__ == "__main__":
    marketing_app()
