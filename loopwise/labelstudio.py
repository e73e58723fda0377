"""Label Studio JSON and XML, to and from plain Python: no SDK, no HTTP.

- :func:`label_config` writes the labeling configuration (XML) of a single-choice
  classification project; :func:`labels_of_config` reads the label set back, to detect
  a project that exists with a different label set.
- :func:`task_payload` writes one task to import: the record, its ``item_id``, the
  query score and the model's guess as a pre-filled prediction.
- :func:`parse_task_annotations` turns a task as returned by the API or a JSON export
  into one :class:`AnnotationRecord` per annotation, with a status and a reason.
  Nothing is dropped: an annotation that cannot be used is kept as ``"rejected"``.

Statuses (what Label Studio 1.23 stores, and what Loopwise makes of it):

``"cancelled"``
    ``was_cancelled`` is true. The annotator pressed *Skip*: Label Studio records a
    skip as an annotation with ``was_cancelled: true`` and an empty ``result`` (the
    SDK's ``Annotation.was_cancelled`` is documented as "User skipped the task").
``"skipped"``
    Submitted, not cancelled, but with an empty ``result``: no choice was made (only
    possible when the Choices tag is not ``required``).
``"rejected"``
    A result Loopwise cannot trust: a region for another control (``from_name``), a
    type other than ``choices``, zero or several choices, a label outside the label set,
    a malformed structure, or no ``completed_by``. Label Studio accepts such
    annotations unchecked, so they are validated here. ``reason`` names the field and
    the value.
``"accepted"``
    Exactly one region for the control with exactly one known label.
"""

from __future__ import annotations

import copy
import math
import numbers
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

import pandas as pd

from loopwise.jsonsafe import json_safe

__all__ = [
    "DATA_KEYS",
    "AnnotationRecord",
    "Status",
    "accepted_annotations",
    "default_to_name",
    "label_config",
    "labels_of_config",
    "parse_task_annotations",
    "task_payload",
]

DataKind = Literal["text", "tabular", "image"]
Status = Literal["accepted", "skipped", "cancelled", "rejected"]

#: The key of ``task["data"]`` that holds the record, per kind of data. For
#: ``"tabular"`` it holds a mapping ``column → value`` shown by a ``<Table>`` tag.
DATA_KEYS: dict[str, str] = {"text": "text", "image": "image", "tabular": "record"}
_OBJECT_TAGS = {"text": "Text", "image": "Image", "tabular": "Table"}

# Tag names and ``$variables``: letters, digits and underscores, not starting with a digit.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Characters XML 1.0 cannot carry at all, even escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def default_to_name(data_kind: DataKind) -> str:
    """The object-tag name :func:`label_config` uses for ``data_kind`` by default.

    Pass it as ``to_name`` to :func:`task_payload` so that predictions point at the
    object the configuration shows.
    """
    _check_kind(data_kind)
    return DATA_KEYS[data_kind]


def _check_kind(data_kind: Any) -> None:
    if data_kind not in DATA_KEYS:
        raise ValueError(f"data_kind must be one of {sorted(DATA_KEYS)}, got {data_kind!r}")


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{what} must be a name of letters, digits and underscores not starting with a "
            f"digit, got {value!r}"
        )
    return value


def _check_label_set(labels: Any) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise TypeError(
            f"labels must be a sequence of strings, got {type(labels).__name__} {labels!r}"
        )
    labels = list(labels)
    if not labels:
        raise ValueError("labels must hold at least one label, got an empty sequence")
    for lab in labels:
        if not isinstance(lab, str):
            raise TypeError(
                f"every label must be a string (Label Studio choices are strings; convert "
                f"with str()), got {lab!r} of type {type(lab).__name__}"
            )
        if not lab.strip():
            raise ValueError(f"labels must be non-blank strings, got {lab!r}")
    dups = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dups:
        raise ValueError(f"labels must be distinct, got {dups!r} more than once")
    return labels


