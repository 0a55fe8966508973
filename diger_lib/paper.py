"""The paper's numbers as transcribed (``resources/paper_tables.json``): DIGER's Tables 1, 2, 4, 5 and UniGRec's."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAPER_TABLES = Path(__file__).parent / "resources" / "paper_tables.json"

# notebook 04's run labels -> the row of Table 2 that reports the same method
TABLE2_ROWS = ("Two-Stage", "STE", "DIGER (FrqUD)", "DIGER (SDUD)", "DIGER (SDUD+FrqUD)")


def paper_tables() -> dict[str, Any]:
    """The DIGER and UniGRec tables as transcribed."""
    return json.loads(PAPER_TABLES.read_text())


def paper_row(label: str, dataset: str) -> dict[str, float] | None:
    """The paper's R@5, R@10, N@5, N@10 for a run label on a dataset (Table 2, or Table 4 for DIGER w/o UD on
    Beauty; UniGRec's Table 3 for its M0-M6 labels on Beauty), else None."""
    diger = paper_tables()["diger"]
    if label in TABLE2_ROWS:
        return diger["table2_differentiable_vs_two_stage"].get(dataset, {}).get(label)
    if label == "DIGER (w/o UD)" and dataset == "Beauty":
        return diger["table4_ablation_beauty"]["DIGER-w/o UD"]
    if dataset == "Beauty":  # UniGRec's ablation rows (its Table 3, Beauty only)
        return paper_tables()["unigrec"]["table3_ablation_beauty"].get(label)
    return None
