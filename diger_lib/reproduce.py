"""The paper's Tables 2, 4, 5 and Figure 5 rebuilt from one profile's notebook-04 runs, every cell beside the
paper's number, and a check of each claim the paper makes with them (issue "Every table and figure").

Runs are found by name: ``<Dataset>__<key>__s<seed>`` (e.g. ``Beauty__diger_frqud__s2026``); seeds of one
``<Dataset>__<key>`` are averaged and their spread reported. The keys a table reads are in the ``*_ROWS``
constants below, so a profile that names its runs this way gets every table (see ``profiles._paper_cpu``).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from .config import FLOOR_METHODS
from .paper import paper_tables
from .runs import DIGEST, Run

METRICS = ("R@5", "R@10", "N@5", "N@10")
_NAME = re.compile(r"^(?P<ds>[A-Za-z0-9]+)__(?P<key>.+?)(?:__s(?P<seed>\d+))?$")

# Table 2 (all datasets): our key -> the paper's row. Most-popular, Markov-1 and LETTER are our calibration rows: the
# paper's Table 2 has none of them (LETTER's R@10/N@10 come from its Table 3 row).
FLOOR_ROWS = {"most_popular": "Most popular (ours only)", "markov1": "Markov-1 (ours only)"}
MAIN_DIGER = "diger_frqud"  # the DIGER row the paper's Tables 4-5 and Figures 2, 6, 7 use (FrqUD, section 5.2)
TABLE2_ROWS = {**dict.fromkeys(FLOOR_ROWS), "two_stage": "Two-Stage", "two_stage_letter": "LETTER", "ste": "STE",
               "diger_sdud": "DIGER (SDUD)", "diger_frqud": "DIGER (FrqUD)", "diger_sdud_frqud": "DIGER (SDUD+FrqUD)"}
# Table 4 (Beauty): the ablations are taken from DIGER without uncertainty decay (the paper's "w/o UD" base).
TABLE4_ROWS = {"two_stage": "Two-Stage", "ste": "Naive E2E (STE)", MAIN_DIGER: "DIGER-w/ UD",
               "diger_none": "DIGER-w/o UD", "abl_no_gumbel": "-w/o Gumbel Noise",
               "abl_hard_update": "-w/o soft update", "abl_tau_anneal": "-w Gumbel tau annealing",
               "abl_gaussian": "-w Gaussian Noise"}
ABLATIONS = ("abl_no_gumbel", "abl_hard_update", "abl_tau_anneal", "abl_gaussian")
TABLE5_GRID = ((128, 3), (256, 3), (512, 3), (256, 2), (256, 4))  # (K, m); K=256, m=3 is the Table 2 run
# Figure 5's grids: a subset of the paper's (r in 1.0-3.0, lambda in 1.0-2.0, section 5.1) that fits the CPU budget
# (profiles._CPU_FIG5); the defaults r = 1.5 and lambda = 1.4 have sweep runs of their own (the same settings as
# Table 2's DIGER rows), so every point of a sweep is on one tokenizer; where a sweep's default run is missing, the
# Table 2 run stands in (with its IDs in the table).
FIG5_R = (1.0, 1.5, 2.0, 3.0)  # hot-code ratio r (FrqUD, Eq. 12)
FIG5_LAMBDA = (1.0, 1.4, 2.0)  # SDUD lambda (Eq. 9)
FLAT_SE = 3.0  # Figure 5 "flat": every grid point's R@10 within FLAT_SE test-set standard errors of each other


def table5_key(K: int, m: int) -> str:
    return MAIN_DIGER if (K, m) == (256, 3) else f"K{K}_m{m}"


def fig5_key(param: str, value: float) -> str:
    """The run key of Figure 5's sweep at ``param = value`` (``frqud_r1.5``, ``sdud_lambda2``, ...)."""
    if param == "r":
        return f"frqud_r{value:g}"
    if param == "lambda":
        return f"sdud_lambda{value:g}"
    raise ValueError(f"unknown Figure 5 parameter {param!r}; use 'r' or 'lambda'")


