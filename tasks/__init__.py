"""Thin Prefect tasks, one module per stage (storage, validate, collect, train, ...).

Each task unpacks config, calls one ``loopwise`` function and does the I/O.
"""
