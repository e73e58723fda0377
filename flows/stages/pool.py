"""A partitioned pool in the cycle: what a run keeps of it (holdout, the rows of items already
sent, draws and counts, never the pool), and the batch chosen from the partitions' best
candidates. The partitions are checked and scored by :mod:`flows.pool`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopwise.batch import BatchPlan, batch_records
from loopwise.config import CampaignConfig
from loopwise.features import is_vector_column, model_inputs
from loopwise.partitions import (
    DEFAULT_HOLDOUT_ROWS,
    eval_cut,
    merge_candidates,
    score_cut,
    short_of,
    smallest,
    valid_share,
)
from loopwise.scoring import select_from_candidates, shortlist_size, strategy_for
from loopwise.strategies._base import ScoreStrategy
from storage.campaign import STOP_SET
from storage.partitions import PartitionRef, csv_chunks, pool_partitions
from storage.store import Store, quarantine_key
from tasks.partitions import CheckRequest, numeric_features

__all__ = ["PartitionedData", "compose_partitioned", "load_partitioned"]

log = logging.getLogger("loopwise.pool")

#: The check's own records: the evaluated holdout's hash cut, fixed at the first check.
EVAL_CUT = "pool/eval_cut.json"
#: Undispatched rows drawn at random for the drift check and the cold start (about).
SAMPLE_ROWS = 20_000
#: A partition returns at most this many times its share of the candidates kept.
CANDIDATE_SLACK = 3
_HELPER_COLUMNS = ["_key", "score", "_pos", "_part", "_row"]


@dataclass
class PartitionedData:
    """What a run holds of a partitioned pool: the evaluated holdout, the rows of the items
    already sent (and of the stop set), a uniform sample of the undispatched rows, the stop
    draw and every partition's counts."""

    refs: list[PartitionRef]
    holdout: pd.DataFrame
    known: pd.DataFrame
    sample: pd.DataFrame
    stop_ids: list[str]
    facts: list[dict[str, Any]]
    quarantined: int
    partitioned: bool = field(default=True, init=False)

    @property
    def n_pool(self) -> int:
        return sum(int(f.get("pool") or 0) for f in self.facts)

    def sent_rows(self) -> pd.DataFrame:
        """The current rows of the items sent to annotators (and of the stop set)."""
        return self.known

    def n_undispatched(self, dispatched: list[str]) -> int:
        return sum(int(f.get("undispatched") or 0) for f in self.facts)

    def sample_rows(self, cfg: CampaignConfig) -> pd.DataFrame:
        """The sample as a small pool of its own: numeric features, vectors as lists."""
        rows = numeric_features(cfg, self.drift_rows([]), where=cfg.data.source)
        return _plain(rows).reset_index(drop=True)

    def drift_rows(self, dispatched: list[str]) -> pd.DataFrame:
        """A uniform sample of the undispatched pool rows."""
        return self.sample[~self.sample["item_id"].isin(set(dispatched))].drop(columns="_key")

    def inputs(
        self, cfg: CampaignConfig, snapshot: pd.DataFrame, *, with_pool: bool = True
    ) -> list[Any]:
        """The model inputs of the labeled snapshot and the holdout; never of the pool
        (None), which is scored partition by partition."""
        X_lab, X_hold = model_inputs(cfg, *self._numeric(cfg, snapshot, self.holdout))
        return [X_lab, X_hold, None]

    def stop_inputs(
        self, cfg: CampaignConfig, snapshot: pd.DataFrame, X_pool: Any, ids: list[str]
    ) -> Any:
        """The model inputs of the stop set's rows (fetched by the check), by item id."""
        rows = self.known[self.known["item_id"].isin(set(ids))]
        rows = rows.drop_duplicates("item_id").sort_values("item_id", kind="stable")
        return model_inputs(cfg, *self._numeric(cfg, snapshot, rows))[1]

    def _numeric(self, cfg: CampaignConfig, *frames: pd.DataFrame) -> list[pd.DataFrame]:
        return [numeric_features(cfg, f, where=cfg.data.source) for f in frames]

    def choose_stop(self, n: int, seed: int) -> list[str]:
        """The stop set, drawn by the first check (the ``stop_set_size`` pool rows with the
        smallest draw keys: a uniform sample of the pool)."""
        return self.stop_ids


