"""Serving the campaign's champion in production: the HTTP gateway (:mod:`serving.gateway`)
and the champion it follows in the MLflow registry (:mod:`serving.champion`).

Run one with ``python -m serving CAMPAIGN.yaml [--host 127.0.0.1] [--port 8000]``.
"""
