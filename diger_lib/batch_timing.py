"""How long each part of the paper_cpu batch took (issue 12 asks the README to say so): every notebook run of a
profile, by the part of the paper it belongs to, summed from each run's ``timing.json`` (``figures/timing.md``)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from .reproduce import TABLE2_ROWS, TABLE4_ROWS, parse_name

# How long each part of the batch took (the issue asks the README to say so): every notebook run of the profile, by part.
PARTS = ("data (01)", "item text and tokenizers (02, 03)", "Table 2, Beauty", "Table 2, Instruments", "Table 2, Yelp",
         "Table 4 (Beauty)", "Table 5 (Beauty, tokenizers included)", "Figure 5", "Figures 2, 6, 7 (05)",
         "tables and claims (06)", "other")


def run_part(dirname: str) -> str:
    """The part of the paper a run folder (``<notebook stem>__<variant>``) belongs to, one of :data:`PARTS`."""
    stem, _, variant = dirname.partition("__")
    parsed = parse_name(variant) if stem == "04_train_recommender" else None
    if parsed:
        ds, key, _ = parsed
        if key in TABLE2_ROWS and ds in ("Beauty", "Instruments", "Yelp"):
            return f"Table 2, {ds}"
        if key in TABLE4_ROWS:
            return "Table 4 (Beauty)"
        if re.fullmatch(r"K\d+_m\d+", key):
            return "Table 5 (Beauty, tokenizers included)"
        if key.startswith(("frqud_r", "sdud_lambda")):
            return "Figure 5"
    if stem == "03_pretrain_rqvae" and re.search(r"_K\d+_m\d+$", variant):
        return "Table 5 (Beauty, tokenizers included)"
    return {"01_prepare_data": "data (01)", "02_encode_item_text": "item text and tokenizers (02, 03)",
            "03_pretrain_rqvae": "item text and tokenizers (02, 03)", "05_sid_dynamics_figures": "Figures 2, 6, 7 (05)",
            "06_results_tables": "tables and claims (06)"}.get(stem, "other")


def timing(runs_dir) -> pd.DataFrame:
    """Minutes per part over every finished run folder of ``runs_dir`` (those with ``timing.json``). A run's time is
    its notebook's wall time; for a run resumed from a checkpoint, its training time over all calls if that is longer."""
    rows = []
    for d in sorted(p for p in Path(runs_dir).iterdir() if (p / "timing.json").is_file()):
        t = json.loads((d / "timing.json").read_text())
        secs = max(float(t.get("wall_seconds") or 0.0), float(t.get("train_wall_seconds") or 0.0))
        rows.append({"part": run_part(d.name), "run": d.name, "minutes": secs / 60})
    df = pd.DataFrame(rows, columns=["part", "run", "minutes"])
    out = df.groupby("part", sort=False).agg(runs=("run", "size"), minutes=("minutes", "sum"),
                                             longest=("minutes", "max")).reindex(
        [p for p in PARTS if p in set(df["part"])]).reset_index()
    total = pd.DataFrame([{"part": "all", "runs": int(out["runs"].sum()), "minutes": out["minutes"].sum(),
                           "longest": out["longest"].max() if len(out) else float("nan")}])
    return pd.concat([out, total], ignore_index=True).round({"minutes": 1, "longest": 1})


def write_timing(runs_dir, fig_dir, name: str = "timing") -> Path:
    """figures/<name>.md and .csv: :func:`timing` with a line on how to read it."""
    from .atomic import atomic_open
    from .tables import markdown_table

    df, f = timing(runs_dir), Path(fig_dir) / f"{name}.md"
    view = df.assign(minutes=df["minutes"].map("{:.1f}".format), longest=df["longest"].map("{:.1f}".format))
    with atomic_open(f.with_suffix(".csv"), "w") as fh:
        df.to_csv(fh, index=False)
    with atomic_open(f, "w") as fh:
        fh.write(f"# How long each part took\n\nThe sum of every run's wall time (a resumed run: its training time over "
                 f"all calls), from each run's `timing.json` in `{runs_dir}`. The runner's `--workers 2` runs two "
                 f"trainings at once, so the batch's elapsed time is about half the training total.\n\n"
                 f"{markdown_table(view)}")
    return f
