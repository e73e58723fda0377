"""Label Studio JSON/XML conversions: configuration, task payloads, annotation parsing."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from loopwise.labelstudio import (
    AnnotationRecord,
    accepted_annotations,
    default_to_name,
    label_config,
    labels_of_config,
    parse_task_annotations,
    task_payload,
)

LABELS = ["positive", "negative", "neutral"]


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kind", "tag", "value"),
    [("text", "Text", "$text"), ("image", "Image", "$image"), ("tabular", "Table", "$record")],
)
def test_config_per_data_kind_round_trips(kind, tag, value):
    xml = label_config(LABELS, kind)
    root = ET.fromstring(xml)
    assert root.tag == "View"
    obj = root.find(tag)
    assert obj is not None and obj.get("value") == value
    assert obj.get("name") == default_to_name(kind)
    choices = root.find("Choices")
    assert choices.get("name") == "label"
    assert choices.get("toName") == obj.get("name")
    assert choices.get("choice") == "single"
    assert labels_of_config(xml) == LABELS


def test_config_escapes_labels():
    weird = ["a < b", "R&D", 'say "hi"', "it's", "x > y", "two\nlines", "naïve ünïcödé"]
    xml = label_config(weird, "text")
    assert '<Choice value="a < b"' not in xml and 'R&D"' not in xml
    assert labels_of_config(xml) == weird


def test_config_fields_names_and_errors():
    xml = label_config(
        ["a", "b"], "text", fields=["title", "source"], control_name="topic", to_name="body"
    )
    root = ET.fromstring(xml)
    assert [h.get("value") for h in root.iter("Header")] == ["title", "source"]
    texts = {t.get("name"): t.get("value") for t in root.iter("Text")}
    assert texts == {"field_title": "$title", "field_source": "$source", "body": "$text"}
    assert root.find("Choices").get("toName") == "body"
    assert labels_of_config(xml, control_name="topic") == ["a", "b"]
    with pytest.raises(
        ValueError, match=r"no <Choices name='label'>; its Choices are named \['topic'\]"
    ):
        labels_of_config(xml)

    with pytest.raises(
        ValueError, match=r"data_kind must be one of \['image', 'tabular', 'text'\], got 'audio'"
    ):
        label_config(["a"], "audio")
    with pytest.raises(ValueError, match=r"distinct, got \['a'\]"):
        label_config(["a", "b", "a"], "text")
    with pytest.raises(ValueError, match="at least one label"):
        label_config([], "text")
    with pytest.raises(TypeError, match="every label must be a string"):
        label_config(["a", 1], "text")
    with pytest.raises(ValueError, match="control character"):
        label_config(["a\x00"], "text")
    with pytest.raises(ValueError, match="control_name must be a name"):
        label_config(["a"], "text", control_name="my label")
    with pytest.raises(ValueError, match="collides"):
        label_config(["a"], "text", fields=["item_id"])


def test_labels_of_config_reads_aliases_and_rejects_bad_xml():
    xml = """<View><Text name="t" value="$text"/>
      <Choices name="label" toName="t"><Choice value="Positive" alias="pos"/><Choice value="neg"/></Choices>
    </View>"""
    assert labels_of_config(xml) == ["pos", "neg"]
    with pytest.raises(ValueError, match="not well-formed XML"):
        labels_of_config("<View><Choices>")


# --------------------------------------------------------------------------- task payload


def test_payload_with_prediction():
    task = task_payload(
        "item-7",
        {"text": "great film"},
        prediction_label="positive",
        prediction_score=0.42,
        model_version="m3",
        query_score=0.91,
        labels=LABELS,
        to_name=default_to_name("text"),
    )
    assert task == {
        "data": {"text": "great film", "item_id": "item-7", "query_score": 0.91},
        "predictions": [
            {
                "model_version": "m3",
                "score": 0.42,
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["positive"]},
                    }
                ],
            }
        ],
    }
    json.dumps(task, allow_nan=False)  # valid JSON as Label Studio expects it


def test_payload_without_prediction_and_with_numpy_tabular_values():
    row = pd.Series(
        {"age": np.int64(41), "income": np.float32(1.5), "city": "Oslo", "debt": np.nan}
    )
    task = task_payload("r1", {"record": row.to_dict()}, query_score=np.float64(0.3))
    assert "predictions" not in task
    assert task["data"] == {
        "record": {"age": 41, "income": 1.5, "city": "Oslo", "debt": None},
        "item_id": "r1",
        "query_score": 0.3,
    }
    assert type(task["data"]["record"]["age"]) is int
    json.dumps(task, allow_nan=False)
    assert task_payload("r2", {"text": "x"})["data"]["query_score"] is None


def test_payload_errors():
    for bad in ("", "  ", None, 5):
        with pytest.raises(ValueError, match="item_id must be a non-empty string"):
            task_payload(bad, {"text": "x"})
    with pytest.raises(ValueError, match="data\\['item_id'\\] is 'b' but item_id is 'a'"):
        task_payload("a", {"text": "x", "item_id": "b"})
    with pytest.raises(ValueError, match="to_name is required"):
        task_payload("a", {"text": "x"}, prediction_label="positive")
    with pytest.raises(ValueError, match="'maybe' is not one of the labels"):
        task_payload("a", {"text": "x"}, prediction_label="maybe", labels=LABELS, to_name="text")
    with pytest.raises(TypeError, match="prediction_label must be a string"):
        task_payload("a", {"text": "x"}, prediction_label=1, to_name="text")
    with pytest.raises(ValueError, match="prediction_score must be finite"):
        task_payload(
            "a",
            {"text": "x"},
            prediction_label="positive",
            prediction_score=float("nan"),
            to_name="text",
        )
    with pytest.raises(TypeError, match=r"data\['blob'\] is a object"):
        task_payload("a", {"text": "x", "blob": object()})


# --------------------------------------------------------------------------- annotations


def choice(label, from_name="label", **extra):
    return {
        "id": "r1",
        "from_name": from_name,
        "to_name": "text",
        "type": "choices",
        "value": {"choices": [label] if isinstance(label, str) else label},
        "origin": "manual",
        **extra,
    }


def annotation(id_, result, *, completed_by=1, was_cancelled=False, **extra):
    return {
        "id": id_,
        "completed_by": completed_by,
        "result": result,
        "was_cancelled": was_cancelled,
        "ground_truth": False,
        "created_at": "2025-05-01T10:00:00.000000Z",
        "updated_at": "2025-05-01T10:00:05.000000Z",
        "lead_time": 4.2,
        "task": 17,
        "project": 3,
        "parent_prediction": 9,
        **extra,
    }


# A task as GET /api/tasks/17 or a JSON export returns it (label-studio 1.23).
TASK = {
    "id": 17,
    "data": {"text": "great film", "item_id": "item-7", "query_score": 0.91},
    "meta": {},
    "created_at": "2025-05-01T09:00:00.000000Z",
    "annotations": [
        annotation(101, [choice("positive")], completed_by=1),
        annotation(102, [], completed_by=2, was_cancelled=True),  # the Skip button
        annotation(103, [], completed_by=3),  # submitted with no choice
        annotation(104, [choice("negative")], completed_by=4, was_cancelled=True),
        annotation(105, [choice("maybe")], completed_by=5),  # unknown label
        annotation(106, [choice("positive", from_name="sentiment")], completed_by=6),
        annotation(107, [choice(["positive", "negative"])], completed_by=7),  # two choices
        annotation(
            108, [{"from_name": "label", "type": "choices", "value": "positive"}], completed_by=8
        ),
        annotation(109, "positive", completed_by=9),  # result not a list
        annotation(
            110,
            [choice("neutral")],
            completed_by={"id": 10, "email": "ann@example.com", "first_name": "", "last_name": ""},
        ),
        annotation(111, [choice("positive"), choice("negative")], completed_by=11),
        annotation(112, [choice("positive", type="labels")], completed_by=12),
        annotation(113, [choice("positive")], completed_by=None),
        "not an annotation",
    ],
    "predictions": [
        {"id": 9, "model_version": "m3", "score": 0.42, "result": [choice("positive")]}
    ],
}


@pytest.fixture
def records():
    return parse_task_annotations(copy.deepcopy(TASK), labels=LABELS)


def test_every_annotation_yields_exactly_one_record(records):
    assert len(records) == len(TASK["annotations"])
    assert all(isinstance(r, AnnotationRecord) for r in records)
    assert {r.item_id for r in records} == {"item-7"}
    assert {r.task_id for r in records} == {17}
    assert [r.annotation_id for r in records][:13] == list(range(101, 114))
    for r, raw in zip(records, TASK["annotations"], strict=True):
        assert r.raw == raw  # kept whole


def test_statuses_and_reasons(records):
    by_id = {r.annotation_id: r for r in records}
    ok = by_id[101]
    assert (ok.status, ok.label, ok.reason, ok.annotator) == ("accepted", "positive", None, "1")
    assert ok.lead_time == 4.2
    assert ok.created_at == "2025-05-01T10:00:00.000000Z"
    assert ok.updated_at == "2025-05-01T10:00:05.000000Z"

    expected = {
        102: ("cancelled", "skipped in Label Studio"),
        103: ("skipped", "empty result"),
        104: ("cancelled", "was_cancelled=true; its result (1 region(s)) is ignored"),
        105: ("rejected", "result[0].value.choices[0]='maybe' is not one of the labels"),
        106: ("rejected", "result[0].from_name='sentiment' is not the control 'label'"),
        107: ("rejected", "holds 2 choices, expected exactly one"),
        108: ("rejected", "result[0].value.choices must be a list, got None"),
        109: ("rejected", "result must be a list, got str"),
        111: ("rejected", "2 regions for control 'label'"),
        112: ("rejected", "result[0].type='labels' is not 'choices'"),
        113: ("rejected", "completed_by=None names no annotator"),
    }
    for id_, (status, reason) in expected.items():
        r = by_id[id_]
        assert r.status == status, id_
        assert reason in r.reason, (id_, r.reason)
        assert r.label is None, id_
    last = records[-1]
    assert last.status == "rejected" and "annotations[13] must be an object" in last.reason
    assert last.raw == "not an annotation"


def test_completed_by_as_int_and_as_user_object(records):
    by_id = {r.annotation_id: r for r in records}
    assert by_id[101].annotator == "1"
    assert by_id[110].annotator == "10" and by_id[110].status == "accepted"
    assert by_id[110].label == "neutral"
    only_email = annotation(1, [choice("positive")], completed_by={"email": "ann@example.com"})
    task = {"id": 1, "data": {"item_id": "x"}, "annotations": [only_email]}
    (r,) = parse_task_annotations(task, labels=LABELS)
    assert r.annotator == "ann@example.com" and r.status == "accepted"


def test_raw_is_a_copy(records):
    task = copy.deepcopy(TASK)
    recs = parse_task_annotations(task, labels=LABELS)
    task["annotations"][0]["result"][0]["value"]["choices"] = ["negative"]
    assert recs[0].raw["result"][0]["value"]["choices"] == ["positive"]


def test_accepted_annotations_feed_consensus(records):
    from loopwise.consensus import majority_vote

    df = accepted_annotations(records)
    assert df[["item", "annotator", "label"]].values.tolist() == [
        ["item-7", "1", "positive"],
        ["item-7", "10", "neutral"],
    ]
    assert df["annotation_id"].tolist() == [101, 110]
    assert majority_vote(df, labels=LABELS, random_state=0).loc["item-7", "n_annotations"] == 2


def test_parse_errors_and_tasks_without_annotations():
    assert parse_task_annotations({"id": 1, "data": {"item_id": "x"}}, labels=LABELS) == []
    with pytest.raises(ValueError, match=r"task 5 has no data\['item_id'\]"):
        parse_task_annotations({"id": 5, "data": {"text": "x"}, "annotations": []}, labels=LABELS)
    with pytest.raises(TypeError, match="annotations must be a list"):
        parse_task_annotations(
            {"id": 5, "data": {"item_id": "x"}, "annotations": {}}, labels=LABELS
        )
    with pytest.raises(TypeError, match="task must be a mapping"):
        parse_task_annotations([], labels=LABELS)
    with pytest.raises(TypeError, match="labels must be a sequence of strings"):
        parse_task_annotations(TASK, labels="positive")


def test_payload_and_parse_agree_with_the_config():
    """A prediction written by task_payload, copied as an annotation, is accepted."""
    xml = label_config(LABELS, "image")
    task = task_payload(
        "img-1",
        {"image": "s3://bucket/1.png"},
        prediction_label="neutral",
        to_name=default_to_name("image"),
        labels=labels_of_config(xml),
    )
    task["id"] = 1
    task["annotations"] = [annotation(1, task["predictions"][0]["result"], completed_by=3)]
    (r,) = parse_task_annotations(task, labels=labels_of_config(xml))
    assert (r.status, r.label) == ("accepted", "neutral")


@pytest.mark.parametrize("kind", ["text", "image", "tabular"])
def test_label_studio_sdk_reads_our_config_and_accepts_our_prediction(kind):
    """The SDK's own parser (a reference only; loopwise/ never imports it) agrees."""
    interface = pytest.importorskip("label_studio_sdk.label_interface").LabelInterface
    labels = ["a < b", "R&D", 'say "hi"']
    li = interface(label_config(labels, kind))
    (control,) = li.controls
    assert control.name == "label" and control.labels == labels
    assert control.to_name == [default_to_name(kind)]
    data = {default_to_name(kind): {"x": 1} if kind == "tabular" else "value"}
    task = task_payload("i", data, prediction_label="R&D", to_name=default_to_name(kind))
    assert li.validate_prediction(task["predictions"][0])
