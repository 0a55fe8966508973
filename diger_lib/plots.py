"""Figures of the paper as functions that return matplotlib ``Figure`` objects.

- ``fig2_ndcg_and_coverage``: Figure 2 (validation NDCG@10 and mean code coverage across levels).
- ``fig6_sid_dynamics``: Figure 6 (incremental / cumulative SID drift, train-inference agreement).
- ``fig7_code_usage_heatmaps``: Figure 7 (per-level code usage as sqrt(K) x sqrt(K) heatmaps).
- ``diagnostics_figure``: the joint-training diagnostics of ``diagnostics.py`` (not a paper figure).
- ``rqvae_training_curves``: tokenizer pre-training curves (not a paper figure).
- ``paper_vs_ours_bars``, ``fig5_sensitivity``: Tables 2/4/5 and Figure 5 beside the paper (``reproduce``).
- ``save_figure``: PNG + PDF, written atomically.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend, nothing shown), so
they work headless and are not kept alive by pyplot. Per-epoch inputs are tidy DataFrames, one row per
(run, epoch), with a ``label`` column naming the run (see ``diger_lib.metrics`` for the quantities).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .atomic import atomic_open

_COVERAGE_RE = re.compile(r"^coverage_l(\d+)$")
# panel -> accepted column names (rqvae.pretrain_rqvae writes loss_recon / loss_vq)
_RQVAE_COLUMNS = (("loss",), ("recon", "loss_recon"), ("vq", "loss_vq"), ("collision_rate",))


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; got {list(df.columns)}")


def _runs(df: pd.DataFrame, labels: Sequence[str] | None, what: str) -> dict[str, pd.DataFrame]:
    """label -> that run's rows sorted by epoch; every requested label must exist, once per epoch."""
    _require(df, ["label", "epoch"], what)
    available = list(dict.fromkeys(df["label"]))
    if labels is None:
        labels = available
    if isinstance(labels, str):
        labels = [labels]
    missing = [lab for lab in labels if lab not in available]
    if missing:
        raise ValueError(f"{what}: label(s) {missing} not in the data; available: {available}")
    runs = {}
    for lab in labels:
        run = df[df["label"] == lab].sort_values("epoch")
        dup = run["epoch"][run["epoch"].duplicated()].unique()
        if dup.size:
            raise ValueError(f"{what}: label {lab!r} has several rows for epoch(s) {list(dup)[:5]}")
        runs[lab] = run
    return runs


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {lab: cmap(i % 10) for i, lab in enumerate(labels)}


def _coverage_columns(df: pd.DataFrame) -> list[str]:
    cols = sorted((int(m.group(1)), c) for c in df.columns if (m := _COVERAGE_RE.match(str(c))))
    if not cols:
        raise ValueError(f"fig2: no coverage_l<j> columns; got {list(df.columns)}")
    return [c for _, c in cols]


def _grid_shape(k: int) -> tuple[int, int]:
    """Most square factorisation rows x cols = k with rows <= cols (16 x 16 for K = 256)."""
    rows = max(d for d in range(1, int(np.sqrt(k)) + 1) if k % d == 0)
    return rows, k // rows


# ----------------------------------------------------------------------------------------------
# Paper figures
# ----------------------------------------------------------------------------------------------
def fig2_ndcg_and_coverage(
    df: pd.DataFrame,
    labels: Sequence[str] = ("DIGER", "STE"),
    early_stop: Mapping[str, float] | None = None,
) -> Figure:
    """Figure 2: top, validation NDCG@10 by epoch; bottom, code coverage averaged over the levels with
    error bars = standard deviation across levels. ``early_stop`` (label -> epoch) draws grey dashed
    vertical lines (the paper marks STE's early-stop epoch)."""
    runs = _runs(df, labels, "fig2")
    _require(df, ["val_ndcg10"], "fig2")
    cov_cols = _coverage_columns(df)
    colors = _colors(list(runs))

    fig = Figure(figsize=(6.0, 5.5), layout="constrained")
    ax_ndcg, ax_cov = fig.subplots(2, 1, sharex=True)
    for lab, run in runs.items():
        ok = run["val_ndcg10"].notna()  # epochs without validation are skipped, not drawn as gaps
        ax_ndcg.plot(run["epoch"][ok], run["val_ndcg10"][ok], marker="o", ms=3, color=colors[lab], label=lab)
        cov = run[cov_cols].to_numpy(dtype=float)  # [epochs, m]
        ax_cov.errorbar(run["epoch"], cov.mean(axis=1), yerr=cov.std(axis=1), marker="o", ms=3,
                        capsize=2, color=colors[lab], label=lab)
    for lab, epoch in (early_stop or {}).items():
        for ax in (ax_ndcg, ax_cov):
            ax.axvline(epoch, color="grey", ls="--", lw=1, label=f"{lab} early stop" if ax is ax_ndcg else None)
    ax_ndcg.set_ylabel("validation NDCG@10")
    ax_cov.set_ylabel(f"code coverage (mean of {len(cov_cols)} levels)")
    ax_cov.set_xlabel("epoch")
    ax_cov.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_cov.set_ylim(0, 1.05)
    ax_ndcg.legend(fontsize="small")
    for ax in (ax_ndcg, ax_cov):
        ax.grid(alpha=0.3)
    return fig


