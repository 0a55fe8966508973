"""diger_lib.reproduce: the paper's tables from runs named <Dataset>__<key>__s<seed>, and the claims check."""
import math
from pathlib import Path

import numpy as np
import pytest

from diger_lib import batch_timing as BT
from diger_lib import reproduce as RP
from diger_lib.config import AssignConfig
from diger_lib.runs import Run


def run(name, r10, n10=None, users=22363):
    n10 = r10 / 2 if n10 is None else n10
    m = {"R@5": r10 * 0.6, "R@10": r10, "N@5": n10 * 0.7, "N@10": n10, "n_test_users": users}
    return Run(name, Path("."), m, {}, {})


def test_parse_name():
    assert RP.parse_name("Beauty__diger_frqud__s2026") == ("Beauty", "diger_frqud", 2026)
    assert RP.parse_name("Yelp__frqud_r2.5") == ("Yelp", "frqud_r2.5", None)
    assert RP.parse_name("ts_s2026") is None  # diagnosis-style names are not table runs


def test_seeds_are_averaged_with_sample_sd():
    cells = RP.collect([run("Beauty__two_stage__s1", 0.020), run("Beauty__two_stage__s2", 0.024), run("x", 0.5)])
    c = cells[("Beauty", "two_stage")]
    assert c.mean["R@10"] == pytest.approx(0.022) and c.seeds == (1, 2)
    assert c.sd["R@10"] == pytest.approx(math.sqrt(((0.002) ** 2 * 2) / 1))
    assert list(cells) == [("Beauty", "two_stage")]


def test_table2_sets_paper_beside_ours_and_claims_follow_the_means():
    runs = [run("Beauty__two_stage__s1", 0.020), run("Beauty__two_stage__s2", 0.022), run("Beauty__ste__s1", 0.010),
            run("Beauty__diger_frqud__s1", 0.019), run("Beauty__diger_sdud__s1", 0.025)]
    rep = RP.reproduce(runs, [], datasets=("Beauty",))
    t2 = rep.table2.set_index("key")
    assert t2.loc["two_stage", "paper_R@10"] == 0.061 and t2.loc["two_stage", "R@10"] == pytest.approx(0.021)
    assert t2.loc["two_stage_letter", "paper_R@10"] == 0.0672  # LETTER: Table 3's row
    assert t2.loc["markov1", "row"] == "Markov-1 (ours only)" and math.isnan(t2.loc["markov1", "paper_R@10"])
    assert math.isnan(t2.loc["diger_sdud_frqud", "R@10"]) and t2.loc["diger_sdud_frqud", "seeds"] == 0
    cl = rep.claims[(rep.claims["dataset"] == "Beauty") & (rep.claims["metric"] == "R@10")].set_index("claim")
    best = "DIGER (best UD variant: diger_sdud) > Two-Stage"
    assert cl.loc[best, "ours"] is True and cl.loc[best, "paper"] is True and cl.loc[best, "agrees"] is True
    assert cl.loc["Two-Stage > STE", "agrees"] is True
    # the detail sizes the difference against one run's test-set noise: R@10 0.025 vs 0.021 over 22,363 users
    se = RP.recall_se(0.023, 22363)
    assert f"difference +0.0040 = {0.004 / se:+.1f} test-set standard errors" in cl.loc[best, "detail"]
    runs[-1] = run("Beauty__diger_sdud__s1", 0.015)  # now no DIGER variant beats Two-Stage
    cl = RP.reproduce(runs, [], datasets=("Beauty",)).claims.set_index(["claim", "metric"])
    assert cl.loc[("DIGER (best UD variant: diger_frqud) > Two-Stage", "R@10"), "agrees"] is False


