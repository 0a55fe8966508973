"""The DIGER diagnosis study's results table (issue 13): every comparison of the study, declared once in
``COMPARISONS``, evaluated from the committed runs by the paired bootstrap of ``cli compare`` and written to
``figures/diagnosis_study.{csv,md}`` by ``python -m diger_lib.cli study``.

A row compares side A (one or several seeds) with side B on the same test users: per-user R@10 / N@10 are averaged
over each side's seeds, then users are resampled (``metrics.paired_bootstrap_seeds``, the same seed as ``compare``,
so the table repeats its numbers). Rows pair only runs trained on the same semantic IDs.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from .atomic import atomic_open
from .metrics import paired_bootstrap_seeds
from .runs import DIGEST, Run, read_run, run_dir, shared_ids
from .tables import markdown_table

METRICS = ("R@10", "N@10")


class Tokenizer(NamedTuple):
    label: str  # "A", "B", "C" (README, "Three tokenizers")
    about: str  # where and when it was built
    unrecorded_ids: str  # "" = every run must record its IDs' digest; else why runs without one still pair


# The folder of each tokenizer's runs. Sessions 2-5 predate tokenizer_codes_sha256 (session 6): their runs recorded no
# digest, but each folder was trained from the one codes.npy of its 03_pretrain_rqvae (the joint runs' epoch-0
# collision rate equals it), so within a folder unrecorded digests are accepted and the table says so.
TOKENIZERS = {
    "diagnosis_tokA": Tokenizer("A", "sessions 2-4, AMD EPYC; cannot be rebuilt (2-thread pretraining)",
                                "runs predate the digest; one tokenizer per folder"),
    "diagnosis_tokB": Tokenizer("B", "session 5, AMD EPYC, codes.npy abdd595e...",
                                "runs predate the digest; one tokenizer per folder"),
    "diagnosis": Tokenizer("C", "sessions 6-, Intel Xeon, codes.npy 474053bd...", ""),
}


class Comparison(NamedTuple):
    folder: str  # papermill_runs/<folder>: the tokenizer
    row: str  # short name
    changes: str  # what A changes against B, one line
    a: tuple[str, ...]  # side A's runs (seeds)
    b: tuple[str, ...]  # side B's runs


TS = ("ts_s2026", "ts_s2027", "ts_s2028")  # Two-Stage, constant LR, three seeds
TS_COS = ("ts_cosine", "ts_cosine_s2027", "ts_cosine_s2028")  # Two-Stage, 500 warm-up steps + cosine


def _seeds(name: str) -> tuple[str, ...]:
    return (name, f"{name}_s2027", f"{name}_s2028")


def _one(folder: str, a: str, b: str, changes: str) -> Comparison:
    return Comparison(folder, f"{a} - {b}", changes, (a,), (b,))


_A, _B, _C = "diagnosis_tokA", "diagnosis_tokB", "diagnosis"
_DG = "DIGER (FrqUD per code, Gaussian logits, table labels, tokenizer lr 1e-6)"
COMPARISONS: tuple[Comparison, ...] = (
    Comparison(_A, "dg_base - ts_s*", _DG, ("dg_base",), TS),
    Comparison(_A, "dg_sampled_labels - ts_s*", "dg_base with sampled labels", ("dg_sampled_labels",), TS),
    Comparison(_A, "dg_tok_lr0 - ts_s*", "dg_base with the tokenizer frozen (control)", ("dg_tok_lr0",), TS),
    Comparison(_A, "dg_tok_lr1e-5 - ts_s*", "dg_base with tokenizer lr 1e-5", ("dg_tok_lr1e-5",), TS),
    Comparison(_A, "dg_zero_w - ts_s*", "dg_base with W = 0 at the start", ("dg_zero_w",), TS),
    Comparison(_A, "dg_frqud_per_item - ts_s*", "dg_base with FrqUD per item (the authors' reading)",
               ("dg_frqud_per_item",), TS),
    _one(_A, "ws_ts_plus1", "ws_ts_pass1", "warm start: one more pass of Two-Stage after ws_ts_pass1 (2 x 65,536)"),
    _one(_A, "ws_dg_plus1", "ws_ts_plus1", "after ws_ts_pass1, one pass of DIGER (zero W) instead of Two-Stage"),
    Comparison(_B, "dg_frqud_per_item* - ts_s*", "dg_base with FrqUD per item (the authors' reading)",
               _seeds("dg_frqud_per_item"), TS),
    Comparison(_B, "ste - ts_s*", "naive joint training (STE, tokenizer lr 1e-4)", ("ste",), TS),
    Comparison(_C, "dg_evtrained* - ts_s*", "dg_base with FrqUD per item, evaluated on the table it trained on",
               _seeds("dg_evtrained"), TS),
    Comparison(_C, "dg_e2e* - ts_cosine*", "the authors' true-e2e coupling (embeddings, codebooks lr 1e-5), cosine "
               "schedule on both sides", _seeds("dg_e2e"), TS_COS),
    _one(_C, "dg_authors", "ts_cosine", "the authors' public configuration (no coupling, codebooks lr 1e-5, min-max)"),
    _one(_C, "dg_e2e_lr1e-6", "ts_cosine", "dg_e2e with tokenizer lr 1e-6"),
    _one(_C, "dg_e2e_gen_only", "ts_cosine", "dg_e2e with the tokenizer's own losses off (L_gen alone moves it)"),
    Comparison(_C, "dg_cosine* - ts_cosine*", "dg_base with the cosine schedule, both sides", _seeds("dg_cosine"),
               TS_COS),
    _one(_C, "dg_evtrained_cosine", "ts_cosine", "dg_evtrained with the cosine schedule"),
    _one(_C, "dg_e2e_long8", "ts_cosine_long8", "dg_e2e at twice the budget (8 x 65,536 samples), both sides"),
    _one(_C, "dg_cosine_long8", "ts_cosine_long8", "dg_cosine at twice the budget (8 x 65,536 samples), both sides"),
    _one(_C, "ste", "ts_s2026", "naive joint training (STE, tokenizer lr 1e-4)"),
    _one(_C, "dg_sdud_lambda2", "ts_s2026", "dg_base with SDUD, lambda 2, instead of FrqUD"),
    _one(_C, "dg_codebooks_lr1e-5", "ts_s2026", "dg_base moving only the codebooks, at lr 1e-5"),
    _one(_C, "dg_last_layer_lr1e-5", "ts_s2026", "dg_base moving only the encoder's last layer and codebooks, lr 1e-5"),
    _one(_C, "dg_tok_lr0", "ts_s2026", "dg_base with the tokenizer frozen (control)"),
    _one(_C, "dg_base", "ts_s2026", _DG),
    _one(_C, "dg_tok_lr1e-5", "ts_s2026", "dg_base with tokenizer lr 1e-5"),
    _one(_C, "dg_sampled_labels", "ts_s2026", "dg_base with sampled labels"),
    _one(_C, "dg_zero_w", "ts_s2026", "dg_base with W = 0 at the start"),
    _one(_C, "dg_frqud_per_item", "ts_s2026", "dg_base with FrqUD per item (dg_evtrained evaluated on refreshed IDs)"),
)


class StudyError(ValueError):
    """Two runs of a row cannot be paired (different or unrecorded semantic IDs)."""


@dataclasses.dataclass(frozen=True)
class StudyRow:
    tokenizer: str
    folder: str
    row: str
    changes: str
    status: str  # "ok", or "not run yet" (a side has no finished run)
    runs_a: str
    runs_b: str
    seeds_a: str  # "2026 2027 2028", "(2 of 3)" appended when some seeds have not run
    seeds_b: str
    ids: str  # the shared tokenizer_codes_sha256 (first 8 hex digits) or "unrecorded"
    r10_a: float = math.nan
    r10_b: float = math.nan
    r10_diff: float = math.nan
    r10_lo: float = math.nan
    r10_hi: float = math.nan
    n10_a: float = math.nan
    n10_b: float = math.nan
    n10_diff: float = math.nan
    n10_lo: float = math.nan
    n10_hi: float = math.nan
    drift_cum_a: float = math.nan  # side A's final cumulative drift (history.csv, last row), mean over its seeds
    agreement_label_a: float = math.nan  # side A's final label agreement, mean over its seeds
    commits_a: str = ""
    wall_minutes_a: float = math.nan  # side A's wall time, summed over its runs
    missing: str = ""  # runs of either side not finished yet


def _finished(folder: Path, names: Sequence[str]) -> tuple[list[Run], list[str]]:
    runs, missing = [], []
    for name in names:
        d = run_dir(folder, name)
        if (d / "metrics.json").is_file():
            runs.append(read_run(d))
        else:
            missing.append(name)
    return runs, missing


def _seed_label(runs: list[Run], asked: int) -> str:
    s = " ".join(str(r.metrics.get("seed", "?")) for r in runs)
    return s if len(runs) == asked else f"{s} ({len(runs)} of {asked})"


def _shared_ids(c: Comparison, runs: list[Run]) -> str:
    """The digest every run of the row recorded (8 hex digits), or "unrecorded" where the folder allows it."""
    tok = TOKENIZERS.get(c.folder)
    try:
        digest = shared_ids(runs, allow_unrecorded=tok is not None and bool(tok.unrecorded_ids))
    except ValueError as e:
        raise StudyError(f"{c.folder}: row {c.row!r}: {e}") from None
    return "unrecorded" if digest is None else digest[:8]


def _final_mean(runs: list[Run], column: str) -> float:
    """Mean over runs of ``column`` in history.csv's last row (NaN when no run has it: Two-Stage, STE without it)."""
    vals = []
    for r in runs:
        h = r.history()
        if h is not None and column in h.columns and len(h) and not math.isnan(float(h[column].iloc[-1])):
            vals.append(float(h[column].iloc[-1]))
    return sum(vals) / len(vals) if vals else math.nan