# the Table 2 run with the same settings as the sweep's default point, which stands in when that run is missing
FIG5_DEFAULTS = {("r", 1.5): "diger_frqud", ("lambda", 1.4): "diger_sdud"}


class Cell(NamedTuple):
    """One (dataset, key) of ours: the mean over seeds, the sample standard deviation (nan with one seed)."""
    mean: dict[str, float]
    sd: dict[str, float]
    seeds: tuple[int, ...]
    runs: tuple[str, ...]
    n_test_users: int
    budgets: tuple[str, ...] = ()  # the distinct training budgets of its runs (``budget``; () when none is recorded)
    ids: tuple[str, ...] = ()  # the distinct semantic IDs its runs trained on (tokenizer_codes_sha256, 8 characters)


# What a run's training budget is: the model's size and how many samples it may see (config.json). Two sides of a claim
# are compared only at the same budget; a run its time budget cut before its last epoch has a smaller one.


def budget(run: Run) -> str:
    """The run's training budget in words ("": no config.json, e.g. a run made by hand)."""
    f = run.dir / "config.json"
    if not f.is_file():
        return ""
    c = json.loads(f.read_text())
    if c.get("method") in FLOOR_METHODS:
        return "no training"
    words = (f"T5 {c.get('n_encoder_layers')}+{c.get('n_decoder_layers')}, d_model {c.get('d_model')}, "
             f"{c.get('epochs')} x {c.get('samples_per_epoch')} samples, batch {c.get('batch_size')}")
    if run.metrics.get("stop_reason") == "time_budget":
        words += f", cut by its time budget after {run.metrics.get('epochs_run', '?')} epochs"
    return words


def parse_name(name: str) -> tuple[str, str, int | None] | None:
    """``Beauty__diger_frqud__s2026`` -> ("Beauty", "diger_frqud", 2026); names without a dataset prefix -> None."""
    m = _NAME.match(name)
    if not m or "__" not in name:
        return None
    return m["ds"], m["key"], int(m["seed"]) if m["seed"] else None


def collect(runs: Sequence[Run]) -> dict[tuple[str, str], Cell]:
    """Group runs by (dataset, key) over seeds."""
    groups: dict[tuple[str, str], list[tuple[int | None, Run]]] = {}
    for r in runs:
        p = parse_name(r.name)
        if p is not None:
            groups.setdefault((p[0], p[1]), []).append((p[2], r))
    out = {}
    for k, members in groups.items():
        members.sort(key=lambda sr: (sr[0] or 0, sr[1].name))
        vals = {mt: np.array([float(r.metrics[mt]) for _, r in members]) for mt in METRICS}
        out[k] = Cell({mt: float(v.mean()) for mt, v in vals.items()},
                      {mt: float(v.std(ddof=1)) if len(v) > 1 else math.nan for mt, v in vals.items()},
                      tuple(s for s, _ in members if s is not None), tuple(r.name for _, r in members),
                      int(members[0][1].metrics.get("n_test_users", 0)),
                      tuple(sorted({b for b in (budget(r) for _, r in members) if b})),
                      tuple(sorted({str(r.metrics[DIGEST])[:8] for _, r in members if r.metrics.get(DIGEST)})))
    return out


def _paper_table2(dataset: str, label: str | None) -> dict[str, float]:
    d = paper_tables()["diger"]
    if label == "LETTER":
        r10, n10 = d["table3_baselines_R10_N10"]["LETTER"].get(dataset, (math.nan, math.nan))
        return {"R@10": r10, "N@10": n10}
    return d["table2_differentiable_vs_two_stage"].get(dataset, {}).get(label, {}) if label else {}