def test_ablation_table5_and_fig5_claims():
    runs = [run("Beauty__diger_none__s1", 0.030), run("Beauty__diger_frqud__s1", 0.031)]
    runs += [run(f"Beauty__{k}__s1", 0.02) for k in RP.ABLATIONS[:-1]] + [run("Beauty__abl_gaussian__s1", 0.04)]
    runs += [run(f"Beauty__K{K}_m{m}", 0.02) for K, m in RP.TABLE5_GRID if (K, m) != (256, 3)]
    # Figure 5 on Beauty: r flat (within 3 SE ~ 3 * 0.00116), lambda not
    # (r = 1.5 has no sweep run: Table 2's diger_frqud stands in; lambda = 1.4 has its own, not Table 2's diger_sdud)
    runs += [run(f"Beauty__{RP.fig5_key('r', v)}", 0.031 + 0.0005 * i) for i, v in enumerate(RP.FIG5_R) if v != 1.5]
    runs += [run(f"Beauty__{RP.fig5_key('lambda', v)}", 0.01 + 0.01 * i) for i, v in enumerate(RP.FIG5_LAMBDA)]
    runs += [run("Beauty__diger_sdud__s1", 0.5)]
    rep = RP.reproduce(runs, [], datasets=("Beauty",))
    f5 = rep.fig5.set_index(["dataset", "param", "value"])
    assert f5.loc[("Beauty", "r", 1.5), "key"] == "diger_frqud"
    assert f5.loc[("Beauty", "r", 1.5), "R@10"] == pytest.approx(0.031)
    assert f5.loc[("Beauty", "lambda", 1.4), "key"] == "sdud_lambda1.4"
    assert f5.loc[("Beauty", "lambda", 1.4), "R@10"] == pytest.approx(0.02)
    cl = rep.claims[rep.claims["metric"] == "R@10"].set_index(["claim", "dataset"])
    assert cl.loc[("uncertainty decay helps (w/ UD > w/o UD)", "Beauty"), "agrees"] is True
    assert cl.loc[("removing it hurts: w/o UD > -w/o Gumbel Noise", "Beauty"), "agrees"] is True
    assert cl.loc[("removing it hurts: w/o UD > -w Gaussian Noise", "Beauty"), "agrees"] is False
    assert cl.loc[("K = 256, m = 3 is best", "Beauty"), "agrees"] is True
    assert cl.loc[("flat sensitivity to r", "Beauty"), "ours"] is True
    assert cl.loc[("flat sensitivity to lambda", "Beauty"), "ours"] is False
    assert cl.loc[("flat sensitivity to r", "Instruments"), "ours"] is None  # no runs: unknown, not "agrees"


def test_recall_standard_error():
    assert RP.recall_se(0.02, 22363) == pytest.approx(math.sqrt(0.02 * 0.98 / 22363))


def test_write_reproduction_files(tmp_path):
    runs = [run("Beauty__two_stage__s1", 0.020), run("Beauty__diger_frqud__s1", 0.021), run("Beauty__ste__s1", 0.01)]
    cfg = [{"n_encoder_layers": 2, "n_decoder_layers": 2, "d_model": 128, "epochs": 4, "samples_per_epoch": 65536,
            "max_eval_users": 5000}]
    rep = RP.reproduce(runs, cfg, datasets=("Beauty",))
    assert rep.note.startswith("Ours: T5 2+2 layers, d_model 128, at most 4 epochs of 65536")
    written = {p.name for p in RP.write_reproduction(rep, tmp_path)}
    assert {"table2.csv", "table2.md", "table2.png", "table4.md", "table5.csv", "fig5.md", "claims.md"} <= written
    md = (tmp_path / "table2.md").read_text()
    assert rep.note in md and "| Beauty | Two-Stage | 0.0395 | 0.0120 |" in md


def test_readme_results_block(tmp_path):
    runs = [run("Beauty__two_stage__s1", 0.020), run("Beauty__diger_frqud__s1", 0.021)]
    RP.write_reproduction(RP.reproduce(runs, [], datasets=("Beauty",)), tmp_path)
    text = f"# R\n\nintro\n{RP.BEGIN}\nold numbers 0.9999\n{RP.END}\n\nafter\n"
    new = RP.readme_results(text, tmp_path)
    assert "0.9999" not in new and new.startswith("# R\n\nintro\n") and new.endswith(f"{RP.END}\n\nafter\n")
    assert "#### Table 2: paper vs ours" in new and "| Beauty | Two-Stage | 0.0395 |" in new
    assert RP.readme_results(new, tmp_path) == new  # idempotent
    assert "How long each part took" not in new  # optional until notebook 06 writes it
    (tmp_path / "timing.md").write_text("# How long each part took\n\n| part | runs |\n")
    assert "#### How long each part took" in RP.readme_results(text, tmp_path)
    with pytest.raises(ValueError, match="no results block"):
        RP.readme_results("# R\n", tmp_path)
    (tmp_path / "table4.md").unlink()
    with pytest.raises(FileNotFoundError, match="table4.md"):
        RP.readme_results(text, tmp_path)