def fig6_sid_dynamics(df: pd.DataFrame, labels: Sequence[str] | None = None) -> Figure:
    """Figure 6: (a) incremental SID drift, (b) cumulative SID drift, (c) train-inference agreement,
    one line per label (all labels in order of appearance when ``labels`` is None). NaNs (e.g. no
    agreement at epoch 0) are skipped."""
    runs = _runs(df, labels, "fig6")
    panels = [("drift_inc", "(a) Incremental SID drift"), ("drift_cum", "(b) Cumulative SID drift"),
              ("agreement", "(c) Train-inference agreement")]
    _require(df, [c for c, _ in panels], "fig6")
    colors = _colors(list(runs))

    fig = Figure(figsize=(12.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 3, sharex=True)
    for ax, (col, title) in zip(axes, panels):
        for lab, run in runs.items():
            ok = run[col].notna()
            ax.plot(run["epoch"][ok], run[col][ok], marker="o", ms=3, color=colors[lab], label=lab)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of items")
    axes[2].legend(fontsize="small")
    return fig


_DIAG_PANELS = (
    ("Incremental drift per level", "drift_inc_l", None),
    ("Cumulative drift per level", "drift_cum_l", None),
    ("Agreement: label (solid), input (dashed)", "agreement_label", "agreement_input"),
    ("Tokenizer change: encoder (solid), codebooks (dashed)", "tok_delta_encoder", "tok_delta_codebooks"),
    ("Median best-vs-second logit gap per level", "logit_gap_l", None),
    ("Probe L_gen: new IDs (solid), last epoch's IDs (dashed)", "probe_loss_new_ids", "probe_loss_old_ids"),
    ("SDUD: sigma (solid), sigma* (dashed)", "sigma", "sigma_star"),
)


def diagnostics_figure(df: pd.DataFrame, labels: Sequence[str] | None = None) -> Figure:
    """Per-epoch diagnostics of joint runs (one colour per run; per-level panels use line styles for levels
    1-3: solid, dashed, dotted). Panels whose columns are absent or all NaN stay empty."""
    runs = _runs(df, labels, "diagnostics")
    colors = _colors(list(runs))
    styles = ["-", "--", ":", "-."]
    fig = Figure(figsize=(15.0, 7.2), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    for ax, (title, a, b) in zip(axes, _DIAG_PANELS):
        for lab, run in runs.items():
            cols = ([c for c in run.columns if c.startswith(a) and c[len(a):].isdigit()] if a.endswith("_l")
                    else [c for c in (a, b) if c and c in run.columns])
            for i, col in enumerate(sorted(cols) if a.endswith("_l") else cols):
                ok = run[col].notna()
                if ok.any():
                    ax.plot(run["epoch"][ok], run[col][ok], styles[i % 4], marker="o", ms=2.5, color=colors[lab],
                            label=lab if i == 0 else None)
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[-1].axis("off")
    handles, names = axes[0].get_legend_handles_labels()
    axes[-1].legend(handles, names, loc="center", fontsize="small")
    return fig


def fig7_code_usage_heatmaps(usage: Mapping[str, Any], vmax: float | None = None) -> Figure:
    """Figure 7: rows = labels, columns = levels; each cell shows the usage probability of the K codes
    of one level as a rows x cols grid (16 x 16 for K = 256), with one colour bar shared by all cells.

    ``usage`` maps label -> counts [m, K] (numpy, torch, or a ``metrics.CodeUsage``). ``vmax`` fixes the
    top of the colour scale (default: the largest probability shown).
    """
    if not usage:
        raise ValueError("fig7: usage is empty")
    probs: dict[str, np.ndarray] = {}
    for lab, counts in usage.items():
        counts = getattr(counts, "counts", counts)  # accept a CodeUsage
        if hasattr(counts, "detach"):
            counts = counts.detach().cpu().numpy()
        c = np.asarray(counts, dtype=float)
        if c.ndim != 2:
            raise ValueError(f"fig7: usage[{lab!r}] must be [m, K], got shape {c.shape}")
        if (c < 0).any():
            raise ValueError(f"fig7: usage[{lab!r}] has negative counts")
        total = c.sum(axis=1, keepdims=True)
        probs[lab] = np.divide(c, total, out=np.zeros_like(c), where=total > 0)
    shapes = {lab: p.shape for lab, p in probs.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"fig7: every label needs the same [m, K]; got {shapes}")
    m, k = next(iter(shapes.values()))
    gr, gc = _grid_shape(k)
    top = vmax if vmax is not None else max(float(p.max()) for p in probs.values()) or 1.0
    norm = Normalize(vmin=0.0, vmax=top)

    n = len(probs)
    fig = Figure(figsize=(2.2 * m + 1.0, 2.2 * n + 0.3), layout="constrained")
    axes = fig.subplots(n, m, squeeze=False)
    image = None
    for i, (lab, p) in enumerate(probs.items()):
        for j in range(m):
            ax = axes[i, j]
            image = ax.imshow(p[j].reshape(gr, gc), cmap="viridis", norm=norm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"level {j + 1}")
            if j == 0:
                ax.set_ylabel(lab)
    fig.colorbar(image, ax=axes.ravel().tolist(), label="usage probability", shrink=0.8)
    return fig


def rqvae_training_curves(records: Sequence[Mapping[str, Any]] | pd.DataFrame) -> Figure:
    """RQ-VAE pre-training: total loss, reconstruction loss, VQ loss and collision rate by epoch, one
    panel each. ``records`` rows (e.g. ``rqvae.pretrain_rqvae``'s history) need ``epoch``, ``loss``,
    ``recon`` or ``loss_recon``, ``vq`` or ``loss_vq``, and ``collision_rate``."""
    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    if df.empty:
        raise ValueError("rqvae_training_curves: no records")
    _require(df, ["epoch"], "rqvae_training_curves")
    columns = []
    for candidates in _RQVAE_COLUMNS:
        found = [c for c in candidates if c in df.columns]
        if not found:
            raise ValueError(f"rqvae_training_curves: missing column {' or '.join(candidates)}; got {list(df.columns)}")
        columns.append(found[0])
    df = df.sort_values("epoch")
    titles = ["total loss", "reconstruction loss", "VQ loss", "collision rate"]
    fig = Figure(figsize=(13.0, 3.2), layout="constrained")
    axes = fig.subplots(1, len(columns), sharex=True)
    for ax, col, title in zip(axes, columns, titles):
        ok = df[col].notna()
        ax.plot(df["epoch"][ok], df[col][ok], color="C0")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------------------------
# Tables 2, 4, 5 and Figure 5 beside the paper (diger_lib.reproduce builds the DataFrames)
# ----------------------------------------------------------------------------------------------
def paper_vs_ours_bars(df: pd.DataFrame, reference_key: str = "two_stage", metrics: Sequence[str] = ("R@10", "N@10"),
                       title: str = "", floors: Sequence[str] = ()) -> Figure:
    """Grouped bars, one group per row of a table, paper beside ours, each divided by its own ``reference_key``
    row of the same dataset (Two-Stage = 1): our CPU-scale numbers sit far below the paper's, so ratios are what
    compare. Error bars: our seed standard deviation over the same reference. One panel per (dataset, metric).
    The rows whose key is in ``floors`` (ours only: the most-popular and Markov-1 floors) are not bars: each panel's
    title gives their ratios, and a red line marks those within the bars' scale (one far above would squash them)."""
    _require(df, ["dataset", "row", "key", *metrics, *(f"paper_{m}" for m in metrics)], "paper_vs_ours_bars")
    datasets = list(dict.fromkeys(df["dataset"]))
    fig = Figure(figsize=(4.2 * len(metrics), 3.0 * len(datasets) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(datasets), len(metrics), squeeze=False))
    styles = dict(zip(floors, ("--", "-.", ":")))
    handles: dict[str, Any] = {}
    for i, ds in enumerate(datasets):
        every = df[df["dataset"] == ds]
        sub = every[~every["key"].isin(floors)].reset_index(drop=True)
        lines = every[every["key"].isin(floors)]
        ref = sub[sub["key"] == reference_key]
        for j, mt in enumerate(metrics):
            ax, x = axes[i, j], np.arange(len(sub))
            ours_ref = float(ref[mt].iloc[0]) if len(ref) else np.nan
            paper_ref = float(ref[f"paper_{mt}"].iloc[0]) if len(ref) else np.nan
            sd = sub[f"{mt}_sd"] / ours_ref if f"{mt}_sd" in sub else None
            paper, ours = sub[f"paper_{mt}"] / paper_ref, sub[mt] / ours_ref
            handles["paper"] = ax.bar(x - 0.2, paper, 0.4, color="0.65")
            handles["ours"] = ax.bar(x + 0.2, ours, 0.4, yerr=sd, color="tab:blue", capsize=2)
            ax.axhline(1.0, color="k", lw=0.6, ls=":")
            err = sd.fillna(0).to_numpy(float) if sd is not None else 0.0
            tops = np.concatenate([paper.to_numpy(float), ours.to_numpy(float) + err])
            top = 1.15 * max(float(np.nanmax(tops)) if np.isfinite(tops).any() else 1.0, 1.0)
            said = []
            for _, fl in lines.iterrows():
                r = float(fl[mt]) / ours_ref
                if not np.isfinite(r):
                    continue
                name = str(fl["row"]).replace(" (ours only)", "")
                said.append(f"{name} {r:.2f}" + ("" if r <= top else " (off scale)"))
                if r <= top:
                    handles[fl["row"]] = ax.axhline(r, color="tab:red", lw=1.0, ls=styles[fl["key"]])
            ax.set_ylim(0, top)
            ax.set_xticks(x, sub["row"], rotation=35, ha="right", fontsize=7)
            ax.set_ylabel(f"{mt} / {reference_key}")
            ax.set_title(f"{ds} {mt}" + (f"\nfloors: {', '.join(said)}" if said else ""), fontsize=9)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def fig5_sensitivity(df: pd.DataFrame, metrics: Sequence[str] = ("R@10", "N@10")) -> Figure:
    """Figure 5: R@10 and N@10 against the hot-code ratio r (FrqUD) and lambda (SDUD), one line per dataset;
    grid points not yet run are left out."""
    _require(df, ["dataset", "param", "value", *metrics], "fig5_sensitivity")
    params = list(dict.fromkeys(df["param"]))
    fig = Figure(figsize=(4.0 * len(params), 2.8 * len(metrics)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(metrics), len(params), squeeze=False))
    for j, param in enumerate(params):
        for i, mt in enumerate(metrics):
            ax = axes[i, j]
            for ds, sub in df[df["param"] == param].groupby("dataset", sort=False):
                sub = sub.dropna(subset=[mt]).sort_values("value")
                ax.plot(sub["value"], sub[mt], marker="o", label=ds)
            ax.set(xlabel=param, ylabel=mt, title=f"{mt} vs {param}")
            ax.legend(fontsize=7)
    return fig


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------
def save_figure(fig: Figure, path_without_ext: str | os.PathLike, dpi: int = 150) -> list[Path]:
    """Write ``<path>.png`` (``dpi``) and ``<path>.pdf``; parent folders are created and each file is
    written to a temporary file first and moved into place, so no half-written figure is left behind.
    The PDF carries no creation date, so reruns give comparable files."""
    base = Path(path_without_ext)
    if base.suffix.lower() in (".png", ".pdf"):
        raise ValueError(f"save_figure takes a path without extension, got {str(base)!r}")
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, metadata in (("png", None), ("pdf", {"CreationDate": None})):
        target = base.parent / f"{base.name}.{ext}"
        with atomic_open(target) as fh:
            fig.savefig(fh, format=ext, dpi=dpi, bbox_inches="tight", metadata=metadata)
        written.append(target)
    return written


def training_curve(history: pd.DataFrame) -> Figure:
    """One run's per-epoch curves (notebook 04): training loss and validation NDCG@10 (and R@10)."""
    _require(history, ["epoch", "val_ndcg10"], "training_curve")
    fig = Figure(figsize=(8.0, 3.0), layout="constrained")
    ax_loss, ax_val = fig.subplots(1, 2)
    trained = history[history["epoch"] > 0]
    if "loss" in history and len(trained):
        ax_loss.plot(trained["epoch"], trained["loss"], marker="o", label="loss")
        if "loss_gen" in history:
            ax_loss.plot(trained["epoch"], trained["loss_gen"], marker=".", label="L_gen")
        ax_loss.legend()
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax_val.plot(history["epoch"], history["val_ndcg10"], marker="o", label="NDCG@10")
    if "val_R@10" in history:
        ax_val.plot(history["epoch"], history["val_R@10"], marker=".", label="Recall@10")
    ax_val.set(xlabel="epoch", ylabel="validation", title="validation (early stopping on NDCG@10)")
    ax_val.legend()
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