def _row(dataset: str, row: str, key: str, paper: dict[str, float], cells: dict) -> dict[str, Any]:
    c = cells.get((dataset, key))
    out: dict[str, Any] = {"dataset": dataset, "row": row, "key": key}
    for mt in METRICS:
        out[f"paper_{mt}"] = paper.get(mt, math.nan)
        out[mt] = c.mean[mt] if c else math.nan
        out[f"{mt}_sd"] = c.sd[mt] if c else math.nan
    out["seeds"] = len(c.runs) if c else 0
    out["ids"] = " ".join(c.ids) if c else ""  # which tokenizer: a rebuild on another CPU type is another (note 14)
    return out


def table2(cells: dict[tuple[str, str], Cell], datasets: Sequence[str] = ("Beauty", "Instruments", "Yelp")) -> pd.DataFrame:
    rows = [_row(ds, label or FLOOR_ROWS[key], key, _paper_table2(ds, label), cells)
            for ds in datasets for key, label in TABLE2_ROWS.items()]
    return pd.DataFrame(rows)


def table4(cells: dict[tuple[str, str], Cell]) -> pd.DataFrame:
    t4 = paper_tables()["diger"]["table4_ablation_beauty"]
    return pd.DataFrame([_row("Beauty", label, key, t4[label], cells) for key, label in TABLE4_ROWS.items()])


def table5(cells: dict[tuple[str, str], Cell]) -> pd.DataFrame:
    t5 = {(r["K"], r["m"]): r for r in paper_tables()["diger"]["table5_codebook_beauty"]}
    rows = []
    for K, m in TABLE5_GRID:
        row = _row("Beauty", f"K={K}, m={m}", table5_key(K, m), t5[(K, m)], cells)
        rows.append(dict(row, K=K, m=m))
    return pd.DataFrame(rows)


def fig5(cells: dict[tuple[str, str], Cell], datasets: Sequence[str] = ("Beauty", "Instruments")) -> pd.DataFrame:
    """Figure 5's sweeps (the paper gives it only as a plot, so there are no paper numbers to set beside)."""
    rows = []
    for ds in datasets:
        for param, grid in (("r", FIG5_R), ("lambda", FIG5_LAMBDA)):
            for v in grid:
                key = fig5_key(param, v)
                if (ds, key) not in cells:  # a default point without its sweep run: the Table 2 run stands in
                    key = FIG5_DEFAULTS.get((param, v), key)
                row = _row(ds, f"{param}={v:g}", key, {}, cells)
                rows.append(dict(row, param=param, value=v))
    return pd.DataFrame(rows)


RanksOf = Callable[[Cell], "list[np.ndarray] | None"]  # a cell's per-user test ranks, one array per seed


class Claim(NamedTuple):
    claim: str
    dataset: str
    metric: str
    paper: bool | None  # does the paper's own table show it (None: the paper gives no numbers)
    ours: bool | None  # do our means show it (None: runs missing)
    detail: str  # our numbers, with the seed spread
    beyond_noise: bool | None = None  # is our difference beyond test-set and seed noise (None: not tested)
    same_budget: bool | None = None  # were both sides trained at one budget (None: not recorded); False -> no verdict


# Claims "A > B": our difference counts only beyond noise. A paired bootstrap over the test users (each user's metric
# averaged over a side's seeds; metrics.paired_bootstrap_seeds) gives the test-set part; its 95% interval must exclude
# 0. Seeds vary more than that on this budget, so where any side has >= 2 seeds the difference must also exceed twice
# its seed standard error, the seeds' sample sd pooled over the sides that have several, times sqrt(1/k_a + 1/k_b).
CLAIM_BOOT = 2000


def _fmt(c: Cell | None, mt: str) -> str:
    if c is None:
        return "missing"
    sd = c.sd[mt]
    return f"{c.mean[mt]:.4f}" + (f" ± {sd:.4f} (sd, {len(c.runs)} seeds)" if not math.isnan(sd) else "")