def test_paper_cpu_profile_makes_every_run_the_tables_read():
    from diger_lib.profiles import steps_for

    steps = steps_for("paper_cpu")
    names = {v for s, v, _ in steps if s == "04_train_recommender"}
    cells = RP.collect([run(n, 0.02) for n in names])
    needed = [(ds, k) for ds in ("Beauty", "Instruments", "Yelp") for k in RP.TABLE2_ROWS]
    needed += [("Beauty", k) for k in RP.TABLE4_ROWS] + [("Beauty", RP.table5_key(K, m)) for K, m in RP.TABLE5_GRID]
    needed += [(ds, RP.fig5_key(p, v)) for ds in ("Beauty", "Instruments") for p, grid in
               (("r", RP.FIG5_R), ("lambda", RP.FIG5_LAMBDA)) for v in grid]
    assert sorted(set(needed) - set(cells)) == []
    assert cells[("Beauty", "two_stage")].seeds == (2026, 2027)  # Beauty's Table 2 has two seeds
    params = {v: p for s, v, p in steps if s == "04_train_recommender"}
    assert params["Beauty__K512_m3__s2026"]["codebook_size"] == 512 and params["Beauty__frqud_r3__s2026"]["frqud_r"] == 3.0
    for ds in ("Beauty", "Instruments"):  # the sweep's own default points train exactly as Table 2's DIGER rows
        for key, row, extra in (("frqud_r1.5", "diger_frqud", "frqud_r"), ("sdud_lambda1.4", "diger_sdud", "sdud_lambda")):
            sweep, t2 = params[f"{ds}__{key}__s2026"], params[f"{ds}__{row}__s2026"]
            assert {k: v for k, v in sweep.items() if k != extra} == {k: v for k, v in t2.items() if k != "seed"}
            assert sweep[extra] == getattr(AssignConfig(), extra)  # the default, which Table 2's rows leave implicit
    assert params["Beauty__abl_no_gumbel__s2026"]["noise"] == "none"
    tables = dict(steps_for("paper_cpu")[-1][2])
    pairs = dict(p.split(":") for p in tables["pairs"].split(","))
    assert pairs["Yelp__ste__s2026"] == "Yelp__two_stage__s2026" and pairs["Beauty__ste__s2027"] == "Beauty__two_stage__s2027"
    assert all(p in names for p in pairs.values())


def test_scale_note_ignores_the_most_popular_floor():
    """The floor trains nothing; its config's default epochs/samples must not enter the line atop every table."""
    trained = dict(method="two_stage", n_encoder_layers=2, n_decoder_layers=2, d_model=128, epochs=4,
                   samples_per_epoch=65536, max_eval_users=5000)
    floor = dict(method="most_popular", n_encoder_layers=6, n_decoder_layers=6, d_model=128, epochs=200,
                 samples_per_epoch=0, max_eval_users=0)
    note = RP.scale_note([run("Beauty__two_stage__s2026", 0.02), run("Beauty__most_popular__s2026", 0.01)],
                         [trained, floor])
    assert "T5 2+2 layers" in note and "at most 4 epochs of 65536 training samples" in note
    assert "validation on 5000 users" in note and "2 runs" in note
    assert "200" not in note and "6+6 layers" not in note


def test_scale_note_names_each_datasets_epoch_size_when_they_differ():
    base = dict(method="two_stage", n_encoder_layers=2, n_decoder_layers=2, d_model=128, epochs=4, max_eval_users=5000)
    configs = [dict(base, dataset="Beauty", samples_per_epoch=65536), dict(base, dataset="Yelp", samples_per_epoch=112640),
               dict(base, dataset="Instruments", samples_per_epoch=65536)]
    note = RP.scale_note([run("Beauty__two_stage__s2026", 0.02)] * 3, configs)
    assert "at most 4 epochs of 65536 (Beauty, Instruments) / 112640 (Yelp) training samples" in note


