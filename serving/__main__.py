"""``python -m serving CAMPAIGN.yaml [--host H] [--port P]``: run the campaign's gateway."""

from __future__ import annotations

import argparse

from serving.gateway import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("campaign", help="the campaign file (YAML)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    serve(args.campaign, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
