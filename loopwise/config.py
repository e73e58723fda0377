"""Campaign configuration: one YAML file per campaign, validated by pydantic models.

A campaign says where the pool is, which columns mean what, the label set, the
model, the query strategy, the batch, the annotators, the budget and the
stopping rules, and where the servers and the state live. A bad file is an
error that names the file and the key::

    from loopwise.config import load_campaign
    cfg = load_campaign("configs/demo.yaml")

Secrets never live here: the Label Studio token is read from the environment
variable named by ``labelstudio.token_env``.
"""

from __future__ import annotations

import codecs
import importlib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopwise import consensus as consensus_methods
from loopwise import strategies
from loopwise.overlap import OverlapPolicy
from loopwise.stopping import StoppingRules

__all__ = [
    "BudgetConfig",
    "CampaignConfig",
    "ChampionConfig",
    "ConfigError",
    "DataConfig",
    "LabelStudioConfig",
    "ModelConfig",
    "OverlapConfig",
    "StrategyConfig",
    "load_campaign",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConfigError(ValueError):
    """A campaign file that cannot be used; the message names the file and the keys."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HoldoutConfig(_Strict):
    """Rows with known labels kept out of the pool to measure every model."""

    source: str | None = Field(
        None, description="a separate labeled file (path or s3://); else a split of the pool"
    )
    fraction: float = Field(0.2, gt=0.0, lt=0.9, description="share of labeled rows held out")
    seed: int = 0
    max_rows: int | None = Field(
        None,
        gt=0,
        description="evaluate on at most this many holdout rows (a stable subset chosen by the "
        "same hash); default: all of them, and 20,000 for a partitioned pool",
    )


class DataConfig(_Strict):
    """The pool and what its columns mean."""

    source: str = Field(description="CSV or Parquet, a local path or s3://bucket/key")
    format: Literal["auto", "csv", "parquet"] = "auto"
    encoding: str | None = Field(
        None, description="text encoding of a CSV source (e.g. latin-1, cp1252); default UTF-8"
    )
    id_column: str | None = Field(None, description="unique item id; default: the row number")
    feature_columns: list[str] | None = Field(
        None, description="numeric/categorical features; default: every other column"
    )
    text_column: str | None = Field(None, description="the text to label, for text campaigns")
    label_column: str | None = Field(
        None,
        description="ground truth where it exists: used for the holdout and by simulated "
        "annotators, never shown to the model",
    )
    max_rows: int | None = Field(None, gt=0, description="use only the first N rows")
    holdout: HoldoutConfig = HoldoutConfig()
    validation_suite: str | None = Field(
        None, description="great-expectations suite JSON for the pool (expectations/...)"
    )
    min_valid_fraction: float = Field(
        0.9, gt=0.0, le=1.0, description="fail the cycle if fewer rows than this pass validation"
    )
    partitioned: bool = Field(
        False,
        description="handle the pool as Parquet partitions, never whole in the flow process; "
        "implied by a folder or an s3:// prefix ending in '/'; a single CSV or Parquet file is "
        "converted once into partitions (only its new rows when it grows)",
    )
    partition_rows: int = Field(
        100_000, ge=100, description="rows per partition when a single file is converted"
    )

    @property
    def source_is_folder(self) -> bool:
        """Whether ``source`` is a folder or an ``s3://`` prefix (ending in '/') of partitions."""
        src = self.source
        return src.endswith("/") or (not src.startswith("s3://") and Path(src).is_dir())

    @property
    def is_partitioned(self) -> bool:
        """Whether the pool is read partition by partition (see ``partitioned``)."""
        return self.partitioned or self.source_is_folder

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(
                f"unknown text encoding {v!r}; use a Python codec name such as utf-8, "
                "latin-1, cp1252 or utf-16"
            ) from None
        return v

    @model_validator(mode="after")
    def _encoding_is_for_csv(self) -> DataConfig:
        parquet = self.format == "parquet" or (
            self.format == "auto" and self.source.lower().endswith((".parquet", ".pq"))
        )
        if self.encoding is not None and parquet:
            raise ValueError(
                f"data.encoding {self.encoding!r} applies to CSV only; {self.source} is Parquet "
                "(its text is always UTF-8): remove the key"
            )
        return self

    @model_validator(mode="after")
    def _partitioned_takes_all_rows(self) -> DataConfig:
        if self.max_rows is not None and self.is_partitioned:
            raise ValueError(
                "data.max_rows applies to a single-file pool, not to a partitioned one: "
                "point data.source at fewer partitions instead"
            )
        return self

    @model_validator(mode="after")
    def _holdout_file_needs_ids(self) -> DataConfig:
        if self.holdout.source is not None and self.id_column is None:
            raise ValueError(
                "data.holdout.source needs data.id_column: row numbers cannot tell the "
                "holdout's rows from the pool's"
            )
        return self

    @model_validator(mode="after")
    def _columns_distinct(self) -> DataConfig:
        named = [c for c in (self.id_column, self.text_column, self.label_column) if c]
        if len(named) != len(set(named)):
            raise ValueError(f"id_column, text_column and label_column must differ, got {named}")
        if self.feature_columns and set(self.feature_columns) & set(named):
            raise ValueError(
                f"feature_columns must not include {sorted(set(self.feature_columns) & set(named))}"
            )
        return self

    @property
    def kind(self) -> str:
        """``text`` when a text column is named, else ``tabular``."""
        return "text" if self.text_column else "tabular"


class ModelConfig(_Strict):
    """A scikit-learn estimator by dotted name, its parameters, and the preprocessing."""

    estimator: str = "sklearn.linear_model.LogisticRegression"
    params: dict[str, Any] = Field(default_factory=lambda: {"max_iter": 1000})
    scale: bool = Field(True, description="standardize numeric features (tabular data)")

    @field_validator("estimator")
    @classmethod
    def _importable(cls, v: str) -> str:
        module, _, name = v.rpartition(".")
        if not module.startswith("sklearn."):
            raise ValueError(f"estimator must be a scikit-learn class path, got {v!r}")
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"cannot import estimator {v!r}: {err}") from None
        if not hasattr(obj, "predict_proba"):
            raise ValueError(f"estimator {v!r} has no predict_proba")
        return v

    @model_validator(mode="after")
    def _buildable(self) -> ModelConfig:
        try:
            est = self.build()
        except TypeError as err:
            raise ValueError(f"{self.estimator} does not take these params: {err}") from None
        if not hasattr(est, "predict_proba"):
            raise ValueError(
                f"{self.estimator} with params {self.params} has no predict_proba "
                "(for SVC, set probability: true)"
            )
        return self

    def build(self) -> Any:
        """A fresh, unfitted estimator."""
        module, _, name = self.estimator.rpartition(".")
        return getattr(importlib.import_module(module), name)(**self.params)


