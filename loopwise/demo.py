"""``python -m loopwise.demo``: the simulated campaign behind ``make demo``."""

from __future__ import annotations

import sys

from loopwise.cli import app


def main() -> None:
    """Run ``loopwise simulate`` with the demo's defaults, overridable on the command line."""
    app(["simulate", *sys.argv[1:]], prog_name="loopwise")


if __name__ == "__main__":
    main()
