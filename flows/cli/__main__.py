"""``python -m flows.cli``: the ``loopwise`` command."""

from flows.cli import app

app(prog_name="loopwise")