def _beyond_noise(a: Cell, b: Cell, mt: str, d: float, ranks: RanksOf | None) -> tuple[bool | None, str]:
    """(is ``d`` = mean(a) - mean(b) beyond noise, the words that say how it was judged); None without test ranks."""
    from .metrics import paired_bootstrap_seeds

    ra, rb = (ranks(a), ranks(b)) if ranks is not None else (None, None)
    if not ra or not rb:
        return None, ""
    try:
        bs = paired_bootstrap_seeds(ra, rb, mt, n_boot=CLAIM_BOOT)
    except ValueError:  # the runs ranked different test users
        return None, ""
    beyond = bool(bs["lo"] > 0 or bs["hi"] < 0)
    words = f"; paired bootstrap 95% CI [{bs['lo']:+.4f}, {bs['hi']:+.4f}]"
    sds = [c.sd[mt] for c in (a, b) if len(c.runs) > 1 and not math.isnan(c.sd[mt])]
    if sds:
        seed_se = math.sqrt(float(np.mean(np.square(sds)))) * math.sqrt(1 / len(a.runs) + 1 / len(b.runs))
        beyond = beyond and abs(d) > 2 * seed_se
        words += f"; seed SE of the difference {seed_se:.4f}"
    return beyond, words


def _greater(name: str, ds: str, mt: str, a: Cell | None, b: Cell | None, pa: float, pb: float,
             ranks: RanksOf | None = None) -> Claim:
    paper = None if math.isnan(pa) or math.isnan(pb) else bool(pa > pb)
    ours = None if a is None or b is None else bool(a.mean[mt] > b.mean[mt])
    detail, beyond = f"{_fmt(a, mt)} vs {_fmt(b, mt)}", None
    if ours is not None:  # how big the difference is against the test set's noise (a mean over seeds of each side)
        d = a.mean[mt] - b.mean[mt]
        detail += f"; difference {d:+.4f}"
        if mt.startswith("R@") and min(a.n_test_users, b.n_test_users) > 0:
            se = recall_se((a.mean[mt] + b.mean[mt]) / 2, min(a.n_test_users, b.n_test_users))
            detail += f" = {d / se:+.1f} test-set standard errors of one run's R@k"
        beyond, words = _beyond_noise(a, b, mt, d, ranks)
        detail += words
    if a is not None and b is not None and a.ids and b.ids and set(a.ids) != set(b.ids):
        detail += f"; semantic IDs {'/'.join(a.ids)} vs {'/'.join(b.ids)} (paired over the same test users)"
    same = _same_budget(a, b)
    if same is False:
        detail += f"; trained at different budgets: {' | '.join(a.budgets)} vs {' | '.join(b.budgets)}"
    return Claim(name, ds, mt, paper, ours, detail, beyond, same)


def _same_budget(a: Cell | None, b: Cell | None) -> bool | None:
    """Were every run of both sides trained at one budget? None when either side is missing or unrecorded."""
    if a is None or b is None or not a.budgets or not b.budgets:
        return None
    return len(set(a.budgets) | set(b.budgets)) == 1


def _table2_claims(cells, t2: pd.DataFrame, ranks: RanksOf | None = None) -> list[Claim]:
    out = []
    for ds in t2["dataset"].unique():
        sub = t2[t2["dataset"] == ds].set_index("key")
        udk = [k for k in ("diger_sdud", "diger_frqud", "diger_sdud_frqud") if (ds, k) in cells]
        for mt in ("R@10", "N@10"):
            best = max(udk, key=lambda k: cells[(ds, k)].mean[mt]) if udk else "diger_frqud"
            p_best = max(sub.loc[k, f"paper_{mt}"] for k in ("diger_sdud", "diger_frqud", "diger_sdud_frqud"))
            out.append(_greater(f"DIGER (best UD variant: {best}) > Two-Stage", ds, mt, cells.get((ds, best)),
                                cells.get((ds, "two_stage")), p_best, sub.loc["two_stage", f"paper_{mt}"], ranks))
            out.append(_greater("Two-Stage > STE", ds, mt, cells.get((ds, "two_stage")), cells.get((ds, "ste")),
                                sub.loc["two_stage", f"paper_{mt}"], sub.loc["ste", f"paper_{mt}"], ranks))
    return out


