"""Turning a column of mixed values into pandas strings, keeping missing values missing."""

from __future__ import annotations

import pandas as pd


def as_text(values: pd.Series) -> pd.Series:
    """`values` as the `str` dtype: strings kept, missing values missing, others as `str(value)`."""
    if isinstance(values.dtype, pd.StringDtype) or (
        pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")
    ):
        return values.astype("str")
    converted = [
        value if isinstance(value, str) else (None if _is_missing(value) else str(value))
        for value in values.array
    ]
    return pd.Series(converted, index=values.index, dtype="str")


def _is_missing(value: object) -> bool:
    """Whether `value` is None, NaN, NaT or pd.NA (and not a container)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