class StrategyConfig(_Strict):
    """The query strategy by name (``loopwise strategies`` lists them) and its parameters."""

    name: str = strategies.DEFAULT
    params: dict[str, Any] = Field(default_factory=dict)
    cold_start: str = Field("cold_start", description="strategy while nothing is labeled")
    drift_fallback: str = Field(
        "kmeans", description="strategy for a batch drawn while the pool has drifted"
    )

    @field_validator("name", "cold_start", "drift_fallback")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in strategies.names():
            raise ValueError(f"unknown strategy {v!r}; known: {', '.join(strategies.names())}")
        return v

    @model_validator(mode="after")
    def _params_accepted(self) -> StrategyConfig:
        try:
            strategies.get(self.name, **self.params)
        except TypeError as err:
            raise ValueError(f"strategy {self.name!r} does not take these params: {err}") from None
        return self


class BudgetConfig(_Strict):
    """What labels cost and what accuracy is worth."""

    labels: int | None = Field(None, gt=0, description="most items to label in the campaign")
    currency: float | None = Field(None, gt=0, description="most money to spend")
    cost_per_annotation: float = Field(0.0, ge=0, description="paid per annotation received")
    value_per_point: float = Field(
        0.0, ge=0, description="what one point (0.01) of the holdout metric is worth"
    )


