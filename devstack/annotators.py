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

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sklearn.utils import check_random_state

from loopwise.annotators import SKIPPED, AnnotatorProfile, draw_answers
from loopwise.labelstudio import default_to_name
from tasks.labelstudio import connect

__all__ = ["AnnotatorProfile", "load_profiles", "simulate_annotators"]

EMAIL_DOMAIN = "annotators.loopwise.invalid"

#: One answer to post: task id, annotator name, label (None: a skip), lead time in seconds.
_Step = tuple[int, str, str | None, float]


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
    unnamed = [f"annotators.{i}.name: Field required" for i, p in enumerate(profiles) if not p.name]
    if unnamed:
        raise ValueError(f"{path}: invalid annotator profiles: {'; '.join(unnamed)}")
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: annotator names must be distinct, got {names}")
    return profiles


def _ensure_users(client: Any, profiles: Sequence[AnnotatorProfile]) -> dict[str, int]:
    unnamed = [i for i, p in enumerate(profiles) if not p.name]
    if unnamed:
        raise ValueError(f"profiles {unnamed} have no name: a Label Studio user needs one")
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


def _item_of(task: Mapping[str, Any]) -> str:
    return str((task.get("data") or {}).get("item_id"))


def _assign(
    tasks: Sequence[Mapping[str, Any]],
    profiles: Sequence[AnnotatorProfile],
    user_ids: Mapping[str, int],
    overlap: int | None,
    default_overlap: int,
    rng: np.random.RandomState,
) -> tuple[list[tuple[int, str, int]], list[str]]:
    """Who answers what: (task id, item, profile position) per answer, and the starved
    items (those that want more answers than there are annotators left)."""
    plan, starved = [], []
    for t in sorted(tasks, key=lambda t: t["id"]):
        done = {_annotator_id(a) for a in t.get("annotations", [])}
        free = [i for i, p in enumerate(profiles) if user_ids[p.name] not in done]
        # The task's own overlap is what Label Studio serves it to: the project's setting
        # at import, raised per task (disputes, adaptive overlap) or lowered (adaptive).
        target = overlap if overlap is not None else int(t.get("overlap") or default_overlap)
        need = max(0, target - len(t.get("annotations", [])))
        if need > len(free):
            starved.append(_item_of(t))
        plan += [(int(t["id"]), _item_of(t), free[k]) for k in rng.permutation(len(free))[:need]]
    return plan, starved


def _string_labels(p: AnnotatorProfile) -> AnnotatorProfile:
    """``p`` with its confusion as strings (Label Studio choices are strings)."""
    return dataclasses.replace(p, confusion={str(k): str(v) for k, v in p.confusion.items()})


def _answers(
    plan: Sequence[tuple[int, str, int]],
    truth: Mapping[str, str],
    profiles: Sequence[AnnotatorProfile],
    labels: Sequence[str],
    rng: np.random.RandomState,
) -> list[_Step]:
    """The answers of the plan (:func:`loopwise.annotators.draw_answers`) and lead times."""
    classes = pd.Index(list(labels))
    true = classes.get_indexer([str(truth[item]) for _, item, _ in plan])
    if (true < 0).any():
        task_id, item, _ = plan[int(np.flatnonzero(true < 0)[0])]
        raise ValueError(
            f"the true label of item {item!r} (task {task_id}), {truth[item]!r}, is not one "
            f"of the project's labels {list(classes)!r}"
        )
    who = np.array([pos for _, _, pos in plan], dtype=np.intp)
    given = draw_answers([_string_labels(p) for p in profiles], who, true, classes, rng)
    leads = rng.exponential(np.array([p.latency for p in profiles])[who])
    return [
        (task_id, profiles[pos].name, None if g == SKIPPED else str(classes[g]), float(lead))
        for (task_id, _, pos), g, lead in zip(plan, given, leads, strict=True)
    ]


def _poster(
    client: Any, user_ids: Mapping[str, int], control: str, to_name: str
) -> Callable[[_Step], None]:
    """A function that posts one step of the plan as an annotation."""

    def post(step: _Step) -> None:
        task_id, name, label, lead = step
        choice = {"from_name": control, "to_name": to_name, "type": "choices"}
        client.annotations.create(
            id=task_id,
            result=[] if label is None else [{**choice, "value": {"choices": [label]}}],
            completed_by=user_ids[name],
            lead_time=lead,
            was_cancelled=label is None,
        )

    return post


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

    ``overlap`` defaults to each task's own overlap (set at import from the project's
    annotators per task, then changed per task by the overlap policy and dispute review,
    as Label Studio serves it). Each task gets
    annotators who have not seen it yet, in a seeded order; answers are drawn
    before anything is posted, so the same seed gives the same annotations.
    Returns counts: annotations posted, skips, and per annotator.
    """
    to_name = default_to_name(data_kind)
    client = connect(url, api_key)
    rng = check_random_state(random_state)
    user_ids = _ensure_users(client, profiles)
    default_overlap = int(client.projects.get(id=project_id).maximum_annotations or 1)
    wanted = None if items is None else {str(i) for i in items}
    tasks = [
        t.model_dump(mode="json")
        for t in client.tasks.list(project=project_id, fields="all", page_size=100)
    ]
    tasks = [t for t in tasks if _item_of(t) in truth and (wanted is None or _item_of(t) in wanted)]
    assigned, starved = _assign(tasks, profiles, user_ids, overlap, default_overlap, rng)
    plan = _answers(assigned, truth, profiles, labels, rng)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(_poster(client, user_ids, control_name, to_name), plan))
    return {
        "posted": len(plan),
        "skipped": sum(s[2] is None for s in plan),
        "per_annotator": {name: sum(s[1] == name for s in plan) for name in user_ids},
        "starved": starved,
        "users": dict(user_ids),
    }


def _annotator_id(annotation: Mapping[str, Any]) -> Any:
    """The user id of ``completed_by`` (an id, or the user as a mapping)."""
    who = annotation.get("completed_by")
    return who["id"] if isinstance(who, dict) else who