def _partitions(cfg: CampaignConfig, store: Store, cycle: int | None) -> list[PartitionRef]:
    """The pool's partitions, a single-file source converted first (its unreadable lines
    quarantined under the source's name)."""
    d = cfg.data
    src = d.source
    single = not d.source_is_folder
    bad: list[dict[str, Any]] = []
    refs = pool_partitions(
        src,
        store,
        single_file=single,
        rows_per_partition=d.partition_rows,
        read_chunks=lambda s, offset: csv_chunks(
            s,
            offset,
            rows=d.partition_rows,
            encoding=d.encoding,
            string_columns=[d.label_column] if d.label_column else [],
            bad_lines=bad,
        ),
    )
    if bad:
        seen = {r.get("reason") for r in store.read_jsonl(quarantine_key(src))}
        fresh = [b for b in bad if b["reason"] not in seen]
        if fresh:
            log.warning("%s: %d broken line(s) quarantined", src, len(fresh))
            frame = pd.DataFrame({"source": [b["source"] for b in fresh]})
            store.quarantine(src, frame, [b["reason"] for b in fresh], cycle=cycle)
    return refs


def load_partitioned(
    cfg: CampaignConfig, store: Store, dispatched: list[str], cycle: int | None
) -> PartitionedData:
    """Check every partition (validation once per content) and keep what the run needs;
    ``ValidationFailed`` when fewer than ``data.min_valid_fraction`` of the rows pass."""
    from flows.pool import map_partitions
    from tasks.validate import ValidationFailed

    refs = _partitions(cfg, store, cycle)
    stop = store.read_json(STOP_SET)
    seen = store.read_json(EVAL_CUT) or {}
    cut = seen.get("cut")
    ask = CheckRequest(
        dispatched=frozenset(dispatched),
        stop_ids=frozenset(stop or []),
        eval_cut=cut,
        stop_size=0 if stop is not None else cfg.stop_set_size,
        sample_below=_sample_below(seen.get("rows")),
        cycle=cycle,
    )
    results = map_partitions(cfg, "check", store, refs, ask)
    facts = [r["facts"] for r in results]
    share, valid, rows = valid_share(facts)
    checked = sum(bool(f.get("validated")) for f in facts)
    print(
        f"pool: {len(refs)} partition(s), {rows} rows, {valid} valid; "
        f"{checked} validated now, {len(refs) - checked} unchanged (cached)"
    )
    if share < cfg.data.min_valid_fraction:
        worst = sorted(facts, key=lambda f: (f.get("rows") is not None, f.get("valid", 0)))[:3]
        raise ValidationFailed(
            f"{cfg.data.source}: only {share:.1%} of {rows} rows pass validation (minimum "
            f"{cfg.data.min_valid_fraction:.1%}); worst partitions: "
            + "; ".join(f"{f['partition']} ({f.get('error') or f.get('valid')})" for f in worst),
            {"rows": rows, "valid": valid, "partitions": facts},
        )
    if cut is None or stop is None:
        # The first check: fix the evaluated holdout's size and the stop set (the pool
        # rows with the smallest draw keys), then fetch their rows.
        if cut is None:
            n_hold = sum(int(f.get("holdout") or 0) for f in facts)
            h = cfg.data.holdout
            cut = eval_cut(h.fraction, n_hold, h.max_rows or DEFAULT_HOLDOUT_ROWS)
            store.write_json(EVAL_CUT, {"cut": cut, "holdout_rows": n_hold, "rows": rows})
        if stop is None:
            draw = _concat([r.get("stop") for r in results]).drop_duplicates("item_id")
            pick = smallest(draw["key"].to_numpy(dtype=np.uint64), cfg.stop_set_size)
            stop = sorted(draw["item_id"].to_numpy()[pick].tolist())
            store.write_json(STOP_SET, stop)
        again = CheckRequest(
            **{
                **ask.__dict__,
                "eval_cut": cut,
                "stop_ids": frozenset(stop),
                "sample_below": _sample_below(rows),
            }
        )
        results = map_partitions(cfg, "check", store, refs, again)
    elif abs(rows - int(seen.get("rows") or 0)) > 0.1 * rows:  # the sample's size follows
        store.write_json(EVAL_CUT, {**seen, "rows": rows})
    holdout = _concat([r.get("holdout") for r in results])
    if cfg.data.holdout.source is not None:
        from tasks.data import read_holdout

        holdout = read_holdout(cfg)
        label = cfg.data.label_column
        holdout = holdout[holdout[label].astype(str).isin(set(cfg.labels))]
    return PartitionedData(
        refs=refs,
        holdout=holdout,
        known=_concat([r.get("known") for r in results]).drop_duplicates("item_id"),
        sample=_concat([r.get("sample") for r in results]),
        stop_ids=stop,
        facts=facts,
        quarantined=rows - valid,
    )