class OverlapConfig(_Strict):
    """How many annotators each item gets, and whether doubtful labels are asked again
    (:mod:`loopwise.overlap`)."""

    policy: Literal["fixed", "adaptive"] = Field(
        "fixed",
        description="fixed: annotators_per_item answers per item, more on a dispute; "
        "adaptive: one answer, another only while it is worth more on the item than on a "
        "new one (the label's posterior from answers weighed by each annotator's estimated "
        "accuracy, the model's guess as a half-weight prior; see loopwise.overlap)",
    )
    model_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="adaptive: the model's weight in the prior (0: none)"
    )
    relabel: bool = Field(
        False,
        description="each cycle, score accepted labels that may be wrong against new items on "
        "one scale and ask the most doubtful ones again instead of the weakest new picks",
    )
    relabel_max_share: float = Field(
        0.5, ge=0.0, le=1.0, description="relabel: the largest share of a batch asked again"
    )


class ChampionConfig(_Strict):
    """When a new model version takes the registry's ``champion`` alias from the current one."""

    test: Literal["mcnemar", "bootstrap"] = Field(
        "mcnemar",
        description="one-sided paired test on the holdout rows: exact McNemar on the rows only "
        "one model gets right, or a paired bootstrap of the accuracy difference",
    )
    alpha: float = Field(
        0.05,
        gt=0.0,
        lt=0.5,
        description="promote only when the test's p-value is below this; else the new "
        "version is the 'challenger'",
    )


class LabelStudioConfig(_Strict):
    """Where annotators work."""

    url: str = "http://127.0.0.1:8080"
    token_env: str = Field("LABEL_STUDIO_API_KEY", description="env var holding the API token")
    project_title: str | None = Field(None, description="default: 'Loopwise <campaign name>'")
    reviewers: list[str] = Field(
        default_factory=list,
        description="e-mails (or user ids) of the experts whose answer decides an item, "
        "over the annotators' consensus: they resolve the disputes in the review queue",
    )

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) or re.fullmatch(r"[0-9a-f]{20,}", v):
            raise ValueError(
                f"token_env is the NAME of an environment variable, got {v[:4]!r}...; "
                "never put the token itself in the file"
            )
        return v


class MlflowConfig(_Strict):
    """Where cycles are logged."""

    tracking_uri: str = "sqlite:///.loopwise/mlflow.db"
    artifact_location: str | None = Field(
        None, description="default: .loopwise/mlartifacts/<campaign> (local stores)"
    )
    experiment: str | None = Field(None, description="default: 'loopwise-<campaign name>'")


class ScheduleConfig(_Strict):
    """When the next run happens."""

    recheck_seconds: float = Field(
        600,
        gt=0,
        description="delay from a dispatch, or from a check of a batch still being labeled, "
        "to the next run",
    )
    batch_timeout_seconds: float | None = Field(
        604_800,
        gt=0,
        description="an open batch is closed this long after its dispatch (default 7 days; "
        "null waits for every item): the cycle retrains on the labels accepted so far, the "
        "unresolved items stay open in Label Studio and their late answers still count",
    )
    deployment: str | None = Field(
        None, description="'flow/deployment' the next run is created for; default cycle/<name>"
    )
    lease_seconds: float = Field(
        1800,
        ge=30,
        description="one run holds the campaign at a time: its lease lapses this long after "
        "its last renewal (every stage renews it), so the lease of a run that died frees the "
        "campaign for the next run",
    )


class StreamTriggers(_Strict):
    """When the stream asks for a retrain (each rule says why, with its numbers)."""

    min_new_labels: int = Field(
        100, gt=0, description="retrain after this many accepted stream labels since the last"
    )
    drift_window: int = Field(
        500, ge=50, description="live records per drift window (PSI/KS against the snapshot)"
    )
    psi_threshold: float = Field(
        0.2, gt=0, description="PSI of a live input or of the predicted-class mix that is drift"
    )
    ks_alpha: float = Field(
        0.01, gt=0, lt=1, description="KS p-value that lowers the PSI bar to half"
    )
    max_drop: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="retrain when the online accuracy (control labels) is surely this far "
        "below the served model's holdout accuracy",
    )
    min_control: int = Field(
        30, ge=1, description="control labels needed before the online accuracy is judged"
    )


