"""Prefect flows that only orchestrate tasks.

- :mod:`flows.cycle` — one step of a campaign: collect, consensus, retrain,
  evaluate, decide, score, select, dispatch, and the next scheduled run;
- :mod:`flows.bootstrap` — the cold start, when nothing is labeled yet.
"""