def label_config(
    labels: Sequence[str],
    data_kind: DataKind,
    *,
    fields: Sequence[str] = (),
    control_name: str = "label",
    to_name: str | None = None,
) -> str:
    """The XML labeling configuration of a single-choice classification project.

    Parameters
    ----------
    labels : sequence of str
        The choices, in display order. Any characters are allowed; ``<``, ``&`` and
        quotes are escaped.
    data_kind : {"text", "tabular", "image"}
        What the annotator looks at, read from the task's data:

        - ``"text"``: ``<Text value="$text"/>``, the string ``data["text"]``;
        - ``"image"``: ``<Image value="$image"/>``, the URL ``data["image"]``;
        - ``"tabular"``: ``<Table value="$record"/>``, the mapping ``data["record"]``
          (column → value) shown as a two-column key/value table.
    fields : sequence of str
        Further keys of the task's data shown read-only above the record, each as a
        ``<Header>`` with the key and a ``<Text>`` with its value (e.g. a title, a
        source). Names of letters, digits and underscores.
    control_name : str
        The ``name`` of the ``<Choices>`` control; annotation results carry it as
        ``from_name``.
    to_name : str, optional
        The ``name`` of the object tag; defaults to :func:`default_to_name`.

    Returns
    -------
    config : str
        ``<View>…</View>``.

    Raises
    ------
    TypeError, ValueError
        On an unknown ``data_kind``, empty, blank, duplicate or non-string labels,
        labels with characters XML cannot carry, or invalid names.
    """
    labels = _check_label_set(labels)
    _check_kind(data_kind)
    for lab in labels:
        if _XML_INVALID.search(lab):
            raise ValueError(f"label {lab!r} holds a control character that XML cannot carry")
    control_name = _check_name(control_name, "control_name")
    to_name = _check_name(default_to_name(data_kind) if to_name is None else to_name, "to_name")
    if isinstance(fields, str):
        raise TypeError(f"fields must be a sequence of data keys, got the string {fields!r}")
    fields = [_check_name(f, "every field") for f in fields]
    reserved = {DATA_KEYS[data_kind], "item_id", "query_score"}
    names = {to_name, control_name}
    for f in fields:
        if f in reserved or f"field_{f}" in names:
            raise ValueError(
                f"field {f!r} collides with a key or name the configuration already uses"
            )
        names.add(f"field_{f}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"fields must be distinct, got {fields!r}")
    if to_name == control_name:
        raise ValueError(f"to_name and control_name must differ, both are {to_name!r}")

    lines = ["<View>"]
    for f in fields:
        lines.append(f"  <Header value={quoteattr(f)}/>")
        lines.append(f'  <Text name="field_{f}" value="${f}"/>')
    tag, key = _OBJECT_TAGS[data_kind], DATA_KEYS[data_kind]
    lines.append(f'  <{tag} name="{to_name}" value="${key}"/>')
    lines.append(
        f'  <Choices name="{control_name}" toName="{to_name}" choice="single" '
        'showInline="true" required="true">'
    )
    lines += [f"    <Choice value={_attr(lab)}/>" for lab in labels]
    lines += ["  </Choices>", "</View>"]
    return "\n".join(lines) + "\n"


def _attr(value: str) -> str:
    """A double-quoted XML attribute; newlines and tabs kept as character references."""
    return '"' + escape(value, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}) + '"'


def labels_of_config(config: str, *, control_name: str = "label") -> list[str]:
    """The label set of a labeling configuration: its ``<Choices name=control_name>``.

    Parameters
    ----------
    config : str
        A Label Studio labeling configuration (XML).
    control_name : str
        The ``name`` of the ``<Choices>`` control to read.

    Returns
    -------
    labels : list of str
        In the configuration's order. A ``<Choice>`` with an ``alias`` yields the alias,
        since that is what annotation results carry.

    Raises
    ------
    ValueError
        If ``config`` is not well-formed XML or has no ``<Choices>`` named
        ``control_name``.
    """
    if not isinstance(config, str):
        raise TypeError(f"config must be an XML string, got {type(config).__name__}")
    try:
        root = ET.fromstring(config)
    except ET.ParseError as exc:
        raise ValueError(f"config is not well-formed XML: {exc}") from exc
    controls = [el for el in root.iter("Choices") if el.get("name") == control_name]
    if not controls:
        found = [el.get("name") for el in root.iter("Choices")]
        raise ValueError(
            f"config has no <Choices name={control_name!r}>; its Choices are named {found!r}"
        )
    if len(controls) > 1:
        raise ValueError(
            f"config has {len(controls)} <Choices name={control_name!r}>, expected one"
        )
    return [c.get("alias") or c.get("value", "") for c in controls[0].iter("Choice")]


