"""The ``loopwise`` command line: start a campaign on your own data, watch it, report it.

    loopwise init DATA_FILE        a campaign config and a validation suite from the data
    loopwise run CAMPAIGN          one cycle now, in this process (outside any schedule)
    loopwise deploy CAMPAIGN       register the campaign's Prefect deployment
    loopwise serve CAMPAIGN        the gateway: serve the champion, log every request
    loopwise stream CAMPAIGN       one stream run now (log → labels → triggers)
    loopwise retrain CAMPAIGN      retrain now; the champion gate decides what is served
    loopwise deploy-stream CAMPAIGN  the stream and retrain deployments
    loopwise status CAMPAIGN       cycle, labels, money, metric, open batch, last decision
    loopwise report CAMPAIGN       the HTML report (also logged to MLflow and Prefect)
    loopwise doctor CAMPAIGN       check the store's invariants (--repair: rebuild what can be)
    loopwise annotate CAMPAIGN     simulated annotators answer the open tasks (to try it out)
    loopwise annotators simulate   simulated annotators on any Label Studio project
    loopwise strategies            the query strategies
    loopwise simulate              a simulated campaign on a bundled dataset

Only ``run`` needs Label Studio (its token in the variable the config names); ``status``
reads the campaign's store alone. ``run``, ``report`` and ``deploy`` talk to the Prefect
server of ``PREFECT_API_URL``, else to the local one they start once and then reuse.

One Typer app composed of one module per group: :mod:`flows.cli.init`,
:mod:`flows.cli.run` (``run``, ``deploy``), :mod:`flows.cli.watch` (``status``,
``report``), :mod:`flows.cli.doctor` (``doctor``), :mod:`flows.cli.simulated`
(``annotate``, ``annotators``), and the pure library's commands (:mod:`loopwise.cli`:
``strategies``, ``simulate``).
"""

from __future__ import annotations

import os

import typer

from flows.cli import doctor, init, run, simulated, stream, watch
from loopwise.cli import app as library_app

__all__ = ["app"]

app = typer.Typer(
    help="Loopwise: active learning that spends labels where they buy the most accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _offline() -> None:
    """Loopwise command line."""
    # Nothing phones home from a command (the Makefile sets the same for its targets).
    for key, value in (
        ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
        ("DO_NOT_TRACK", "1"),
        ("GX_ANALYTICS_ENABLED", "false"),
    ):
        os.environ.setdefault(key, value)


# Groups without a name add their commands to this app.
app.add_typer(init.app)
app.add_typer(run.app)
app.add_typer(stream.app)
app.add_typer(watch.app)
app.add_typer(doctor.app)
app.add_typer(simulated.app)
app.add_typer(library_app)
app.add_typer(simulated.annotators_app, name="annotators")