def evaluate(comparisons: Sequence[Comparison] = COMPARISONS, runs_root: Path | str = "papermill_runs",
             n_boot: int = 5000, seed: int = 0) -> list[StudyRow]:
    """One ``StudyRow`` per comparison, in order. A side with no finished run gives a "not run yet" row; a side with
    some of its seeds uses those. Raises ``StudyError`` when a row's runs were trained on different semantic IDs."""
    rows = []
    for c in comparisons:
        tok = TOKENIZERS[c.folder].label if c.folder in TOKENIZERS else c.folder
        folder = Path(runs_root) / c.folder
        a, miss_a = _finished(folder, c.a)
        b, miss_b = _finished(folder, c.b)
        base = dict(tokenizer=tok, folder=c.folder, row=c.row, changes=c.changes, runs_a=" ".join(c.a),
                    runs_b=" ".join(c.b), seeds_a=_seed_label(a, len(c.a)), seeds_b=_seed_label(b, len(c.b)),
                    missing=" ".join(miss_a + miss_b))
        if not a or not b:
            rows.append(StudyRow(status="not run yet", ids="", **base))
            continue
        ids = _shared_ids(c, a + b)
        ra, rb = [r.ranks() for r in a], [r.ranks() for r in b]
        out: dict[str, Any] = {}
        for metric in METRICS:
            res = paired_bootstrap_seeds(ra, rb, metric, n_boot=n_boot, seed=seed)
            key = metric.lower().replace("@", "")
            out.update({f"{key}_{k}": res[k] for k in ("a", "b", "diff", "lo", "hi")})
        walls = [r.manifest.get("wall_seconds") for r in a]
        rows.append(StudyRow(
            status="ok", ids=ids, **base, **out,
            drift_cum_a=_final_mean(a, "drift_cum"), agreement_label_a=_final_mean(a, "agreement_label"),
            commits_a=" ".join(sorted({str(r.manifest.get("commit", "?"))[:7] for r in a})),
            wall_minutes_a=sum(walls) / 60 if all(w is not None for w in walls) else math.nan))
    return rows