# --------------------------------------------------------------------------- tasks


def _check_score(value: Any, name: str) -> float | None:
    if value is None:
        return None
    # Plain floats and ints first: the numbers.Real ABC check is slow on a hot path.
    if type(value) not in (float, int) and (
        isinstance(value, bool) or not isinstance(value, numbers.Real)
    ):
        raise TypeError(f"{name} must be a real number or None, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def task_payload(
    item_id: str,
    data: Mapping[str, Any],
    *,
    prediction_label: str | None = None,
    prediction_score: float | None = None,
    model_version: str | None = None,
    query_score: float | None = None,
    labels: Sequence[str] | None = None,
    control_name: str = "label",
    to_name: str | None = None,
) -> dict[str, Any]:
    """One task to import into Label Studio, with the model's guess pre-filled.

    Parameters
    ----------
    item_id : str
        The item's id in the pool; stored as ``data["item_id"]`` so that tasks can be
        filtered by it (Label Studio does not deduplicate imports).
    data : mapping str → JSON value
        The record as the configuration reads it, e.g. ``{"text": ...}``,
        ``{"image": url}`` or ``{"record": {column: value}}``. NumPy scalars are
        unwrapped, NaN becomes null and dates become ISO strings.
    prediction_label : str, optional
        The model's predicted label; without it the task has no ``predictions``.
    prediction_score : float, optional
        Score of the prediction (Label Studio sorts and serves tasks by it).
    model_version : str, optional
    query_score : float, optional
        The query strategy's score, stored as ``data["query_score"]`` (null if None).
    labels : sequence of str, optional
        If given, ``prediction_label`` must be one of them (Label Studio would accept
        an unknown label unchecked).
    control_name : str
        The ``<Choices>`` name of the configuration.
    to_name : str, optional
        The object-tag name of the configuration, e.g. ``default_to_name("text")``;
        required with a ``prediction_label``.

    Returns
    -------
    task : dict
        ``{"data": {..., "item_id", "query_score"}, "predictions": [...]}``.
    """
    task: dict[str, Any] = {"data": _task_data(item_id, data, query_score)}
    if prediction_label is not None:
        task["predictions"] = [
            _prediction(
                prediction_label, prediction_score, model_version, labels, control_name, to_name
            )
        ]
    return task


def _task_data(item_id: Any, data: Any, query_score: Any) -> dict[str, Any]:
    """``data`` as JSON with ``item_id`` and ``query_score`` added, after checking them."""
    if not isinstance(item_id, str) or not item_id.strip():
        raise ValueError(f"item_id must be a non-empty string, got {item_id!r}")
    if not isinstance(data, Mapping):
        raise TypeError(f"data must be a mapping of str to JSON values, got {type(data).__name__}")
    if "item_id" in data and data["item_id"] != item_id:
        raise ValueError(f"data['item_id'] is {data['item_id']!r} but item_id is {item_id!r}")
    query_score = _check_score(query_score, "query_score")
    if "query_score" in data and data["query_score"] != query_score:
        raise ValueError(
            f"data['query_score'] is {data['query_score']!r} but query_score is {query_score!r}"
        )
    payload_data = json_safe(dict(data), strict=True, where="data")
    payload_data["item_id"] = item_id
    payload_data["query_score"] = query_score
    return payload_data


def _prediction(
    prediction_label: Any,
    prediction_score: Any,
    model_version: Any,
    labels: Sequence[str] | None,
    control_name: Any,
    to_name: Any,
) -> dict[str, Any]:
    """The pre-filled prediction of a task (see :func:`task_payload`), after checking it."""
    if not isinstance(prediction_label, str):
        raise TypeError(
            f"prediction_label must be a string (Label Studio choices are strings), got "
            f"{prediction_label!r} of type {type(prediction_label).__name__}"
        )
    if labels is not None and prediction_label not in _check_label_set(labels):
        raise ValueError(
            f"prediction_label {prediction_label!r} is not one of the labels {list(labels)!r}"
        )
    if to_name is None:
        raise ValueError(
            "to_name is required with a prediction_label: the name of the object tag the "
            "configuration shows (default_to_name(data_kind))"
        )
    control_name = _check_name(control_name, "control_name")
    to_name = _check_name(to_name, "to_name")
    prediction: dict[str, Any] = {}
    if model_version is not None:
        if not isinstance(model_version, str):
            raise TypeError(f"model_version must be a string or None, got {model_version!r}")
        prediction["model_version"] = model_version
    score = _check_score(prediction_score, "prediction_score")
    if score is not None:
        prediction["score"] = score
    prediction["result"] = [
        {
            "from_name": control_name,
            "to_name": to_name,
            "type": "choices",
            "value": {"choices": [prediction_label]},
        }
    ]
    return prediction