class StreamConfig(_Strict):
    """The production stream: the inference log, inline selection, and retrain triggers."""

    log: str | None = Field(
        None,
        description="the inference log: default <campaign store>/stream/log (the gateway "
        "writes there); or a folder / s3:// prefix of your own JSONL or Parquet segments",
    )
    target_rate: float = Field(
        0.05, gt=0, lt=1, description="share of requests asked about (unless labels_per_hour)"
    )
    labels_per_hour: float | None = Field(
        None, gt=0, description="aim the rate at this many labels per hour of traffic instead"
    )
    control_share: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="share of the asked records drawn at random: the unbiased online accuracy",
    )
    utility: Literal["margin", "entropy", "least_confidence"] = Field(
        "margin", description="how the stream selector scores a prediction"
    )
    window: int | None = Field(
        None, ge=2, description="records the adaptive threshold remembers (default from the rate)"
    )
    drift_boost: float = Field(
        3.0, ge=1, description="after drift, the labeling rate is multiplied by this"
    )
    drift_boost_records: int = Field(
        1000, ge=0, description="for this many records after a drift trigger"
    )
    commit_interval_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="gateway group commit: how long a write waits for company (0: the "
        "writes that arrive during an append share the next one)",
    )
    dispatch_batch: int = Field(
        20, gt=0, le=1000, description="stream records sent to Label Studio per import"
    )
    max_records_per_run: int = Field(
        50_000, gt=0, description="log records one stream run reads at most (the rest next run)"
    )
    reload_seconds: float = Field(
        5.0, gt=0, description="how often the gateway checks whether the champion moved"
    )
    retrain_deployment: str | None = Field(
        None,
        description="the 'flow/deployment' a trigger runs (default: retrain/<campaign name>)",
    )
    triggers: StreamTriggers = StreamTriggers()


