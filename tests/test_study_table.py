"""The diagnosis study's table (diger_lib/study.py): fake runs with constructed per-user ranks in tmp_path, so each
test knows the true difference and fails if the table stops measuring it."""
import math

import numpy as np
import pandas as pd
import pytest

from diger_lib import study as S
from diger_lib.records import write_json, write_ranks

U = 400  # test users per fake run


def make_run(root, folder, name, ranks, digest="d" * 64, seed=2026, history=None, commit="abcdef0123", wall=600.0):
    d = root / folder / f"04_train_recommender__{name}"
    d.mkdir(parents=True)
    write_json(d / "metrics.json", {"seed": seed, **({S.DIGEST: digest} if digest else {})})
    write_json(d / "manifest.json", {"commit": commit, "wall_seconds": wall})
    write_json(d / "config.json", dict(n_encoder_layers=2, n_decoder_layers=2, d_model=128, epochs=4,
                                       samples_per_epoch=65536, max_eval_users=5000, dataset="Beauty"))
    write_ranks(d / "test_ranks.txt.gz", ranks)
    if history is not None:
        pd.DataFrame(history).to_csv(d / "history.csv", index=False)
    return d


def hits(users, rank=0):
    """Ranks with a hit at ``rank`` for the ``users`` mask, a miss (-1) elsewhere."""
    return np.where(users, rank, -1)


