"""The development stack: local servers for the demo and the tests (Label Studio, Prefect,
MLflow), the demo driver and simulated annotators.

Nothing on a cycle's path (``flows/cycle.py``, ``flows/stages``, ``tasks/``, ``storage/``)
imports it. The ``loopwise`` command imports it lazily, only for what is local by nature:
the one local Prefect server a command starts when no Prefect API is configured, and the
simulated annotators of ``loopwise annotate``.
"""