def _sample_below(rows: int | None) -> int:
    """The draw key under which about ``SAMPLE_ROWS`` of ``rows`` fall (none when the pool's
    size is not known yet: the first check fetches it in its second pass)."""
    if not rows:
        return 0
    return min(2**64 - 1, int(2**64 * min(1.0, SAMPLE_ROWS / rows)))


def _concat(frames: list[pd.DataFrame | None]) -> pd.DataFrame:
    have = [f for f in frames if f is not None and len(f)]
    if not have:
        cols = next((list(f.columns) for f in frames if f is not None), ["item_id"])
        return pd.DataFrame(columns=cols)
    return pd.concat(have, ignore_index=True)


def compose_partitioned(
    cfg: CampaignConfig,
    store: Store,
    data: PartitionedData,
    plan: BatchPlan,
    model: Any,
    labeled: tuple[Any, Any] | None,
    dispatched: list[str],
    seed: int,
) -> list[dict[str, Any]]:
    """The batch from the partitions' best candidates: the strategy's picks among them
    (its diversity on their union), then the control share, the undispatched rows with
    the smallest draw keys (a uniform sample of the pool, not of the candidates)."""
    from flows.pool import map_partitions

    strategy = strategy_for(plan.strategy, plan.params, seed)
    keep = shortlist_size(plan.n_picked, isinstance(strategy, ScoreStrategy))
    # A partition sends at most CANDIDATE_SLACK times its share of the shortlist (all of it
    # when the pool has few partitions); one that held more of it is asked again.
    cap = max(plan.n_picked, -(-CANDIDATE_SLACK * keep // max(len(data.refs), 1)))
    cap = min(cap, keep)
    scoring = {
        "n": plan.n_picked,
        "strategy": plan.strategy,
        "params": plan.params,
        "seed": seed,
        "n_draw": plan.n_control + plan.n_picked,
        "cap": cap,
    }
    sent = frozenset(dispatched)
    results = map_partitions(cfg, "score", store, data.refs, model, sent, scoring)
    cut = score_cut([r["top"] for r in results], keep)
    short = [i for i, r in enumerate(results) if short_of(len(r["candidates"]), cap, r["top"], cut)]
    if short:
        log.info(
            "%d partition(s) hold more of the shortlist than they sent: asked again", len(short)
        )
        more = map_partitions(
            cfg, "score", store, [data.refs[i] for i in short], model, sent, scoring | {"cap": keep}
        )
        for i, r in zip(short, more, strict=True):
            results[i] = r
    parts, X_parts, offset = [], [], 0
    for part, r in enumerate(results):
        c = r["candidates"]
        if len(c):
            parts.append(c.assign(_pos=np.arange(offset, offset + len(c)), _part=part))
            X_parts.append(r["X"])
            offset += len(c)
    merged = merge_candidates(parts, keep)
    if len(merged):
        X_cand = np.concatenate(X_parts)[merged["_pos"].to_numpy()]
        X_lab, y_lab = labeled if labeled is not None else (None, None)
        local, scores = select_from_candidates(
            model,
            X_cand,
            np.arange(len(merged)),
            plan.n_picked,
            strategy,
            X_labeled=X_lab,
            y_labeled=y_lab,
        )
        picked = merged.iloc[local]
    else:
        picked, scores = merged, np.zeros(0)
    draws = _concat([r.get("draw") for r in results])
    draws = draws[~draws["item_id"].isin(set(picked["item_id"]))].drop_duplicates("item_id")
    control = (
        draws.iloc[smallest(draws["_key"].to_numpy(), plan.n_control)] if len(draws) else draws
    )
    rows = pd.concat([picked, control], ignore_index=True)
    rows = _plain(rows.drop(columns=[c for c in _HELPER_COLUMNS if c in rows.columns]))
    X_rows = model_inputs(cfg, numeric_features(cfg, rows, where=cfg.data.source))[0]
    return batch_records(
        cfg,
        rows,
        list(range(len(rows))),
        [float(s) for s in scores] + [None] * len(control),
        model,
        X_rows if len(rows) else None,
        control=[False] * len(picked) + [True] * len(control),
    )


def _plain(rows: pd.DataFrame) -> pd.DataFrame:
    """Vector cells as lists, so that the batch's records are JSON (and train as vectors)."""
    out = rows.copy()
    for c in out.columns:
        if is_vector_column(out[c]):
            out[c] = [v.tolist() if isinstance(v, np.ndarray) else v for v in out[c]]
    return out