def _ablation_claims(cells, t4: pd.DataFrame, ranks: RanksOf | None = None) -> list[Claim]:
    sub, out = t4.set_index("key"), []
    base = cells.get(("Beauty", "diger_none"))
    for mt in ("R@10", "N@10"):
        out.append(_greater("uncertainty decay helps (w/ UD > w/o UD)", "Beauty", mt, cells.get(("Beauty", MAIN_DIGER)),
                            base, sub.loc[MAIN_DIGER, f"paper_{mt}"], sub.loc["diger_none", f"paper_{mt}"], ranks))
        for k in ABLATIONS:
            out.append(_greater(f"removing it hurts: w/o UD > {TABLE4_ROWS[k]}", "Beauty", mt, base,
                                cells.get(("Beauty", k)), sub.loc["diger_none", f"paper_{mt}"], sub.loc[k, f"paper_{mt}"],
                                ranks))
    return out


def _table5_claims(cells, t5: pd.DataFrame) -> list[Claim]:
    out = []
    for mt in ("R@10", "N@10"):
        paper_best = t5.loc[t5[f"paper_{mt}"].idxmax()]
        have = t5.dropna(subset=[mt])
        ours = None
        detail = "missing"
        if len(have) == len(t5):
            best = have.loc[have[mt].idxmax()]
            ours = bool(best["K"] == 256 and best["m"] == 3)
            detail = f"best is K={best['K']}, m={best['m']} ({best[mt]:.4f}); K=256, m=3: {_fmt(cells.get(('Beauty', MAIN_DIGER)), mt)}"
        out.append(Claim("K = 256, m = 3 is best", "Beauty", mt, bool(paper_best["K"] == 256 and paper_best["m"] == 3),
                         ours, detail))
    return out


