"""Prefect flows that only orchestrate tasks (the cycle, bootstrap, stream, simulation).

The cycle flow arrives with its own issue; the pure algorithms it will call are in
``loopwise/`` and usable now.
"""