class CampaignConfig(_Strict):
    """One active-learning campaign."""

    name: str
    data: DataConfig
    labels: list[str] = Field(min_length=2, description="the label set, in display order")
    model: ModelConfig = ModelConfig()
    strategy: StrategyConfig = StrategyConfig()
    batch_size: int = Field(20, gt=0, le=10_000)
    cold_start_size: int | None = Field(
        None, gt=0, description="first batch when nothing is labeled; default batch_size"
    )
    annotators_per_item: int = Field(1, ge=1, le=20)
    agreement_threshold: float = Field(0.66, gt=0.0, le=1.0)
    consensus: consensus_methods.Method = Field(
        "dawid_skene", description="consensus method, one of loopwise.consensus.METHODS"
    )
    max_annotations_per_item: int = Field(5, ge=1, description="disputes stop at this overlap")
    overlap: OverlapConfig = OverlapConfig()
    budget: BudgetConfig = BudgetConfig()
    champion: ChampionConfig = ChampionConfig()
    stopping: StoppingRules = StoppingRules()
    stop_set_size: int = Field(
        1000, gt=0, description="fixed pool sample on which consecutive models are compared"
    )
    drift_psi_threshold: float = Field(
        0.25, gt=0, description="PSI above which a batch leans on diversity"
    )
    control_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="share of every batch drawn at random: an unbiased accuracy estimate on "
        "the pool and the counterfactual of random labeling",
    )
    score_partitions: int = Field(4, ge=1, le=1024)
    partitions_per_task: int = Field(
        8,
        ge=1,
        le=10_000,
        description="a partitioned pool's partitions checked or scored by one task run (each "
        "run costs its Prefect API calls)",
    )
    dask_address: str | None = Field(
        None,
        description="a Dask scheduler (tcp://host:8786): score the partitions on that cluster "
        "instead of local threads",
    )
    dask_cluster_class: str | None = Field(
        None,
        description="instead of dask_address, a temporary cluster per flow run, by dotted name "
        "(distributed.LocalCluster, dask_kubernetes.operator.KubeCluster)",
    )
    dask_cluster_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="arguments of dask_cluster_class"
    )
    labelstudio: LabelStudioConfig = LabelStudioConfig()
    storage_root: str = ".loopwise/store"
    mlflow: MlflowConfig = MlflowConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    stream: StreamConfig = StreamConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _one_dask(self) -> CampaignConfig:
        if self.dask_address and self.dask_cluster_class:
            raise ValueError(
                "set dask_address (an existing cluster) or dask_cluster_class (one per flow "
                "run), not both"
            )
        if self.dask_cluster_kwargs and not self.dask_cluster_class:
            raise ValueError("dask_cluster_kwargs needs dask_cluster_class")
        return self

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(f"name must be lowercase letters, digits, '-' or '_', got {v!r}")
        return v

    @field_validator("labels")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        v = [str(x) for x in v]
        if len(set(v)) != len(v):
            raise ValueError(f"labels must be distinct, got {v}")
        return v

    @model_validator(mode="after")
    def _budget_not_in_stopping(self) -> CampaignConfig:
        s = self.stopping
        if s.max_labels is not None or s.max_cost is not None:
            raise ValueError(
                "set budgets under 'budget:' (labels, currency), not under 'stopping:'"
            )
        return self

    # Derived values --------------------------------------------------------------------------

    @property
    def project_title(self) -> str:
        """The Label Studio project of this campaign."""
        return self.labelstudio.project_title or f"Loopwise {self.name}"

    @property
    def experiment(self) -> str:
        """The MLflow experiment of this campaign."""
        return self.mlflow.experiment or f"loopwise-{self.name}"

    @property
    def deployment(self) -> str:
        """The Prefect deployment that runs this campaign's cycles."""
        return self.schedule.deployment or f"cycle/{self.name}"

    @property
    def cost_per_item(self) -> float:
        """Expected cost of one labeled item: annotations per item × cost per annotation."""
        return self.annotators_per_item * self.budget.cost_per_annotation

    def overlap_policy(self) -> OverlapPolicy:
        """The campaign's overlap policy (``overlap`` with the annotator counts)."""
        o = self.overlap
        return OverlapPolicy(
            policy=o.policy,
            annotators=self.annotators_per_item,
            max_annotations=self.max_annotations_per_item,
            model_weight=o.model_weight,
        )

    def rules(self, history: list[dict[str, Any]] | None = None) -> StoppingRules:
        """The stopping rules with the budget filled in.

        A label's price is ``cost_per_item`` under the fixed policy; under the adaptive one
        the number of answers per item is not fixed, so it is what the campaign paid per
        accepted label so far (the last ``history`` row), once there is one."""
        per_label = self.cost_per_item
        last = history[-1] if history else None
        if self.overlap.policy == "adaptive":
            per_label = self.budget.cost_per_annotation
            if last and last.get("labels") and last.get("cost") is not None:
                per_label = float(last["cost"]) / float(last["labels"])
        return self.stopping.model_copy(
            update={
                "max_labels": self.budget.labels,
                "max_cost": self.budget.currency,
                "cost_per_label": per_label,
                "value_per_point": self.budget.value_per_point,
            }
        )

    def with_overrides(self, **overrides: Any) -> CampaignConfig:
        """A validated copy with the manual-run overrides (``None`` values are ignored).

        Keys: ``batch_size``, ``strategy`` (a name), ``budget_labels``, ``budget_currency``,
        ``overlap_policy`` (``fixed`` or ``adaptive``).
        """
        data = self.model_dump()
        given = {k: v for k, v in overrides.items() if v is not None}
        known = {"batch_size", "strategy", "budget_labels", "budget_currency", "overlap_policy"}
        unknown = set(given) - known
        if unknown:
            raise ConfigError(f"unknown override(s) {sorted(unknown)}")
        if "batch_size" in given:
            data["batch_size"] = given["batch_size"]
        if "strategy" in given:
            data["strategy"] = {**data["strategy"], "name": given["strategy"], "params": {}}
        if "budget_labels" in given:
            data["budget"]["labels"] = given["budget_labels"]
        if "budget_currency" in given:
            data["budget"]["currency"] = given["budget_currency"]
        if "overlap_policy" in given:
            data["overlap"] = {**data["overlap"], "policy": given["overlap_policy"]}
        try:
            return CampaignConfig.model_validate(data)
        except ValidationError as err:
            raise ConfigError(_describe(err, "overrides")) from None


def _describe(err: ValidationError, where: str) -> str:
    lines = [f"{where}: {err.error_count()} problem(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {key}: {e['msg']}")
    return "\n".join(lines)


def load_campaign(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign YAML file; errors name the file and every bad key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"campaign file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    try:
        return CampaignConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, str(path))) from None
