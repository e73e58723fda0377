"""Per-class metric names: MLflow refuses most punctuation, and labels are free text."""

from __future__ import annotations

import re

from tasks.evaluate import per_class_metrics


def test_per_class_metric_names_are_valid_for_mlflow_and_distinct():
    labels = ["<=50K", ">50K", "a b", "x?", "x#", "ünï", "ok"]
    out = per_class_metrics("f1", {lab: float(i) for i, lab in enumerate(labels)})
    assert len(out) == len(labels)
    assert all(re.fullmatch(r"[A-Za-z0-9_\-. :/]+", name) for name in out)
    assert out["f1.lteq50K"] == 0.0 and out["f1.gt50K"] == 1.0 and out["f1.ok"] == 6.0
    assert sorted(out.values()) == [float(i) for i in range(len(labels))]  # nothing lost