def test_timing_sums_each_part_of_the_batch(tmp_path):
    """figures/timing: every run folder's minutes by part (a resumed run counts its training over all calls)."""
    import json

    def folder(name, **t):
        (tmp_path / name).mkdir()
        (tmp_path / name / "timing.json").write_text(json.dumps(t))
    folder("01_prepare_data", wall_seconds=60)
    folder("03_pretrain_rqvae__Beauty", wall_seconds=600)
    folder("03_pretrain_rqvae__Beauty_K128_m3", wall_seconds=120)
    folder("04_train_recommender__Beauty__two_stage__s2026", wall_seconds=1200, train_wall_seconds=1100)
    folder("04_train_recommender__Beauty__diger_sdud__s2027", wall_seconds=600, train_wall_seconds=1800)  # resumed
    folder("04_train_recommender__Beauty__K128_m3__s2026", wall_seconds=900)
    folder("04_train_recommender__Beauty__abl_gaussian__s2026", wall_seconds=300)
    folder("04_train_recommender__Yelp__sdud_lambda2__s2026", wall_seconds=60)
    (tmp_path / ".04_train_recommender__Yelp__ste__s2026.FAILED").mkdir()  # no timing.json: not counted
    df = BT.timing(tmp_path).set_index("part")
    assert df.loc["Table 2, Beauty", "runs"] == 2 and df.loc["Table 2, Beauty", "minutes"] == 50.0
    assert df.loc["Table 5 (Beauty, tokenizers included)", "minutes"] == 17.0
    assert df.loc["Table 4 (Beauty)", "minutes"] == 5.0 and df.loc["Figure 5", "runs"] == 1
    assert df.loc["all", "runs"] == 8 and df.loc["all", "minutes"] == 1 + 10 + 50 + 17 + 5 + 1
    assert list(df.index[:2]) == ["data (01)", "item text and tokenizers (02, 03)"]  # the batch's order
    f = BT.write_timing(tmp_path, tmp_path / "fig")
    assert "| Table 2, Beauty | 2 | 50" in f.read_text() and f.with_suffix(".csv").is_file()


def _ranked_run(tmp_path, name, hits):
    """A run whose per-user test ranks hit (rank 0) for the users in ``hits`` (a boolean array), miss otherwise."""
    from diger_lib import records

    d = tmp_path / name
    d.mkdir()
    ranks = np.where(hits, 0, -1)
    records.write_ranks(d / "test_ranks.txt.gz", ranks)
    r10 = float(hits.mean())
    m = {"R@5": r10, "R@10": r10, "N@5": r10, "N@10": r10, "n_test_users": len(hits)}
    return Run(name, d, m, {}, {})


def test_claims_verdict_counts_a_difference_only_beyond_test_and_seed_noise(tmp_path, monkeypatch):
    """'agrees' compares signs; 'verdict' needs the paired bootstrap's interval to exclude 0 and, with several seeds,
    the difference to exceed twice its seed standard error."""
    monkeypatch.setattr(RP, "CLAIM_BOOT", 500)
    rng = np.random.default_rng(0)
    base = rng.random(20000) < 0.05

    def moved(gain, lose):  # base with `gain` misses turned into hits and `lose` hits into misses
        out = base.copy()
        out[rng.choice(np.flatnonzero(~base), gain, replace=False)] = True
        out[rng.choice(np.flatnonzero(base), lose, replace=False)] = False
        return out

    name = "DIGER (best UD variant: diger_frqud) > Two-Stage", "R@10"
    runs = [_ranked_run(tmp_path, "Beauty__two_stage__s1", base), _ranked_run(tmp_path, "Beauty__ste__s1", moved(0, 500)),
            _ranked_run(tmp_path, "Beauty__diger_frqud__s1", moved(110, 100))]
    cl = RP.reproduce(runs, [], datasets=("Beauty",)).claims.set_index(["claim", "metric"])
    assert cl.loc[("Two-Stage > STE", "R@10"), "verdict"] == "agrees"
    tie = cl.loc[name]
    assert tie["agrees"] is True and tie["verdict"] == "within noise" and "paired bootstrap 95% CI" in tie["detail"]
    (tmp_path / "gain").mkdir()
    runs[2] = _ranked_run(tmp_path / "gain", "Beauty__diger_frqud__s1", moved(200, 0))  # +0.01 on one seed
    assert RP.reproduce(runs, [], datasets=("Beauty",)).claims.set_index(["claim", "metric"]).loc[name, "verdict"] == "agrees"
    # a second seed on each side that spreads more than the gain: within noise again
    runs += [_ranked_run(tmp_path, "Beauty__two_stage__s2", moved(150, 0)),
             _ranked_run(tmp_path, "Beauty__diger_frqud__s2", moved(120, 0))]
    row = RP.reproduce(runs, [], datasets=("Beauty",)).claims.set_index(["claim", "metric"]).loc[name]
    assert row["ours"] is True and row["verdict"] == "within noise" and "seed SE of the difference" in row["detail"]
    # runs without per-user ranks: signs only, and the verdict says so
    plain = RP.reproduce([run("Beauty__two_stage__s1", 0.02), run("Beauty__ste__s1", 0.01)], [], datasets=("Beauty",))
    assert plain.claims.set_index(["claim", "metric"]).loc[("Two-Stage > STE", "R@10"), "verdict"] == "agrees (no noise test)"