# ------------------------------------------------------------------------------------------------------------------
# Writers
# ------------------------------------------------------------------------------------------------------------------
def command(runs_root: str, out: str, n_boot: int) -> str:
    return f"python -m diger_lib.cli study --runs {runs_root} --out {out} --n-boot {n_boot}"


def write_csv(rows: Sequence[StudyRow], path: Path | str) -> Path:
    import pandas as pd

    df = pd.DataFrame([dataclasses.asdict(r) for r in rows])
    with atomic_open(path, "w") as fh:
        fh.write(df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return Path(path)


def _ci(diff: float, lo: float, hi: float) -> str:
    return "" if math.isnan(diff) else f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def _budget(runs_root: Path | str, rows: Sequence[StudyRow]) -> str:
    """The budget as the baseline run of the first evaluated row recorded it (config.json, metrics.json)."""
    for r in rows:
        for name in r.runs_b.split() if r.status == "ok" else ():
            run = read_run(run_dir(Path(runs_root) / r.folder, name))
            f = run.dir / "config.json"
            cfg = json.loads(f.read_text()) if f.is_file() else {}
            if cfg:
                n = run.metrics.get("n_test_users")
                return (f"T5 {cfg['n_encoder_layers']}+{cfg['n_decoder_layers']}, d_model {cfg['d_model']}, "
                        f"{cfg['epochs']} x {cfg['samples_per_epoch']:,} training samples, validation on "
                        f"{cfg['max_eval_users']:,} users, test on all{f' {n:,}' if isinstance(n, int) else ''} "
                        f"users of {cfg['dataset']}")
    return "see diger_lib/profiles.py"


def markdown(rows: Sequence[StudyRow], cmd: str, budget: str) -> str:
    import pandas as pd

    lines = ["# DIGER diagnosis study: every comparison", "",
             f"Budget: the `diagnosis` profile (`diger_lib/profiles.py`): {budget}; rows that change it say so. "
             f"Generated by `{cmd}` from the committed runs in `papermill_runs/<folder>/`; do not edit by hand.", "",
             "A - B is the paired bootstrap over the same test users (per-user metrics averaged over each side's "
             "seeds, 95% interval over user resamples; the seeds' own spread is not resampled, as in "
             "`cli compare`). Drift and label agreement are side A's, from the last row of its history.csv, "
             "mean over its seeds (blank: Two-Stage records none). Wall minutes: side A's runs, summed.", ""]
    for folder, tok in TOKENIZERS.items():
        sub = [r for r in rows if r.folder == folder]
        if not sub:
            continue
        lines += [f"## Tokenizer {tok.label} (`papermill_runs/{folder}/`: {tok.about})", ""]
        if tok.unrecorded_ids:
            lines += [f"These runs recorded no `{DIGEST}` ({tok.unrecorded_ids}).", ""]
        df = pd.DataFrame([{
            "row": f"`{r.row}`", "what A changes": r.changes,
            "seeds A / B": "not run yet: " + r.missing if r.status != "ok" else f"{r.seeds_a} / {r.seeds_b}",
            "R@10 A": r.r10_a, "R@10 B": r.r10_b, "R@10 A-B [95% CI]": _ci(r.r10_diff, r.r10_lo, r.r10_hi),
            "N@10 A": r.n10_a, "N@10 B": r.n10_b, "N@10 A-B [95% CI]": _ci(r.n10_diff, r.n10_lo, r.n10_hi),
            "final cum. drift A": r.drift_cum_a, "final label agreement A": r.agreement_label_a,
            "commits A": r.commits_a, "wall min A": "" if math.isnan(r.wall_minutes_a) else f"{r.wall_minutes_a:.0f}",
        } for r in sub])
        lines += [markdown_table(df)]
    return "\n".join(lines)


def write_study(rows: Sequence[StudyRow], out: Path | str, cmd: str, runs_root: Path | str) -> tuple[Path, Path]:
    """``<out>.csv`` and ``<out>.md``, each written atomically."""
    out = Path(out)
    csv = write_csv(rows, out.with_suffix(".csv"))
    md = out.with_suffix(".md")
    with atomic_open(md, "w") as fh:
        fh.write(markdown(rows, cmd, _budget(runs_root, rows)))
    return csv, md
