"""Tables as GitHub Markdown (figures/*.md and what notebooks display), without a tabulate dependency."""
from __future__ import annotations

import math


def markdown_table(df) -> str:
    """pandas DataFrame -> GitHub Markdown table."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = []
        for v in row.tolist():
            if isinstance(v, float):
                cells.append("" if math.isnan(v) else (f"{v:.4f}" if abs(v) < 10 else f"{v:,.2f}"))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
