"""What a request must carry: the feature columns the campaign's model was trained on,
learned once from the campaign's pool, as a strict pydantic model (FastAPI then answers a
missing, unknown or wrong-typed input with a 422 naming it), and the rows the model reads.

Numeric columns take JSON numbers (finite; booleans only for boolean columns), a text
campaign takes its text column as a string. Categorical columns are refused: training
one-hot encodes them over the categories of its frames (:func:`loopwise.features.model_inputs`),
which the registered model does not record, so a request could not be encoded the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from loopwise.config import CampaignConfig
from loopwise.features import feature_matrix

__all__ = ["InputSchema", "UnservableCampaign"]

_NUMBER = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_BOOL = Annotated[bool, Field(strict=True)]
_TEXT = Annotated[str, Field(strict=True, max_length=1_000_000)]
_TYPES = {"number": _NUMBER, "bool": _BOOL, "text": _TEXT}


class UnservableCampaign(ValueError):
    """The campaign's model reads inputs the gateway cannot rebuild from a request."""


@dataclass(frozen=True)
class InputSchema:
    """The model's input fields in training order: name → ``number``, ``bool`` or ``text``."""

    fields: dict[str, str]
    text_column: str | None = None

    @classmethod
    def from_pool(cls, cfg: CampaignConfig, pool: pd.DataFrame) -> InputSchema:
        """The fields :func:`loopwise.features.model_inputs` makes features of, typed by the
        pool's columns; :class:`UnservableCampaign` for categorical feature columns."""
        text = cfg.data.text_column
        if text is not None:
            if text not in pool.columns:
                raise UnservableCampaign(f"text column {text!r} not in {cfg.data.source}")
            return cls({text: "text"}, text_column=text)
        exclude = {c for c in (cfg.data.id_column, cfg.data.label_column) if c} | {"item_id"}
        columns = cfg.data.feature_columns or [c for c in pool.columns if c not in exclude]
        missing = [c for c in columns if c not in pool.columns]
        if missing:
            raise UnservableCampaign(f"feature column(s) {missing} not in {cfg.data.source}")
        categorical = [c for c in columns if not pd.api.types.is_numeric_dtype(pool[c])]
        if categorical:
            raise UnservableCampaign(
                f"campaign {cfg.name} has categorical feature column(s) {categorical}: the "
                "model one-hot encodes them over the categories of its training data, which "
                "the registered model does not record, so the gateway cannot encode a request "
                "the same way. Serve numeric or text campaigns, or drop these columns from "
                "data.feature_columns."
            )
        kinds = {c: "bool" if pd.api.types.is_bool_dtype(pool[c]) else "number" for c in columns}
        return cls(kinds)

    @property
    def width(self) -> int | None:
        """How many features the model reads (None for text: the model's own vectorizer)."""
        return None if self.text_column else len(self.fields)

    def pydantic_model(self) -> type[BaseModel]:
        """A strict model of one record's ``inputs`` (every field required, no other)."""
        # Aliases carry the column names: they need not be identifiers nor avoid pydantic's.
        specs: dict[str, Any] = {
            f"f{i}": (_TYPES[kind], Field(alias=name))
            for i, (name, kind) in enumerate(self.fields.items())
        }
        return create_model(
            "Inputs", __config__=ConfigDict(extra="forbid", populate_by_name=False), **specs
        )

    def rows(self, inputs: Sequence[Mapping[str, Any]]) -> Any:
        """The model's input for validated records: float32 rows in training's column
        order, or the texts as an object array.

        What :func:`loopwise.features.feature_matrix` makes of the same values (numbers and
        booleans as float32, texts as they are) without building a DataFrame, which costs
        more than the prediction; :meth:`frame_rows` goes through it (the tests compare)."""
        if self.text_column is not None:
            return np.array([r[self.text_column] for r in inputs], dtype=object)
        return np.array([[r[c] for c in self.fields] for r in inputs], dtype=np.float32)

    def frame_rows(self, inputs: Sequence[Mapping[str, Any]]) -> Any:
        """:meth:`rows` by way of training's :func:`loopwise.features.feature_matrix`."""
        frame = pd.DataFrame([[r[c] for c in self.fields] for r in inputs], columns=[*self.fields])
        return feature_matrix(
            frame, feature_columns=list(self.fields), text_column=self.text_column
        )

    def mismatch(self, model: Any) -> str | None:
        """Why ``model`` cannot read these rows (its feature count differs), or None."""
        width, n = self.width, getattr(model, "n_features_in_", None)
        if width is None or n is None or int(n) == width:
            return None
        return (
            f"it reads {int(n)} features where the pool's columns give {width} "
            f"({', '.join(list(self.fields)[:10])}{', ...' if width > 10 else ''})"
        )