# --------------------------------------------------------------------------- annotations


@dataclass(frozen=True)
class AnnotationRecord:
    """One annotation of a Label Studio task, with what Loopwise makes of it.

    Attributes
    ----------
    item_id : str
        ``task["data"]["item_id"]``.
    task_id : int or None
        Label Studio's task id.
    annotation_id : int or None
        Label Studio's annotation id.
    annotator : str or None
        The user id from ``completed_by`` (an int, or a user object ``{"id", "email",
        …}`` in some exports; its ``id``, else its ``email``), as a string.
    label : str or None
        The chosen label when ``status == "accepted"``, else None.
    status : {"accepted", "skipped", "cancelled", "rejected"}
        See the module docstring.
    reason : str or None
        Why the annotation is not accepted; None when it is.
    lead_time : float or None
        Seconds spent on the task.
    created_at, updated_at : str or None
        ISO timestamps as Label Studio gave them.
    raw : dict
        A deep copy of the annotation as received, kept whole.
    """

    item_id: str
    task_id: int | None
    annotation_id: int | None
    annotator: str | None
    label: str | None
    status: Status
    reason: str | None
    lead_time: float | None
    created_at: str | None
    updated_at: str | None
    raw: Any


def _annotator(completed_by: Any) -> str | None:
    if isinstance(completed_by, bool):
        return None
    if isinstance(completed_by, numbers.Integral | str):
        return str(completed_by) if str(completed_by) else None
    if isinstance(completed_by, Mapping):
        ident = completed_by.get("id")
        if ident is None or isinstance(ident, bool):
            ident = completed_by.get("email")
        return None if ident in (None, "") else str(ident)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    return (
        int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None
    )


def _judge(
    ann: Mapping[str, Any], labels: list[str], control: str
) -> tuple[Status, str | None, str | None]:
    """(status, label, reason) of one annotation."""
    result = ann.get("result")
    if ann.get("was_cancelled"):
        if not result:
            return (
                "cancelled",
                None,
                "was_cancelled=true with an empty result: skipped in Label Studio",
            )
        n = len(result) if isinstance(result, list) else "a"
        return "cancelled", None, f"was_cancelled=true; its result ({n} region(s)) is ignored"
    if result is None:
        return "rejected", None, "result is missing"
    if not isinstance(result, list):
        return "rejected", None, f"result must be a list, got {type(result).__name__} {result!r}"
    if not result:
        return "skipped", None, "empty result: submitted without a choice"
    ours = []
    for i, region in enumerate(result):
        if not isinstance(region, Mapping):
            return (
                "rejected",
                None,
                f"result[{i}] must be an object, got {type(region).__name__} {region!r}",
            )
        if region.get("from_name") != control:
            return (
                "rejected",
                None,
                f"result[{i}].from_name={region.get('from_name')!r} is not the control {control!r}",
            )
        ours.append(i)
    if len(ours) > 1:
        return (
            "rejected",
            None,
            f"result has {len(ours)} regions for control {control!r}, expected one",
        )
    i = ours[0]
    region = result[i]
    if region.get("type") != "choices":
        return "rejected", None, f"result[{i}].type={region.get('type')!r} is not 'choices'"
    value = region.get("value")
    choices = value.get("choices") if isinstance(value, Mapping) else None
    if not isinstance(choices, list):
        return "rejected", None, f"result[{i}].value.choices must be a list, got {choices!r}"
    if len(choices) != 1:
        return (
            "rejected",
            None,
            f"result[{i}].value.choices={choices!r} holds {len(choices)} choices, expected exactly one",
        )
    label = choices[0]
    if not isinstance(label, str) or label not in labels:
        return (
            "rejected",
            None,
            f"result[{i}].value.choices[0]={label!r} is not one of the labels {labels!r}",
        )
    if _annotator(ann.get("completed_by")) is None:
        return "rejected", None, f"completed_by={ann.get('completed_by')!r} names no annotator"
    return "accepted", label, None


