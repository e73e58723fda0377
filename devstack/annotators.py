"""Simulated annotators: distinct Label Studio users who label through the API.

Each annotator follows a profile (accuracy, a confusion bias, latency, skip rate)
and answers from the dataset's ground truth. The demo, the tests and the
benchmarks use them; nothing else in Loopwise knows they are simulated — their
annotations travel the same path as a person's.

Profile file (YAML or JSON)::

    annotators:
      - {name: ana, accuracy: 0.95, latency: 4.0}
      - {name: ben, accuracy: 0.85, confusion: {ENTY: DESC}, skip_rate: 0.02}
      - {name: cy,  accuracy: 0.40}          # a careless annotator
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sklearn.utils import check_random_state

from loopwise.labelstudio import default_to_name
from tasks.labelstudio import connect

__all__ = ["AnnotatorProfile", "load_profiles", "simulate_annotators"]

EMAIL_DOMAIN = "annotators.loopwise.invalid"


class AnnotatorProfile(BaseModel):
    """How one simulated annotator behaves."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    accuracy: float = Field(ge=0.0, le=1.0)
    #: true label → the wrong label this annotator gives when wrong (else a random wrong one)
    confusion: dict[str, str] = Field(default_factory=dict)
    #: mean seconds per task, recorded as the annotation's lead time
    latency: float = Field(default=5.0, gt=0.0)
    skip_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("confusion", mode="before")
    @classmethod
    def _as_strings(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, Mapping) else v


class _ProfileFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    annotators: list[AnnotatorProfile] = Field(min_length=1)


def load_profiles(path: str | Path) -> list[AnnotatorProfile]:
    """Read and validate a profile file; errors name the file and the key."""
    path = Path(path)
    try:
        raw = (
            yaml.safe_load(path.read_text())
            if path.suffix in (".yaml", ".yml")
            else json.loads(path.read_text())
        )
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read annotator profiles ({err})") from err
    try:
        profiles = _ProfileFile.model_validate(raw).annotators
    except ValidationError as err:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError(f"{path}: invalid annotator profiles: {where}") from err
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: annotator names must be distinct, got {names}")
    return profiles


def _ensure_users(client: Any, profiles: Sequence[AnnotatorProfile]) -> dict[str, int]:
    by_email = {u.email: int(u.id) for u in client.users.list()}
    ids = {}
    for p in profiles:
        email = f"{p.name}@{EMAIL_DOMAIN}"
        if email not in by_email:
            by_email[email] = int(
                client.users.create(username=p.name, email=email, first_name=p.name).id
            )
        ids[p.name] = by_email[email]
    return ids


def _answer(
    p: AnnotatorProfile, truth: str, labels: Sequence[str], rng: np.random.RandomState
) -> str | None:
    if rng.random_sample() < p.skip_rate:
        return None
    if rng.random_sample() < p.accuracy:
        return truth
    if truth in p.confusion:
        return p.confusion[truth]
    wrong = [label for label in labels if label != truth]
    return wrong[rng.randint(len(wrong))] if wrong else truth


def simulate_annotators(
    url: str,
    api_key: str,
    project_id: int,
    truth: Mapping[str, str],
    profiles: Sequence[AnnotatorProfile],
    *,
    labels: Sequence[str],
    overlap: int | None = None,
    data_kind: str = "text",
    control_name: str = "label",
    items: Sequence[str] | None = None,
    random_state: Any = 0,
    threads: int = 4,
) -> dict[str, Any]:
    """Annotate every task of the project (or of ``items``) up to ``overlap`` annotations.

    ``overlap`` defaults to each task's own overlap (raised by adaptive overlap and
    dispute review) or the project's annotators per task, whichever is larger. Each task gets
    annotators who have not seen it yet, in a seeded order; answers are drawn
    before anything is posted, so the same seed gives the same annotations.
    Returns counts: annotations posted, skips, and per annotator.
    """
    client = connect(url, api_key)
    rng = check_random_state(random_state)
    user_ids = _ensure_users(client, profiles)
    name_of = {v: k for k, v in user_ids.items()}
    default_overlap = int(client.projects.get(id=project_id).maximum_annotations or 1)
    wanted = None if items is None else {str(i) for i in items}
    to_name = default_to_name(data_kind)
    plan = []
    starved: list[str] = []  # items that want more answers than there are annotators left
    tasks = [
        t.model_dump(mode="json")
        for t in client.tasks.list(project=project_id, fields="all", page_size=100)
    ]
    for t in sorted(tasks, key=lambda t: t["id"]):
        item = str((t.get("data") or {}).get("item_id"))
        if (wanted is not None and item not in wanted) or item not in truth:
            continue
        done = {
            a["completed_by"]["id"]
            if isinstance(a.get("completed_by"), dict)
            else a.get("completed_by")
            for a in t.get("annotations", [])
        }
        free = [p for p in profiles if user_ids[p.name] not in done]
        target = (
            overlap if overlap is not None else max(default_overlap, int(t.get("overlap") or 1))
        )
        need = max(0, target - len(t.get("annotations", [])))
        if need > len(free):
            starved.append(item)
        for k in rng.permutation(len(free))[:need]:
            p = free[k]
            label = _answer(p, str(truth[item]), labels, rng)
            lead = float(rng.exponential(p.latency))
            plan.append((int(t["id"]), p.name, label, lead))

    def post(step: tuple[int, str, str | None, float]) -> None:
        task_id, name, label, lead = step
        result = (
            []
            if label is None
            else [
                {
                    "from_name": control_name,
                    "to_name": to_name,
                    "type": "choices",
                    "value": {"choices": [label]},
                }
            ]
        )
        client.annotations.create(
            id=task_id,
            result=result,
            completed_by=user_ids[name],
            lead_time=lead,
            was_cancelled=label is None,
        )

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(post, plan))
    per = {name: sum(s[1] == name for s in plan) for name in user_ids}
    return {
        "posted": len(plan),
        "skipped": sum(s[2] is None for s in plan),
        "per_annotator": per,
        "starved": starved,
        "users": {name_of[v]: v for v in user_ids.values()},
    }
