"""Campaign configuration: the demo file loads, every bad file is refused naming file and key."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from loopwise import strategies
from loopwise.config import CampaignConfig, ConfigError, ModelConfig, load_campaign
from loopwise.stopping import StoppingRules

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.yaml"


def minimal(**extra: Any) -> dict[str, Any]:
    """The smallest valid campaign, plus ``extra`` top-level keys."""
    return {"name": "t", "data": {"source": "pool.csv"}, "labels": ["a", "b"], **extra}


def minimal_config(**extra: Any) -> CampaignConfig:
    return CampaignConfig.model_validate(minimal(**extra))


def write(tmp_path: Path, raw: Any, name: str = "campaign.yaml") -> Path:
    path = tmp_path / name
    text = raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def refused(tmp_path: Path, raw: Any) -> tuple[Path, str]:
    """Load ``raw`` from a file; it must be refused; return (file, message)."""
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_campaign(path)
    message = str(info.value)
    assert str(path) in message, f"the error must name the file: {message}"
    return path, message


def key_line(message: str, key: str) -> str:
    """The line of the error report about ``key`` (``  <key>: <what is wrong>``)."""
    lines = [ln for ln in message.splitlines() if ln.strip().startswith(f"{key}:")]
    assert lines, f"no line about {key!r} in:\n{message}"
    return lines[0]


# --- the committed demo ---------------------------------------------------------------------


def test_demo_config_loads_from_a_string_path_too():
    assert load_campaign(str(DEMO)) == load_campaign(DEMO)


# --- errors name the file and the key -------------------------------------------------------


def test_unknown_top_level_key_is_named(tmp_path):
    _, msg = refused(tmp_path, minimal(batch_sise=10))
    assert "Extra inputs are not permitted" in key_line(msg, "batch_sise")


def test_unknown_nested_key_is_named_with_its_path(tmp_path):
    raw = minimal()
    raw["data"]["sourc"] = "typo.csv"
    _, msg = refused(tmp_path, raw)
    assert "not permitted" in key_line(msg, "data.sourc")


def test_unknown_key_two_levels_down_is_named_with_its_path(tmp_path):
    raw = minimal()
    raw["data"]["holdout"] = {"fraction": 0.2, "sede": 1}
    _, msg = refused(tmp_path, raw)
    key_line(msg, "data.holdout.sede")


def test_missing_required_key_is_named(tmp_path):
    raw = minimal()
    del raw["data"]["source"]
    _, msg = refused(tmp_path, raw)
    assert "required" in key_line(msg, "data.source").lower()


def test_wrong_type_is_named(tmp_path):
    _, msg = refused(tmp_path, minimal(batch_size="ten"))
    assert "integer" in key_line(msg, "batch_size")


@pytest.mark.parametrize(
    ("budget", "key"),
    [
        ({"labels": -5}, "budget.labels"),
        ({"labels": 0}, "budget.labels"),
        ({"currency": -1.0}, "budget.currency"),
        ({"cost_per_annotation": -0.1}, "budget.cost_per_annotation"),
        ({"value_per_point": -2}, "budget.value_per_point"),
    ],
)
def test_negative_or_zero_budget_is_refused(tmp_path, budget, key):
    _, msg = refused(tmp_path, minimal(budget=budget))
    assert "greater than" in key_line(msg, key)


def test_every_bad_key_is_reported_at_once(tmp_path):
    raw = minimal(batch_size="ten")
    raw["data"]["sourc"] = "x"
    _, msg = refused(tmp_path, raw)
    assert "2 problem(s)" in msg
    key_line(msg, "batch_size")
    key_line(msg, "data.sourc")


def test_unknown_strategy_lists_the_known_names(tmp_path):
    _, msg = refused(tmp_path, minimal(strategy={"name": "marginn"}))
    line = key_line(msg, "strategy.name")
    assert "'marginn'" in line
    for name in strategies.names():
        assert name in line


@pytest.mark.parametrize("field", ["cold_start", "drift_fallback"])
def test_unknown_fallback_strategies_are_refused(tmp_path, field):
    _, msg = refused(tmp_path, minimal(strategy={field: "nope"}))
    assert "unknown strategy" in key_line(msg, f"strategy.{field}")


def test_strategy_params_the_strategy_does_not_take_are_refused(tmp_path):
    _, msg = refused(
        tmp_path, minimal(strategy={"name": "margin", "params": {"candidate_factor": 5}})
    )
    line = key_line(msg, "strategy")
    assert "'margin'" in line
    assert "candidate_factor" in line


def test_strategy_params_the_strategy_takes_are_kept(tmp_path):
    path = write(
        tmp_path, minimal(strategy={"name": "cluster_margin", "params": {"candidate_factor": 5}})
    )
    assert load_campaign(path).strategy.params == {"candidate_factor": 5}


@pytest.mark.parametrize(
    ("estimator", "why"),
    [
        ("sklearn.linear_model.NoSuchClassifier", "cannot import"),
        ("sklearn.no_such_module.LogisticRegression", "cannot import"),
        ("collections.OrderedDict", "scikit-learn class path"),
        ("LogisticRegression", "scikit-learn class path"),
        ("sklearn.svm.LinearSVC", "no predict_proba"),
        ("sklearn.linear_model.LinearRegression", "no predict_proba"),
    ],
)
def test_bad_estimators_are_refused(tmp_path, estimator, why):
    _, msg = refused(tmp_path, minimal(model={"estimator": estimator}))
    line = key_line(msg, "model.estimator")
    assert why in line
    assert estimator in line


def test_estimator_without_predict_proba_under_its_params_is_refused(tmp_path):
    _, msg = refused(tmp_path, minimal(model={"estimator": "sklearn.svm.SVC", "params": {}}))
    line = key_line(msg, "model")
    assert "no predict_proba" in line and "probability: true" in line


def test_estimator_params_it_does_not_take_are_refused(tmp_path):
    _, msg = refused(
        tmp_path,
        minimal(
            model={
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iterr": 5},
            }
        ),
    )
    assert "max_iterr" in msg


def test_svc_with_probability_is_accepted(tmp_path):
    path = write(
        tmp_path, minimal(model={"estimator": "sklearn.svm.SVC", "params": {"probability": True}})
    )
    assert hasattr(load_campaign(path).model.build(), "predict_proba")


def test_duplicate_labels_are_refused(tmp_path):
    _, msg = refused(tmp_path, minimal(labels=["cat", "dog", "cat"]))
    assert "distinct" in key_line(msg, "labels")


def test_fewer_than_two_labels_are_refused(tmp_path):
    _, msg = refused(tmp_path, minimal(labels=["only"]))
    key_line(msg, "labels")


@pytest.mark.parametrize("name", ["Letter Demo", "UPPER", "-dash-first", "a/b", "", "x" * 64])
def test_bad_campaign_names_are_refused(tmp_path, name):
    _, msg = refused(tmp_path, minimal(name=name))
    assert "lowercase" in key_line(msg, "name")


@pytest.mark.parametrize("name", ["a", "letter-demo", "run_2", "0abc", "x" * 63])
def test_good_campaign_names_are_accepted(tmp_path, name):
    assert load_campaign(write(tmp_path, minimal(name=name))).name == name


@pytest.mark.parametrize(
    "token",
    [
        "sk-live-9f8e7d6c5b4a39281706",  # dashes
        "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbiI6InJlZnJlc2gifQ.c2lnbmF0dXJl",  # a JWT (PAT)
        "7f3c9a1b2d4e6f8091a2b3c4d5e6f708192a3b4c",  # a legacy token starting with a digit
    ],
)
def test_token_env_holding_a_token_is_refused_without_echoing_it(tmp_path, token):
    _, msg = refused(tmp_path, minimal(labelstudio={"token_env": token}))
    assert "NAME of an environment variable" in key_line(msg, "labelstudio.token_env")
    assert token not in msg, "the secret must not be echoed into logs"


def test_token_env_holding_a_hex_token_starting_with_a_letter_is_refused(tmp_path):
    token = "d6f8a2b3c4e5f60718293a4b5c6d7e8f90a1b2c3"
    _, msg = refused(tmp_path, minimal(labelstudio={"token_env": token}))
    assert "NAME of an environment variable" in key_line(msg, "labelstudio.token_env")
    assert token not in msg, "the secret must not be echoed into logs"


def test_token_env_with_a_variable_name_is_accepted(tmp_path):
    cfg = load_campaign(write(tmp_path, minimal(labelstudio={"token_env": "MY_LS_TOKEN"})))
    assert cfg.labelstudio.token_env == "MY_LS_TOKEN"


@pytest.mark.parametrize("stopping", [{"max_labels": 100}, {"max_cost": 50.0}])
def test_budgets_under_stopping_are_refused(tmp_path, stopping):
    _, msg = refused(tmp_path, minimal(stopping=stopping))
    assert "under 'budget:'" in msg


def test_unknown_stopping_key_is_named(tmp_path):
    _, msg = refused(tmp_path, minimal(stopping={"plateau_epsilom": 0.01}))
    key_line(msg, "stopping.plateau_epsilom")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_yaml_that_is_not_a_mapping_is_refused(tmp_path, text):
    _, msg = refused(tmp_path, text)
    assert "expected a mapping" in msg


def test_invalid_yaml_is_refused(tmp_path):
    _, msg = refused(tmp_path, "name: t\ndata: {source: [unclosed\n")
    assert "not valid YAML" in msg


def test_missing_file_is_refused(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_campaign(path)
    assert str(path) in str(info.value)


def test_a_folder_is_not_a_campaign_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_campaign(tmp_path)


# --- manual-run overrides -------------------------------------------------------------------


@pytest.fixture
def cfg(tmp_path) -> CampaignConfig:
    raw = minimal(
        strategy={
            "name": "cluster_margin",
            "params": {"candidate_factor": 5},
            "cold_start": "random",
        },
        batch_size=20,
        budget={
            "labels": 100,
            "currency": 30.0,
            "cost_per_annotation": 0.25,
            "value_per_point": 2.0,
        },
        annotators_per_item=3,
    )
    return load_campaign(write(tmp_path, raw))


def test_overrides_apply_and_leave_the_original_alone(cfg):
    new = cfg.with_overrides(batch_size=7, budget_labels=40, budget_currency=12.5)
    assert (new.batch_size, new.budget.labels, new.budget.currency) == (7, 40, 12.5)
    assert (cfg.batch_size, cfg.budget.labels, cfg.budget.currency) == (20, 100, 30.0)
    assert new.budget.cost_per_annotation == cfg.budget.cost_per_annotation
    assert new.rules().max_labels == 40


def test_none_overrides_are_ignored(cfg):
    assert cfg.with_overrides(batch_size=None, strategy=None, budget_labels=None) == cfg
    assert cfg.with_overrides() == cfg


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"budget_labels": 0}, "budget.labels"),
        ({"budget_currency": -1.0}, "budget.currency"),
        ({"strategy": "nope"}, "strategy.name"),
    ],
)
def test_overrides_are_validated(cfg, overrides, key):
    with pytest.raises(ConfigError) as info:
        cfg.with_overrides(**overrides)
    key_line(str(info.value), key)


def test_unknown_override_key_is_refused_and_named(cfg):
    with pytest.raises(ConfigError, match="batchsize"):
        cfg.with_overrides(batchsize=5)


def test_strategy_override_resets_params_and_keeps_the_rest(cfg):
    new = cfg.with_overrides(strategy="margin")
    assert new.strategy.name == "margin"
    assert new.strategy.params == {}  # candidate_factor would be refused by margin
    assert new.strategy.cold_start == "random"
    assert cfg.strategy.params == {"candidate_factor": 5}


# --- rules and derived values ---------------------------------------------------------------


def test_rules_carry_the_budget_and_the_cost_per_item(cfg):
    rules = cfg.rules()
    assert isinstance(rules, StoppingRules)
    assert rules.max_labels == 100
    assert rules.max_cost == 30.0
    assert rules.cost_per_label == pytest.approx(3 * 0.25)
    assert cfg.cost_per_item == pytest.approx(0.75)
    assert rules.value_per_point == 2.0


def test_rules_keep_the_stopping_thresholds_of_the_file(tmp_path):
    raw = minimal(stopping={"target_metric": 0.8, "plateau_window": 5}, budget={"labels": 10})
    rules = load_campaign(write(tmp_path, raw)).rules()
    assert (rules.target_metric, rules.plateau_window, rules.max_labels) == (0.8, 5, 10)
    assert rules.max_cost is None


def test_derived_names_default_from_the_campaign_name(tmp_path):
    cfg = load_campaign(write(tmp_path, minimal(name="shoes")))
    assert cfg.project_title == "Loopwise shoes"
    assert cfg.experiment == "loopwise-shoes"
    assert cfg.deployment == "cycle/shoes"


def test_derived_names_can_be_set_explicitly(tmp_path):
    raw = minimal(
        name="shoes",
        labelstudio={"project_title": "Shoe triage"},
        mlflow={"experiment": "exp-7"},
        schedule={"deployment": "cycle/prod-shoes"},
    )
    cfg = load_campaign(write(tmp_path, raw))
    assert cfg.project_title == "Shoe triage"
    assert cfg.experiment == "exp-7"
    assert cfg.deployment == "cycle/prod-shoes"


def test_text_campaign_kind(tmp_path):
    raw = minimal()
    raw["data"]["text_column"] = "body"
    assert load_campaign(write(tmp_path, raw)).data.kind == "text"


def test_id_text_and_label_columns_must_differ(tmp_path):
    raw = minimal()
    raw["data"].update(text_column="x", label_column="x")
    _, msg = refused(tmp_path, raw)
    assert "must differ" in key_line(msg, "data")


# --- the estimator --------------------------------------------------------------------------


def test_model_build_gives_a_fresh_unfitted_estimator_with_params():
    m = ModelConfig(
        estimator="sklearn.linear_model.LogisticRegression", params={"C": 0.5, "max_iter": 77}
    )
    a, b = m.build(), m.build()
    assert isinstance(a, LogisticRegression)
    assert a is not b
    assert (a.C, a.max_iter) == (0.5, 77)
    assert not hasattr(a, "coef_")
    a.set_params(C=9.0)
    assert m.build().C == 0.5
    assert m.params == {"C": 0.5, "max_iter": 77}


def test_the_default_model_gives_a_probability_per_class_it_saw(blobs):
    """A campaign without ``model:`` must still give the strategies probabilities."""
    _, X_pool, X_lab, y_lab, _ = blobs
    names = np.array(["ant", "bee", "cat", "dog"])[y_lab]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = minimal_config().model.build().fit(X_lab, names)
    proba = est.predict_proba(X_pool)
    assert list(est.classes_) == ["ant", "bee", "cat", "dog"]
    assert proba.shape == (len(X_pool), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_every_config_key_is_documented_in_the_readme():
    from pathlib import Path

    from pydantic import BaseModel

    from loopwise.config import CampaignConfig

    doc = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    doc = doc[doc.index("## Configuration: every key") :]

    def keys(model: type[BaseModel], prefix: str = ""):
        for name, field in model.model_fields.items():
            kind = field.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel) and name != "stopping":
                yield from keys(kind, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    missing = []
    for key in keys(CampaignConfig):
        head, _, leaf = key.rpartition(".")
        if f"`{key}`" not in doc and not (head and f"`{head}." in doc and f".{leaf}`" in doc):
            missing.append(key)
    assert not missing, f"README.md (Configuration) does not describe {missing}"


def test_a_separate_holdout_file_needs_an_id_column(tmp_path):
    from loopwise.config import ConfigError, load_campaign

    path = tmp_path / "c.yaml"
    path.write_text(
        "name: c\nlabels: [a, b]\ndata: {source: pool.csv, holdout: {source: holdout.csv}}\n"
    )
    with pytest.raises(ConfigError, match="id_column"):
        load_campaign(path)


def test_the_overlap_policy_comes_from_the_config_and_a_manual_run():
    cfg = minimal_config(annotators_per_item=2, max_annotations_per_item=4)
    assert cfg.overlap.policy == "fixed"
    assert cfg.overlap_policy().initial == 2 and cfg.overlap_policy().max_annotations == 4
    adaptive = cfg.with_overrides(overlap_policy="adaptive")
    assert adaptive.overlap_policy().initial == 1
    assert adaptive.overlap.model_weight == cfg.overlap.model_weight
    with pytest.raises(ConfigError, match=r"overlap\.policy"):
        cfg.with_overrides(overlap_policy="sometimes")


def test_under_adaptive_overlap_a_label_costs_what_was_paid_per_label_so_far():
    budget = {"cost_per_annotation": 0.5, "value_per_point": 1.0}
    fixed = minimal_config(annotators_per_item=2, budget=budget)
    history = [{"cycle": 0, "labels": 40, "cost": 26.0}]
    assert fixed.rules(history).cost_per_label == 1.0  # 2 annotators x 0.5, whatever was paid
    adaptive = minimal_config(annotators_per_item=2, budget=budget, overlap={"policy": "adaptive"})
    assert adaptive.rules().cost_per_label == 0.5  # no history: one answer per label
    assert adaptive.rules(history).cost_per_label == pytest.approx(26.0 / 40)