def recall_se(p: float, n: int) -> float:
    """Binomial standard error of a Recall@k (a per-user hit rate) over n test users."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else math.nan


def _fig5_claims(cells, f5: pd.DataFrame) -> list[Claim]:
    out = []
    for (ds, param), sub in f5.groupby(["dataset", "param"], sort=False):
        vals = sub["R@10"].to_numpy(float)
        ours, detail = None, f"{int(np.isfinite(vals).sum())} of {len(vals)} grid points run"
        if np.isfinite(vals).all():
            n = max((cells[(ds, k)].n_test_users for k in sub["key"] if (ds, k) in cells), default=0)
            se = recall_se(float(vals.mean()), n)
            spread = float(vals.max() - vals.min())
            ours = bool(spread <= FLAT_SE * se)
            detail = (f"R@10 {vals.min():.4f}-{vals.max():.4f}: range {spread:.4f} = {spread / se:.1f} test-set "
                      f"standard errors (flat if <= {FLAT_SE:g}); relative range {spread / vals.mean():.0%}")
        out.append(Claim(f"flat sensitivity to {param}", ds, "R@10", None, ours, detail))
    return out


def _verdict(agrees: bool | None, beyond: bool | None, same_budget: bool | None = None) -> str:
    if agrees is None:
        return "n/a"
    if same_budget is False:  # e.g. a 2-pass run beside a 1-pass one: the difference measures the budget too
        return "not comparable (budgets differ)"
    if beyond is None:  # no noise test (Table 5's best cell, Figure 5's flatness has its own 3-SE rule)
        return "agrees (no noise test)" if agrees else "disagrees (no noise test)"
    if not beyond:
        return "within noise"
    return "agrees" if agrees else "disagrees"


def claims(cells: dict[tuple[str, str], Cell], t2: pd.DataFrame, t4: pd.DataFrame, t5: pd.DataFrame,
           f5: pd.DataFrame, ranks: RanksOf | None = None) -> pd.DataFrame:
    """Each of the paper's claims: does the paper's table show it, do our numbers (means over seeds)? ``agrees``
    compares the signs only; ``verdict`` also asks whether our difference is beyond noise (``_beyond_noise``; needs
    ``ranks``, each cell's per-user test ranks)."""
    rows = (_table2_claims(cells, t2, ranks) + _ablation_claims(cells, t4, ranks) + _table5_claims(cells, t5)
            + _fig5_claims(cells, f5))
    df = pd.DataFrame([c._asdict() for c in rows])
    df["agrees"] = [None if o is None else (o == p if p is not None else o) for o, p in zip(df["ours"], df["paper"])]
    df["verdict"] = [_verdict(a, b, s) for a, b, s in zip(df["agrees"], df["beyond_noise"], df["same_budget"])]
    return df.astype({"paper": object, "ours": object, "agrees": object, "beyond_noise": object,
                      "same_budget": object})


def scale_note(runs: Sequence[Run], configs: Sequence[dict[str, Any]]) -> str:
    """One line saying at which scale our numbers were made (stated at the top of every table)."""
    if not configs:
        return "no runs yet"
    # the floors train nothing: their configs' epochs and samples (defaults, unused) say nothing of the scale
    configs = [c for c in configs if c.get("method") not in FLOOR_METHODS] or configs

    def vals(key):
        return sorted({str(c.get(key)) for c in configs if key in c})

    def samples():  # one value, or each value with its datasets (paper_cpu sizes Yelp's epochs to equal passes)
        by: dict[str, set[str]] = {}
        for c in configs:
            if "samples_per_epoch" in c:
                by.setdefault(str(c["samples_per_epoch"]), set()).add(str(c.get("dataset", "?")))
        if len(by) <= 1:
            return "/".join(by)
        return " / ".join(f"{v} ({', '.join(sorted(ds))})" for v, ds in sorted(by.items(), key=lambda kv: int(kv[0])))
    layers = sorted({f"{c.get('n_encoder_layers')}+{c.get('n_decoder_layers')}" for c in configs})
    return (f"Ours: T5 {'/'.join(layers)} layers, d_model {'/'.join(vals('d_model'))}, at most "
            f"{'/'.join(vals('epochs'))} epochs of {samples()} training samples, "
            f"validation on {'/'.join(vals('max_eval_users'))} users, test on all users; {len(runs)} runs. "
            f"Paper: T5 6+6, full epochs up to early stopping, two H100s.")


def display_table(df: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """The reader's view of a table: row, then for each metric the paper's number and ours (mean ± sd over seeds)."""
    out = pd.DataFrame({"dataset": df["dataset"], "row": df["row"]})
    for mt in metrics:
        out[f"paper {mt}"] = df[f"paper_{mt}"].map(lambda v: "" if math.isnan(v) else f"{v:.4f}")
        out[f"ours {mt}"] = [("" if math.isnan(m) else f"{m:.4f}" + ("" if math.isnan(s) else f" ± {s:.4f}"))
                             for m, s in zip(df[mt], df[f"{mt}_sd"])]
    out["seeds"] = df["seeds"]
    if "ids" in df:
        out["IDs (codes.npy)"] = df["ids"]
    return out


class Reproduction(NamedTuple):
    table2: pd.DataFrame
    table4: pd.DataFrame
    table5: pd.DataFrame
    fig5: pd.DataFrame
    claims: pd.DataFrame
    note: str


def reproduce(runs: Sequence[Run], configs: Sequence[dict[str, Any]],
              datasets: Sequence[str] = ("Beauty", "Instruments", "Yelp")) -> Reproduction:
    cells = collect(runs)
    t2, t4, t5, f5 = table2(cells, datasets), table4(cells), table5(cells), fig5(cells)
    by_name = {r.name: r for r in runs}
    read: dict[str, np.ndarray] = {}  # each run's ranks file is read once, however many claims it enters

    def ranks(cell: Cell) -> list[np.ndarray] | None:
        try:
            for n in cell.runs:
                if n not in read:
                    read[n] = by_name[n].ranks()
        except (KeyError, FileNotFoundError):  # a run without per-user test ranks: the claim is judged by sign only
            return None
        return [read[n] for n in cell.runs]
    return Reproduction(t2, t4, t5, f5, claims(cells, t2, t4, t5, f5, ranks), scale_note(runs, configs))


def write_reproduction(rep: Reproduction, fig_dir) -> list:
    """figures/table2|table4|table5|fig5 .csv (every number), .md (paper vs ours, the scale on top) and .png/.pdf,
    and figures/claims.csv/.md. Returns the written paths."""
    from pathlib import Path

    from . import plots
    from .atomic import atomic_open
    from .tables import markdown_table

    fig_dir, written = Path(fig_dir), []
    fig_dir.mkdir(parents=True, exist_ok=True)
    head = f"{rep.note}\n\n"
    for name, df, title in (("table2", rep.table2, "Table 2"), ("table4", rep.table4, "Table 4 (Beauty)"),
                            ("table5", rep.table5, "Table 5 (Beauty)"), ("fig5", rep.fig5, "Figure 5")):
        with atomic_open(fig_dir / f"{name}.csv", "w") as fh:
            df.to_csv(fh, index=False)
        view = display_table(df, ("R@10", "N@10")) if name == "fig5" else display_table(df)
        if name == "fig5":
            view.insert(2, "value", df["value"].to_numpy())
        with atomic_open(fig_dir / f"{name}.md", "w") as fh:
            fh.write(f"# {title}: paper vs ours\n\n{head}{markdown_table(view)}")
        written += [fig_dir / f"{name}.csv", fig_dir / f"{name}.md"]
        if df[["R@10"]].notna().any().any():
            ref = MAIN_DIGER if name == "table5" else "two_stage"
            fig = (plots.fig5_sensitivity(df) if name == "fig5"
                   else plots.paper_vs_ours_bars(df, reference_key=ref, title=f"{title}, each relative to {ref}",
                                                 floors=tuple(FLOOR_ROWS)))
            written += plots.save_figure(fig, fig_dir / name)
    with atomic_open(fig_dir / "claims.csv", "w") as fh:
        rep.claims.to_csv(fh, index=False)
    view = rep.claims.astype(object).where(rep.claims.notna(), "n/a")
    with atomic_open(fig_dir / "claims.md", "w") as fh:
        fh.write(f"# The paper's claims, checked against our runs\n\n{head}{markdown_table(view)}")
    return written + [fig_dir / "claims.csv", fig_dir / "claims.md"]


BEGIN, END = "<!-- results:begin (written by `python -m diger_lib.cli readme-results`; do not edit) -->", \
    "<!-- results:end -->"


def readme_results(text: str, fig_dir) -> str:
    """The README with the block between BEGIN and END replaced by figures/table2|4|5|fig5|claims .md (the tables
    notebook 06 wrote), so no number in the README's Results section is typed by hand."""
    from pathlib import Path

    if BEGIN not in text or END not in text:
        raise ValueError(f"the README has no results block: add the lines {BEGIN!r} and {END!r} where it goes")
    parts = []
    for name in ("table2", "table4", "table5", "fig5", "claims", "timing"):
        f = Path(fig_dir) / f"{name}.md"
        if name == "timing" and not f.is_file():  # optional: written by notebook 06 since session 9
            continue
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: run notebook 06 on the paper_cpu profile first")
        body = f.read_text()
        parts.append("###" + body if body.startswith("# ") else body)  # each file's title becomes a level-4 heading
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + "\n\n" + "\n".join(parts) + "\n" + END + rest.split(END, 1)[1]
