"""Exceptions raised by the Loopwise library."""

from __future__ import annotations

__all__ = ["EmptyPoolError", "LoopwiseError", "NotEnoughLabelsError"]


class LoopwiseError(Exception):
    """Base class of every error Loopwise raises on purpose."""


class EmptyPoolError(LoopwiseError, ValueError):
    """A query was made on a pool that holds no candidate."""


class NotEnoughLabelsError(LoopwiseError, ValueError):
    """A strategy needs labeled data (or more classes) than it was given."""
