"""DIGER's Table 3 (R@10 and N@10 of every baseline on Beauty, Instruments, Yelp), the paper's number beside ours.

Our conventional rows are the runs of notebook 03b (cornac, ``baselines.py``), named ``<Dataset>__<model>__s<seed>``;
the generative rows TIGER, LETTER and DIGER are notebook-04 runs of another profile (``reproduce.py``'s keys
``two_stage``, ``two_stage_letter``, ``diger_frqud``), and so are our two floors on top of each dataset (most popular,
Markov-1; not in the paper). A row nobody trains says why (``baselines.ABSENT``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from .atomic import atomic_open
from .baselines import ABSENT, GENERATIVE_ROWS, TABLE3_ROW
from .paper import paper_tables
from .reproduce import FLOOR_ROWS, Cell, collect
from .runs import Run, read_run
from .tables import markdown_table

STEM = "03b_conventional_baselines"
DATASETS = ("Beauty", "Instruments", "Yelp")


def read_baseline_runs(runs_dir: Path | str) -> list[Run]:
    """Every finished notebook-03b run in ``runs_dir``, named by its variant (``Beauty__sasrec__s2026``)."""
    dirs = sorted(d for d in Path(runs_dir).glob(f"{STEM}__*") if (d / "metrics.json").is_file())
    return [read_run(d)._replace(name=d.name.split("__", 1)[1]) for d in dirs]


def _source(row: str) -> tuple[str, str]:
    """(who trains the row, the key its runs carry)."""
    for model, label in TABLE3_ROW.items():
        if label == row:
            return "cornac (notebook 03b)", model.value
    if row in GENERATIVE_ROWS:
        return "ours (notebook 04)", GENERATIVE_ROWS[row]
    return "absent: " + ABSENT.get(row, "not reproduced"), ""


def table3(baseline_runs: Sequence[Run], generative_runs: Sequence[Run] = (),
           datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (dataset, Table 3 row) in the paper's order: the paper's R@10 and N@10, ours (mean and sd over
    seeds; R@5 and N@5 too), how many runs, and where the row comes from. Datasets: the paper's three, then any other
    dataset our runs have (a dataset of one's own, the test fixture)."""
    ours: dict[tuple[str, str], Cell] = {**collect(generative_runs), **collect(baseline_runs)}
    if datasets is None:
        datasets = list(DATASETS) + sorted({ds for ds, _ in ours} - set(DATASETS))
    paper = paper_tables()["diger"]["table3_baselines_R10_N10"]
    rows = []
    floors = [(label, "ours (notebook 04): a floor, not in the paper", key, {}) for key, label in FLOOR_ROWS.items()]
    for ds in datasets:
        for row, source, key, per_ds in floors + [(row, *_source(row), per_ds) for row, per_ds in paper.items()]:
            c = ours.get((ds, key)) if key else None
            r10, n10 = per_ds.get(ds, (math.nan, math.nan))
            out = {"dataset": ds, "row": row, "source": source, "paper_R@10": r10, "paper_N@10": n10}
            for mt in ("R@5", "R@10", "N@5", "N@10"):
                out[mt] = c.mean[mt] if c else math.nan
                out[f"{mt}_sd"] = c.sd[mt] if c else math.nan
            out["runs"] = len(c.runs) if c else 0
            rows.append(out)
    return pd.DataFrame(rows)


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """The reader's view: paper R@10/N@10 beside ours (± sd over seeds), and the row's source."""
    def fmt(m: float, s: float) -> str:
        return "" if math.isnan(m) else f"{m:.4f}" + ("" if math.isnan(s) else f" ± {s:.4f}")

    out = pd.DataFrame({"dataset": df["dataset"], "row": df["row"]})
    for mt in ("R@10", "N@10"):
        out[f"paper {mt}"] = df[f"paper_{mt}"].map(lambda v: "" if math.isnan(v) else f"{v:.4f}")
        out[f"ours {mt}"] = [fmt(m, s) for m, s in zip(df[mt], df[f"{mt}_sd"])]
    out["runs"] = df["runs"]
    out["source"] = df["source"]
    return out


def write_table3(df: pd.DataFrame, fig_dir: Path | str, note: str = "") -> list[Path]:
    """``table3.csv`` (every number) and ``table3.md`` (paper vs ours) in ``fig_dir``."""
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(fig_dir / "table3.csv", "w") as fh:
        df.to_csv(fh, index=False)
    with atomic_open(fig_dir / "table3.md", "w") as fh:
        fh.write(f"# Table 3: paper vs ours (R@10, N@10; full ranking, all test users)\n\n{note}\n\n"
                 f"{markdown_table(display_table(df))}")
    return [fig_dir / "table3.csv", fig_dir / "table3.md"]



def refresh(baseline_dir: Path | str, generative: str, fig_dir: Path | str,
            extra: Sequence[Run] = ()) -> tuple[pd.DataFrame, list[Path]]:
    """Rebuild ``figures/table3`` from every finished notebook-03b run in ``baseline_dir`` (``extra``: runs not yet in
    it, e.g. the notebook's own, replacing a run of the same name) and the notebook-04 runs of the ``generative``
    profile, its sibling folder ("": none). Notebook 03b calls it after each run; ``python -m diger_lib.cli table3``
    after generative runs land."""
    import cornac

    from .runs import read_runs

    names = {r.name for r in extra}
    done = [r for r in read_baseline_runs(baseline_dir) if r.name not in names] + list(extra)
    gen_dir = Path(baseline_dir).parent / generative if generative else None
    gen = read_runs(gen_dir) if gen_dir is not None and gen_dir.is_dir() else []
    df = table3(done, gen)
    note = (f"Ours: cornac {cornac.__version__} rows ({len(done)} runs of notebook 03b, profile "
            f"{Path(baseline_dir).name}); TIGER, LETTER, DIGER and the two floors from profile {generative or 'none'} "
            f"({len(gen)} runs).")
    return df, write_table3(df, fig_dir, note=note)
