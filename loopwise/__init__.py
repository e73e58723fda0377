"""Loopwise: active learning in production."""