def test_diff_sign_and_interval_bracket_the_constructed_truth(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.random(U) < 0.2  # B hits 20% of users at rank 0
    better = base | (rng.random(U) < 0.25)  # A hits those and ~20% more
    make_run(tmp_path, "diagnosis", "a", hits(better))
    make_run(tmp_path, "diagnosis", "b", hits(base))
    (row,) = S.evaluate([S._one("diagnosis", "a", "b", "A hits more users")], tmp_path, n_boot=1000)
    truth = better.mean() - base.mean()
    assert row.status == "ok" and row.tokenizer == "C" and row.ids == "d" * 8
    assert row.r10_a == pytest.approx(better.mean()) and row.r10_b == pytest.approx(base.mean())
    assert row.r10_diff == pytest.approx(truth) and 0 < row.r10_lo < truth < row.r10_hi
    assert row.n10_diff == pytest.approx(truth) and row.n10_lo > 0  # rank 0: NDCG = recall
    again = S.evaluate([S._one("diagnosis", "a", "b", "")], tmp_path, n_boot=1000)[0]
    assert (again.r10_lo, again.r10_hi) == (row.r10_lo, row.r10_hi)  # seeded: reruns give the same table


def test_missing_runs_give_not_run_yet_rows_and_partial_seeds_are_counted(tmp_path):
    rng = np.random.default_rng(1)
    for name, seed in (("x", 2026), ("x_s2027", 2027), ("ts", 2026)):
        make_run(tmp_path, "diagnosis", name, rng.integers(-1, 10, U), seed=seed)
    comps = [S.Comparison("diagnosis", "x* - ts", "partial", ("x", "x_s2027", "x_s2028"), ("ts",)),
             S._one("diagnosis", "absent", "ts", "A never ran"),
             S._one("diagnosis_tokB", "x", "ts", "the whole folder is absent")]
    partial, absent, no_folder = S.evaluate(comps, tmp_path, n_boot=100)
    assert partial.status == "ok" and partial.seeds_a == "2026 2027 (2 of 3)" and partial.seeds_b == "2026"
    assert partial.missing == "x_s2028" and not math.isnan(partial.r10_diff)
    for row in (absent, no_folder):
        assert row.status == "not run yet" and math.isnan(row.r10_diff)
    assert absent.missing == "absent" and no_folder.missing == "x ts"


def test_rows_refuse_runs_on_other_ids_and_name_them(tmp_path):
    ranks = np.zeros(U, dtype=int)
    make_run(tmp_path, "diagnosis", "a", ranks, digest="a" * 64)
    make_run(tmp_path, "diagnosis", "b", ranks, digest="b" * 64)
    make_run(tmp_path, "diagnosis", "none", ranks, digest=None)
    with pytest.raises(S.StudyError, match=r"'a - b'.*a \(aaaaaaaaaaaa\), b \(bbbbbbbbbbbb\)"):
        S.evaluate([S._one("diagnosis", "a", "b", "")], tmp_path, n_boot=10)
    with pytest.raises(S.StudyError, match=r"none \(None\)"):  # tokenizer C: every run must record its IDs
        S.evaluate([S._one("diagnosis", "a", "none", "")], tmp_path, n_boot=10)
    # tokenizers A and B predate the digest: runs recording none pair within their folder, and the row says so ...
    make_run(tmp_path, "diagnosis_tokB", "a", ranks, digest=None)
    make_run(tmp_path, "diagnosis_tokB", "b", ranks, digest=None)
    (row,) = S.evaluate([S._one("diagnosis_tokB", "a", "b", "")], tmp_path, n_boot=10)
    assert row.status == "ok" and row.ids == "unrecorded"
    make_run(tmp_path, "diagnosis_tokB", "c", ranks, digest="c" * 64)  # ... but one that recorded a digest does not
    with pytest.raises(S.StudyError, match="a \\(None\\), c \\(cccccccccccc\\)"):
        S.evaluate([S._one("diagnosis_tokB", "a", "c", "")], tmp_path, n_boot=10)


def test_cli_study_writes_the_table_and_refuses_unpaired_runs(tmp_path, capsys):
    from diger_lib import cli

    out = tmp_path / "fig" / "study"
    assert cli.main(["study", "--runs", str(tmp_path / "runs"), "--out", str(out), "--n-boot", "10"]) == 0
    assert out.with_suffix(".csv").is_file() and out.with_suffix(".md").is_file()
    assert "0 of 29 comparisons evaluated" in capsys.readouterr().out
    make_run(tmp_path / "runs", "diagnosis", "ste", np.zeros(U, dtype=int), digest="a" * 64)
    make_run(tmp_path / "runs", "diagnosis", "ts_s2026", np.zeros(U, dtype=int), digest="b" * 64)
    before = out.with_suffix(".md").read_text()
    assert cli.main(["study", "--runs", str(tmp_path / "runs"), "--out", str(out), "--n-boot", "10"]) == 1
    assert "'ste - ts_s2026'" in capsys.readouterr().err
    assert out.with_suffix(".md").read_text() == before  # a refused study leaves the last table as it was


def test_seeds_are_averaged_per_user_before_resampling(tmp_path):
    """A's two seeds hit complementary halves of the users, B's two seeds the same halves the other way round: per
    user, each side averages to 0.5, so A - B is exactly 0 for every user and every resample. Pairing seed with seed
    (A1 - B1 = +-1 per user) or pooling the seeds as more users would give a wide interval instead."""
    first = np.arange(U) < U // 2
    hist = lambda drift: {"epoch": [0, 1], "drift_cum": [0.0, drift], "agreement_label": [1.0, 0.9]}  # noqa: E731
    make_run(tmp_path, "diagnosis", "a1", hits(first), history=hist(0.2), commit="1111111aaa", wall=600)
    make_run(tmp_path, "diagnosis", "a2", hits(~first), seed=2027, history=hist(0.4), commit="2222222bbb", wall=1200)
    make_run(tmp_path, "diagnosis", "b1", hits(~first), history={"epoch": [1], "loss_gen": [3.0]})
    make_run(tmp_path, "diagnosis", "b2", hits(first), seed=2027)
    (row,) = S.evaluate([S.Comparison("diagnosis", "a* - b*", "", ("a1", "a2"), ("b1", "b2"))], tmp_path, n_boot=500)
    assert row.r10_a == row.r10_b == 0.5
    assert row.r10_diff == row.r10_lo == row.r10_hi == 0.0 and row.n10_lo == row.n10_hi == 0.0
    assert row.seeds_a == row.seeds_b == "2026 2027"
    assert row.drift_cum_a == pytest.approx(0.3) and row.agreement_label_a == pytest.approx(0.9)  # last rows, mean
    assert row.commits_a == "1111111 2222222" and row.wall_minutes_a == pytest.approx(30.0)
    (rev,) = S.evaluate([S.Comparison("diagnosis", "b* - a*", "", ("b1", "b2"), ("a1", "a2"))], tmp_path, n_boot=10)
    assert math.isnan(rev.drift_cum_a)  # Two-Stage's history has no drift column: blank, not 0


def test_every_comparison_is_written_to_csv_and_markdown(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("ts_s2026", "ts_s2027", "ts_s2028", "dg_base"):  # one row of tokenizer A evaluates
        make_run(tmp_path / "runs", "diagnosis_tokA", name, rng.integers(-1, 10, U), digest=None)
    rows = S.evaluate(S.COMPARISONS, tmp_path / "runs", n_boot=50)
    cmd = S.command("runs", "out/study", 50)
    csv, md = S.write_study(rows, tmp_path / "out" / "study", cmd, tmp_path / "runs")
    table = pd.read_csv(csv)
    assert list(table["row"]) == [c.row for c in S.COMPARISONS]
    assert (table["status"] == "ok").sum() == 1 and table.loc[0, "status"] == "ok"
    text = md.read_text()
    assert "the `diagnosis` profile" in text and cmd in text and "4 x 65,536" in text
    for c in S.COMPARISONS:
        assert f"| `{c.row}` |" in text
    assert text.count("not run yet") == len(S.COMPARISONS) - 1
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        f"## Tokenizer {t.label} (`papermill_runs/{f}/`: {t.about})" for f, t in S.TOKENIZERS.items()]


def test_the_declared_study_is_well_formed():
    assert len(S.COMPARISONS) == 29
    assert {c.folder for c in S.COMPARISONS} == set(S.TOKENIZERS)
    keys = [(c.folder, c.row) for c in S.COMPARISONS]
    assert len(keys) == len(set(keys))
    for c in S.COMPARISONS:
        assert c.a and c.b and not set(c.a) & set(c.b) and c.changes
