"""The drift reference's class mix: a registered version's predictions on kept inputs whose
columns are in another order than the pool's (the log sorts a record's inputs)."""

from __future__ import annotations

import uuid

import numpy as np

from loopwise.features import model_inputs
from tasks.stream import predict_reference
from tests.serving.campaigns import FEATURES, campaign, fitted, numeric_pool, register


def test_reference_predictions_match_columns_by_name(tmp_path, registry):
    name = f"ref-{uuid.uuid4().hex[:8]}"
    cfg = campaign(tmp_path, registry, name)
    pool = numeric_pool(tmp_path / f"{name}.csv")
    model = fitted(cfg, pool)
    assert register(cfg, model) == "1"
    shuffled = pool[FEATURES[::-1]]  # what a kept window holds: its own column order
    got = predict_reference.fn(cfg, "1", shuffled)
    (X,) = model_inputs(cfg, pool)
    expected = [str(p) for p in model.predict(X)]
    assert got == expected
    # Matching by position instead would read other features: the test can tell.
    wrong = [str(p) for p in model.predict(shuffled.to_numpy(np.float32))]
    assert wrong != expected