def test_claims_compare_only_runs_trained_at_one_budget(tmp_path):
    """A claim whose sides were trained at different budgets (config.json: size, epochs x samples, batch; or a run its
    time budget cut) gets no verdict; the detail names both budgets."""
    import json

    def configured(name, r10, samples, stop="max_epochs"):
        d = tmp_path / name
        d.mkdir()
        cfg = dict(n_encoder_layers=2, n_decoder_layers=2, d_model=128, epochs=4, samples_per_epoch=samples,
                   batch_size=256, method="two_stage")
        (d / "config.json").write_text(json.dumps(cfg))
        m = {"R@5": r10, "R@10": r10, "N@5": r10, "N@10": r10, "n_test_users": 30000, "stop_reason": stop,
             "epochs_run": 3}
        return Run(name, d, m, {}, {})

    name = ("Two-Stage > STE", "R@10")
    runs = [configured("Yelp__two_stage__s1", 0.008, 112640), configured("Yelp__ste__s1", 0.002, 65536)]
    row = RP.reproduce(runs, [], datasets=("Yelp",)).claims.set_index(["claim", "metric"]).loc[name]
    assert row["ours"] is True and row["same_budget"] is False and row["verdict"] == "not comparable (budgets differ)"
    assert "4 x 112640 samples" in row["detail"] and "4 x 65536 samples" in row["detail"]
    # the same budget: judged as usual (no ranks here, so by sign)
    runs[1] = configured("Yelp__ste__s2", 0.002, 112640)
    row = RP.reproduce(runs, [], datasets=("Yelp",)).claims.set_index(["claim", "metric"]).loc[name]
    assert row["same_budget"] is True and row["verdict"] == "agrees (no noise test)"
    # a run its time budget cut short is a smaller budget
    runs[1] = configured("Yelp__ste__s3", 0.002, 112640, stop="time_budget")
    row = RP.reproduce(runs, [], datasets=("Yelp",)).claims.set_index(["claim", "metric"]).loc[name]
    assert row["verdict"] == "not comparable (budgets differ)" and "cut by its time budget after 3 epochs" in row["detail"]
    # two seeds of one side at different budgets: not comparable either
    runs = [runs[0], configured("Yelp__two_stage__s2", 0.009, 65536),
            configured("Yelp__ste__s4", 0.002, 112640)]
    assert RP.collect(runs)[("Yelp", "two_stage")].budgets == ("T5 2+2, d_model 128, 4 x 112640 samples, batch 256",
                                                              "T5 2+2, d_model 128, 4 x 65536 samples, batch 256")
    row = RP.reproduce(runs, [], datasets=("Yelp",)).claims.set_index(["claim", "metric"]).loc[name]
    assert row["same_budget"] is False


def test_tables_and_claims_name_the_semantic_ids_each_cell_trained_on():
    """A tokenizer rebuilt on another CPU type is another tokenizer (README note 14): each cell lists the IDs of its
    runs, and a claim whose sides trained on different IDs says so (it is still paired over the test users)."""
    def on(name, r10, digest):
        r = run(name, r10)
        r.metrics["tokenizer_codes_sha256"] = digest
        return r
    intel, amd = "474053bd" + "0" * 56, "7ef8671b" + "1" * 56
    runs = [on("Beauty__diger_frqud__s1", 0.030, intel), on("Beauty__diger_frqud__s2", 0.031, intel),
            on("Beauty__abl_gaussian__s1", 0.029, amd), on("Beauty__diger_none__s1", 0.028, intel),
            on("Beauty__most_popular__s1", 0.01, "")]
    rep = RP.reproduce(runs, [], datasets=("Beauty",))
    t4 = rep.table4.set_index("key")
    assert t4.loc["diger_frqud", "ids"] == "474053bd" and t4.loc["abl_gaussian", "ids"] == "7ef8671b"
    assert t4.loc["abl_hard_update", "ids"] == ""  # no runs
    assert rep.table2.set_index("key").loc["most_popular", "ids"] == ""  # a floor reads no IDs
    assert RP.display_table(rep.table4)["IDs (codes.npy)"].tolist() == rep.table4["ids"].tolist()
    detail = rep.claims.set_index(["claim", "metric"])["detail"]
    gauss = [d for (c, mt), d in detail.items() if "Gaussian" in c and mt == "R@10"]
    assert gauss and "semantic IDs 474053bd vs 7ef8671b" in gauss[0]
    ud = detail[("uncertainty decay helps (w/ UD > w/o UD)", "R@10")]
    assert "semantic IDs" not in ud  # same IDs on both sides
