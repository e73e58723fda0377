"""The model the gateway serves: the campaign's ``champion`` in the MLflow registry, followed
as the alias moves.

A background thread asks the registry every ``reload_seconds`` which version holds the
alias and, when it moved, loads that version and swaps it in with one assignment: a request
sees the old model or the new one, never half of each. While the registry cannot be read
(server down, network cut) the loaded model keeps serving and each failed check logs a
warning; the first check that succeeds again picks up whatever moved meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from loopwise.config import CampaignConfig
from tasks.evaluate import CHAMPION, _client, _quiet, model_name

__all__ = ["ChampionUnavailable", "ChampionWatcher"]

log = logging.getLogger("loopwise.serving")


class ChampionUnavailable(RuntimeError):
    """The registry has no champion to serve (or it cannot be read at start)."""


class ChampionWatcher:
    """The current champion of a campaign, reloaded when the alias moves.

    Loads the champion at construction (:class:`ChampionUnavailable` when there is none or
    the registry cannot be read: a gateway with no model must not start) and starts a
    daemon thread that calls :meth:`check` every ``reload_seconds``.

    ``accept(model, version)`` may refuse a new version (return a reason): the gateway
    refuses one whose inputs differ from those it validates, and keeps serving the old.
    """

    def __init__(
        self,
        cfg: CampaignConfig,
        *,
        reload_seconds: float = 5.0,
        alias: str = CHAMPION,
        accept: Callable[[Any, str], str | None] | None = None,
        start: bool = True,
    ) -> None:
        if not reload_seconds > 0:
            raise ValueError(f"reload_seconds must be positive, got {reload_seconds!r}")
        self.cfg = cfg
        self.name = model_name(cfg)
        self.alias = alias
        self.reload_seconds = float(reload_seconds)
        self._accept = accept
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy = True
        self._refused: str | None = None  # the version last refused, warned about once
        try:
            version = self._alias_version()
            model = self._load(version)
        except Exception as exc:
            raise ChampionUnavailable(
                f"cannot load the {alias!r} version of model {self.name} from the MLflow "
                f"registry ({_quiet(exc)}): has a cycle of campaign {cfg.name} registered one?"
            ) from None
        reason = accept(model, version) if accept else None
        if reason:
            raise ChampionUnavailable(f"{self.name} v{version} cannot be served: {reason}")
        self._current: tuple[Any, str] = (model, version)
        log.info("serving %s v%s (alias %s)", self.name, version, alias)
        if start:
            self._thread = threading.Thread(
                target=self._watch, name=f"champion-{cfg.name}", daemon=True
            )
            self._thread.start()

    def current(self) -> tuple[Any, str]:
        """The model being served and its registry version."""
        return self._current

    def check(self) -> bool:
        """Ask the registry once; swap in the alias's version if it moved. Whether it swapped.

        Never raises: a registry that cannot be read, or a version that cannot be loaded or
        is refused, leaves the served model in place with a warning."""
        old = self._current[1]
        try:
            version = self._alias_version()
            if version == old:
                self._recovered()
                return False
            model = self._load(version)
        except Exception as exc:
            if self._healthy:
                log.warning(
                    "cannot read the %s of %s from MLflow (%s): still serving v%s",
                    self.alias,
                    self.name,
                    _quiet(exc),
                    old,
                )
            self._healthy = False
            return False
        self._recovered()
        reason = self._accept(model, version) if self._accept else None
        if reason:
            if self._refused != version:
                log.warning(
                    "%s v%s holds the %s alias but cannot be served (%s): still serving v%s",
                    self.name,
                    version,
                    self.alias,
                    reason,
                    old,
                )
            self._refused = version
            return False
        self._current = (model, version)  # one assignment: readers see old or new
        log.warning("%s: the %s moved, v%s → v%s", self.name, self.alias, old, version)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the watching thread (the loaded model stays usable)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.reload_seconds):
            self.check()

    def _recovered(self) -> None:
        if not self._healthy:
            log.warning("MLflow answers again: %s v%s", self.name, self._current[1])
        self._healthy = True

    def _alias_version(self) -> str:
        _, client = _client(self.cfg)
        return str(client.get_model_version_by_alias(self.name, self.alias).version)

    def _load(self, version: str) -> Any:
        # By number, not by alias: the alias may move again between the two calls.
        mlflow, _ = _client(self.cfg)
        return mlflow.sklearn.load_model(f"models:/{self.name}/{version}")
