"""The one markdown table writer: every report (profile, plan, kernel speed) uses it."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd


def cell(x: Any) -> str:
    """Numbers to 4 significant digits; missing values (None, NaN) as empty cells."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def table(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "| " + " | ".join("---" for _ in df.columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
