"""Plot functions on small synthetic frames: axes count, plotted data, shared colour scale, saving."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from diger_lib.plots import (
    fig2_ndcg_and_coverage,
    fig6_sid_dynamics,
    fig7_code_usage_heatmaps,
    rqvae_training_curves,
    save_figure,
)


def _frame() -> pd.DataFrame:
    rows = []
    for label, base in (("DIGER", 0.02), ("STE", 0.01)):
        for epoch in range(4):
            rows.append({
                "label": label, "epoch": epoch, "val_ndcg10": base + 0.001 * epoch,
                "coverage_l0": 0.9, "coverage_l1": 0.5 + 0.1 * epoch, "coverage_l2": 0.1,
                "drift_inc": np.nan if epoch == 0 else 0.1 / epoch, "drift_cum": 0.05 * epoch,
                "agreement": np.nan if epoch == 0 else 0.9,
                "sigma": np.nan, "hot_codes": np.nan,
            })
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # shuffled: functions must sort by epoch


def test_fig2_axes_data_and_early_stop():
    df = _frame()
    fig = fig2_ndcg_and_coverage(df, labels=("DIGER", "STE"), early_stop={"STE": 2})
    assert isinstance(fig, Figure)
    ax_ndcg, ax_cov = fig.axes
    assert len(fig.axes) == 2
    diger = ax_ndcg.get_lines()[0]
    np.testing.assert_array_equal(diger.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_allclose(diger.get_ydata(), [0.020, 0.021, 0.022, 0.023])
    # bottom panel: mean over the three levels; error bar = std across levels
    cov_line = ax_cov.get_lines()[0]
    expected_mean = [(0.9 + 0.5 + 0.1 * e + 0.1) / 3 for e in range(4)]
    np.testing.assert_allclose(cov_line.get_ydata(), expected_mean)
    expected_std = [np.std([0.9, 0.5 + 0.1 * e, 0.1]) for e in range(4)]
    bars = ax_cov.containers[0].lines[2][0].get_segments()  # vertical error segments
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in bars[:4]], 2 * np.array(expected_std))
    # grey dashed early-stop line at epoch 2 in both panels
    for ax in fig.axes:
        vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(vlines) == 1 and list(vlines[0].get_xdata()) == [2, 2]


def test_fig2_unknown_label():
    with pytest.raises(ValueError, match="DIGER .FrqUD."):
        fig2_ndcg_and_coverage(_frame(), labels=("DIGER (FrqUD)",))


def test_fig6_three_panels_skip_nan():
    fig = fig6_sid_dynamics(_frame(), ["DIGER", "STE"])
    assert len(fig.axes) == 3
    inc = fig.axes[0].get_lines()[0]
    np.testing.assert_array_equal(inc.get_xdata(), [1, 2, 3])  # epoch 0 is NaN, dropped
    np.testing.assert_allclose(inc.get_ydata(), [0.1, 0.05, 0.1 / 3])
    assert len(fig.axes[2].get_lines()) == 2
    assert len(fig6_sid_dynamics(_frame(), None).axes[1].get_lines()) == 2  # default: every label


def test_fig7_grid_shapes_and_shared_scale():
    rng = np.random.default_rng(0)
    usage = {"DIGER": rng.integers(0, 50, size=(3, 256)), "STE": np.eye(3, 256) * 100}
    fig = fig7_code_usage_heatmaps(usage)
    assert len(fig.axes) == 2 * 3 + 1  # 6 heatmaps + 1 colour bar
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 6
    for im in images:
        arr = im.get_array()
        assert arr.shape == (16, 16)
        assert float(arr.sum()) == pytest.approx(1.0)  # usage probabilities of one level
    assert len({(im.norm.vmin, im.norm.vmax) for im in images}) == 1  # one shared colour scale
    assert images[0].norm.vmax == pytest.approx(1.0)  # STE puts all mass on one code

    # non-square K: most square factorisation, 12 -> 3 x 4
    fig12 = fig7_code_usage_heatmaps({"A": np.ones((2, 12))})
    assert fig12.axes[0].get_images()[0].get_array().shape == (3, 4)
    with pytest.raises(ValueError, match="same"):
        fig7_code_usage_heatmaps({"A": np.ones((2, 12)), "B": np.ones((3, 12))})


def test_rqvae_training_curves():
    recs = [{"epoch": e, "loss": 1 / (e + 1), "recon": 0.5 / (e + 1), "vq": 0.1, "collision_rate": 0.3 - 0.05 * e}
            for e in range(5)]
    fig = rqvae_training_curves(recs)
    assert len(fig.axes) == 4
    np.testing.assert_allclose(fig.axes[3].get_lines()[0].get_ydata(), [0.3, 0.25, 0.2, 0.15, 0.1])
    assert len(rqvae_training_curves(pd.DataFrame(recs)).axes) == 4
    # the key names rqvae.pretrain_rqvae writes
    renamed = [{"epoch": r["epoch"], "loss": r["loss"], "loss_recon": r["recon"], "loss_vq": r["vq"],
                "collision_rate": r["collision_rate"]} for r in recs]
    np.testing.assert_allclose(rqvae_training_curves(renamed).axes[1].get_lines()[0].get_ydata(),
                               [0.5 / (e + 1) for e in range(5)])
    with pytest.raises(ValueError, match="collision_rate"):
        rqvae_training_curves([{"epoch": 0, "loss": 1, "recon": 1, "vq": 1}])
    with pytest.raises(ValueError, match="vq or loss_vq"):
        rqvae_training_curves([{"epoch": 0, "loss": 1, "recon": 1, "collision_rate": 0.0}])


def test_save_figure_png_pdf(tmp_path):
    fig = fig6_sid_dynamics(_frame(), ["DIGER"])
    paths = save_figure(fig, tmp_path / "figures" / "fig6_sid_dynamics")
    assert [p.name for p in paths] == ["fig6_sid_dynamics.png", "fig6_sid_dynamics.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(p.name for p in paths)  # no temp left
    with pytest.raises(ValueError, match="without extension"):
        save_figure(fig, tmp_path / "x.png")


def test_paper_vs_ours_bars_draws_floors_as_lines_and_names_them():
    """Bars are paper and ours over Two-Stage; a floor is a red line within the bars' scale, and written in the title
    (off scale when far above the bars)."""
    from diger_lib.plots import paper_vs_ours_bars

    rows = [("most_popular", "Most popular (ours only)", np.nan, 0.01), ("markov1", "Markov-1 (ours only)", np.nan, 0.08),
            ("two_stage", "Two-Stage", 0.06, 0.02), ("ste", "STE", 0.01, 0.005)]
    df = pd.DataFrame([{"dataset": "Beauty", "key": k, "row": r, "paper_R@10": p, "R@10": o, "R@10_sd": np.nan}
                       for k, r, p, o in rows])
    fig = paper_vs_ours_bars(df, metrics=("R@10",), floors=("most_popular", "markov1"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Two-Stage", "STE"]  # no bar for a floor
    assert len(ax.patches) == 4  # 2 rows x (paper, ours)
    assert ax.get_title() == "Beauty R@10\nfloors: Most popular 0.50, Markov-1 4.00 (off scale)"
    red = [ln for ln in ax.get_lines() if ln.get_color() == "tab:red"]
    assert len(red) == 1 and red[0].get_ydata()[0] == pytest.approx(0.5)  # Markov-1 is above the axis: no line
    assert ax.get_ylim()[1] == pytest.approx(1.15)
    # without floors every row is a bar, as before
    assert len(paper_vs_ours_bars(df, metrics=("R@10",)).axes[0].patches) == 8