def parse_task_annotations(
    task: Mapping[str, Any],
    *,
    labels: Sequence[str],
    control_name: str = "label",
) -> list[AnnotationRecord]:
    """One :class:`AnnotationRecord` per annotation of a Label Studio task.

    Parameters
    ----------
    task : mapping
        A task as the API (``tasks.list`` / ``tasks.get``) or a JSON export returns it:
        ``{"id", "data": {..., "item_id"}, "annotations": [{"id", "completed_by",
        "result", "was_cancelled", "lead_time", "created_at", "updated_at", ...}]}``.
        A task without ``annotations`` yields no record.
    labels : sequence of str
        The project's label set; any other label is rejected.
    control_name : str
        The ``<Choices>`` name whose results are read.

    Returns
    -------
    records : list of AnnotationRecord
        Exactly one per annotation, in the task's order; an entry that is not even an
        object is kept as ``"rejected"``.

    Raises
    ------
    TypeError
        If ``task`` is not a mapping or its ``annotations`` is not a list.
    ValueError
        If ``task["data"]["item_id"]`` is missing or empty (not a Loopwise task).
    """
    if not isinstance(task, Mapping):
        raise TypeError(f"task must be a mapping (a task's JSON), got {type(task).__name__}")
    labels = _check_label_set(labels)
    item_id, annotations = _item_and_annotations(task)
    task_id = _int(task.get("id"))
    return [
        _record(ann, f"annotations[{i}]", item_id, task_id, labels, control_name)
        for i, ann in enumerate(annotations)
    ]


def _item_and_annotations(task: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The ``item_id`` and the annotations of a task, after checking them."""
    data = task.get("data")
    item_id = data.get("item_id") if isinstance(data, Mapping) else None
    if not isinstance(item_id, str) or not item_id:
        raise ValueError(
            f"task {task.get('id')!r} has no data['item_id'] (got {item_id!r}); every task "
            "Loopwise imports carries one"
        )
    annotations = task.get("annotations")
    if annotations is None:
        annotations = []
    if not isinstance(annotations, list):
        raise TypeError(
            f"task {task.get('id')!r}: annotations must be a list, got {type(annotations).__name__}"
        )
    return item_id, annotations


def _record(
    ann: Any, where: str, item_id: str, task_id: int | None, labels: list[str], control: str
) -> AnnotationRecord:
    """The record of one annotation (``where`` names it in the reason of a non-object)."""
    raw = copy.deepcopy(ann)
    if not isinstance(ann, Mapping):
        return AnnotationRecord(
            item_id=item_id,
            task_id=task_id,
            annotation_id=None,
            annotator=None,
            label=None,
            status="rejected",
            reason=f"{where} must be an object, got {type(ann).__name__}",
            lead_time=None,
            created_at=None,
            updated_at=None,
            raw=raw,
        )
    status, label, reason = _judge(ann, labels, control)
    created, updated = ann.get("created_at"), ann.get("updated_at")
    return AnnotationRecord(
        item_id=item_id,
        task_id=task_id,
        annotation_id=_int(ann.get("id")),
        annotator=_annotator(ann.get("completed_by")),
        label=label,
        status=status,
        reason=reason,
        lead_time=_number(ann.get("lead_time")),
        created_at=created if isinstance(created, str) else None,
        updated_at=updated if isinstance(updated, str) else None,
        raw=raw,
    )


def accepted_annotations(records: Iterable[AnnotationRecord]) -> pd.DataFrame:
    """The accepted records as the long table :mod:`loopwise.consensus` reads.

    Parameters
    ----------
    records : iterable of AnnotationRecord

    Returns
    -------
    annotations : DataFrame
        Columns ``item``, ``annotator``, ``label``, ``task_id``, ``annotation_id``;
        one row per accepted record.
    """
    rows = [
        (r.item_id, r.annotator, r.label, r.task_id, r.annotation_id)
        for r in records
        if r.status == "accepted"
    ]
    return pd.DataFrame(
        rows, columns=["item", "annotator", "label", "task_id", "annotation_id"]
    ).astype({"task_id": "Int64", "annotation_id": "Int64"})
