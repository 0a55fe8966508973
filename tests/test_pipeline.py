"""pipeline: one call builds a notebook-04 run from its flat parameters. The checkpoint fingerprint of a parameter
set is pinned to the value the notebook computed before the wiring moved into the library (commit d564399): a
running batch resumes its checkpoints only if these stay byte-identical."""
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from diger_lib import pipeline
from diger_lib.config import FLOOR_METHODS, ConfigError, IDSource, Method
from diger_lib.profiles import steps_for

ROOT = Path(__file__).resolve().parents[1]
TINY = {"dataset": "Tiny", "data_root": "tests/fixtures"}

PINNED = [  # (parameters given to notebook 04, fingerprint the notebook's own code computed at d564399)
    (dict(TINY), "1bbb2b6ac24edd96"),
    (dict(TINY, decay="frqud", epochs=3, lr_schedule="warmup_cosine", method="diger", warmup_steps=5), "7b3450b58e416408"),
    (dict(TINY, codebook_size=8, ids="letter", method="two_stage", n_levels=2), "5061eff768d7124f"),
    (dict(TINY, method="most_popular"), "2a8272f7317a998c"),
    (dict(TINY, coupling="none", init_from="04_train_recommender__two_stage", labels="deterministic", method="ste",
          proj_init="zero", seed=7, sim="gaussian", tokenizer_lr=1e-06, tokenizer_train="codebooks", vq_codes="sampled"),
     "5b37f337edbaa209"),
]
# the diagnosis batch's notebook-04 steps (the checkpoints it resumes)
DIAGNOSIS = {"dg_authors": "92abcd5b44669c14", "dg_base": "8e54b22e56d18de1", "dg_codebooks_lr1e-5": "0ccf6aa214e52c0b",
             "dg_cosine": "623b2449e88091ba", "dg_frqud_per_item": "7a2821a58581d5bd",
             "dg_last_layer_lr1e-5": "93755fda4463df6d", "dg_sampled_labels": "0ffeb8d2963c055d",
             "dg_sdud_lambda2": "c7e837fe62cf87e8", "dg_tok_lr0": "de8ac44eb4dcbfee", "dg_tok_lr1e-5": "4393a0bbe64cff0f",
             "dg_zero_w": "7c5adcef843bc19c", "ts_cosine": "1c3f5efa950eec5a", "ts_s2026": "d718a7193f5fdfd9",
             "ts_s2027": "c405bea8b9ffe925", "ts_s2028": "913602cb0e7dd019", "ts_cosine_long8": "8614c25c2a49bd88", "dg_cosine_long8": "bc382c9a581261c0", "ws_dg_plus1": "edd4c62d5d054cfd", "ws_ts_pass1": "07dcc963135523e9",
             "ws_ts_plus1": "71d77bacc062d72b", "dg_frqud_per_item_s2027": "886601053392ede2",
             "dg_frqud_per_item_s2028": "e1c565582854b2ee", "ste": "d43556cffe041035",
             "dg_evtrained": "8fed420599a821c8", "dg_evtrained_s2027": "33095e885d0c7779",
             "dg_evtrained_s2028": "d672bd2cdba259a8", "dg_evtrained_cosine": "0bc4e732fe8da5e0",
             "dg_e2e": "b73c9d8a787e0b85", "dg_e2e_s2027": "fe2ea1d6d1e0fa26", "dg_e2e_s2028": "5721878f5533cd26",
             "ts_cosine_s2027": "ced8b5e4056bff3a", "ts_cosine_s2028": "bfad46ff25ef8f21",
             "dg_e2e_gen_only": "16e6e2d9ea8b97c6", "dg_e2e_lr1e-6": "81a9914bc1ab92ff",
             "dg_e2e_long8": "9e2a2c5dad37cd13", "dg_cosine_s2027": "d25bd508477a1637",
             "dg_cosine_s2028": "69c451534bc3a03e"}


def notebook_params(**given):
    """Notebook 04's parameters as the kernel holds them: the parameters cell's defaults, then the given values."""
    book = nbformat.read(ROOT / "notebooks" / "04_train_recommender.ipynb", as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    ns: dict = {}
    exec(cell.source, ns)
    unknown = set(given) - set(ns)
    assert not unknown, unknown
    ns.update(given)
    return ns


@pytest.mark.parametrize("given,expected", PINNED)
def test_fingerprint_is_pinned(given, expected):
    assert pipeline.RunSpec.from_params(notebook_params(**given)).fingerprint() == expected


def test_diagnosis_fingerprints_are_pinned():
    steps = {v: p for s, v, p in steps_for("diagnosis") if s == "04_train_recommender"}
    assert set(steps) == set(DIAGNOSIS)
    for name, params in steps.items():
        assert pipeline.RunSpec.from_params(notebook_params(**params)).fingerprint() == DIAGNOSIS[name], name


def test_run_config_keys_and_cosine_horizon():
    spec = pipeline.RunSpec.from_params(notebook_params(**TINY))
    cfg = spec.run_config()
    assert list(cfg) == ["data", "model", "train", "assign", "joint", "ids", "K", "m", "init_from"]
    assert "epochs" not in cfg["train"] and cfg["ids"] == "ours" and json.dumps(cfg)
    cos = pipeline.RunSpec.from_params(notebook_params(**TINY, lr_schedule="warmup_cosine", epochs=7)).run_config()
    assert cos["cosine_epochs"] == 7  # with a cosine schedule, `epochs` sets the horizon and so changes the run
    a = pipeline.RunSpec.from_params(notebook_params(**TINY, epochs=3)).fingerprint()
    assert a == spec.fingerprint()  # otherwise `epochs` is an upper bound: raising it resumes


def test_from_params_ignores_other_globals_and_validates():
    spec = pipeline.RunSpec.from_params(dict(notebook_params(**TINY, method="ste", tau=3.0), np=np, OUT="x"))
    assert spec.train.method is Method.STE and spec.ids is IDSource.OURS
    assert spec.assign.noise.value == "none" and spec.assign.tau == 3.0  # STE fixes its switches, keeps tau
    with pytest.raises(ConfigError, match="ids='theirs' is not one of"):
        pipeline.RunSpec.from_params(notebook_params(**TINY, ids="theirs"))
    with pytest.raises(ConfigError, match="only applies to method='two_stage'"):
        pipeline.RunSpec.from_params(notebook_params(**TINY, ids="letter", method="diger"))
    with pytest.raises(ConfigError, match="sim="):
        pipeline.RunSpec.from_params(notebook_params(**TINY, sim="cosine"))
    for method, extra in (("diger", dict(update="hard")), ("ste", {})):  # no path for the hard update's gradient
        with pytest.raises(ConfigError, match="update='hard' with coupling='embeddings'"):
            pipeline.RunSpec.from_params(notebook_params(**TINY, method=method, coupling="embeddings", **extra))


def test_every_profile_step_builds_a_run():
    """Every notebook-04 step of every built-in profile is a valid run (cross-field checks included)."""
    from diger_lib.profiles import PROFILES

    for profile in PROFILES:
        for stem, name, params in steps_for(profile):
            if stem == "04_train_recommender":
                pipeline.RunSpec.from_params(notebook_params(**params))


def _spec(profile, name):
    return pipeline.RunSpec.from_params(notebook_params(**dict(
        (v, p) for s, v, p in steps_for(profile) if s == "04_train_recommender")[name]))


def test_dynamics_and_paper_cpu_run_the_studys_choice():
    """The figure and table profiles' DIGER is the configuration the diagnosis study measured (dg_e2e), and the rows
    it is compared with share its learning-rate schedule."""
    e2e = _spec("diagnosis", "dg_e2e")
    for profile, name in (("dynamics", "diger_frqud"), ("paper_cpu", "Beauty__diger_frqud__s2026")):
        spec = _spec(profile, name)
        assert spec.joint == e2e.joint and spec.assign == e2e.assign, (profile, name)
        assert spec.train.tokenizer_lr == e2e.train.tokenizer_lr == 1e-5
    for profile, names in (("dynamics", ("two_stage", "ste", "diger_none", "diger_sdud")),
                           ("paper_cpu", ("Beauty__two_stage__s2026", "Beauty__ste__s2027", "Yelp__diger_sdud__s2026"))):
        assert {_spec(profile, n).train.lr_schedule.value for n in names} == {"warmup_cosine"}, profile
    assert _spec("dynamics", "diger_sdud").assign.sdud_lambda == 2.0  # sigma decays within the budget
    assert _spec("dynamics_literal", "diger_frqud").joint == pipeline.JointConfig()  # the literal reading
    assert _spec("paper_cpu", "Beauty__abl_hard_update__s2026").joint.coupling.value == "gradient"


def test_tokenizer_round_trip(tmp_path):
    from diger_lib.config import RQVAEConfig
    from diger_lib.rqvae import RQVAE

    cfg = RQVAEConfig(codebook_size=8, n_levels=2, code_dim=4, hidden_dims=(16,))
    model = RQVAE(12, cfg)
    pipeline.save_tokenizer(model, cfg, tmp_path / "rqvae.pt")
    back = pipeline.load_tokenizer(tmp_path / "rqvae.pt")
    x = torch.randn(20, 12)
    assert back.cfg == cfg and torch.equal(back.deterministic_codes(x), model.deterministic_codes(x))


def test_letter_ids_are_unique(tmp_path):
    d = tmp_path / "X"
    d.mkdir()
    (d / "X.inter.json").write_text(json.dumps({"0": [0, 1, 2]}))
    (d / "X.index.json").write_text(json.dumps({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<b_2>"], "2": ["<a_3>", "<b_0>"]}))
    codes, K, changed = pipeline.load_letter_ids(tmp_path, "X", 3)
    assert K == 256 and changed == 1 and len(np.unique(codes, axis=0)) == 3


def test_tokenizer_digest_names_the_ids_file(tmp_path):
    import hashlib

    spec = pipeline.RunSpec.from_params(notebook_params(**TINY, codebook_size=8, n_levels=2))
    with pytest.raises(FileNotFoundError, match="codes.npy not found"):
        pipeline.tokenizer_digest(spec, tmp_path)
    rq = tmp_path / "Tiny" / "rqvae_K8_m2"
    rq.mkdir(parents=True)
    np.save(rq / "codes.npy", np.arange(12).reshape(4, 3))
    digest = pipeline.tokenizer_digest(spec, tmp_path)
    assert digest == hashlib.sha256((rq / "codes.npy").read_bytes()).hexdigest()
    np.save(rq / "codes.npy", np.arange(12).reshape(4, 3)[::-1].copy())  # other IDs, other digest
    assert pipeline.tokenizer_digest(spec, tmp_path) != digest
    for floor in FLOOR_METHODS:  # the floors read no IDs
        spec = pipeline.RunSpec.from_params(notebook_params(**TINY, method=floor))
        assert pipeline.tokenizer_digest(spec, tmp_path / "nowhere") == ""


def test_floor_topk_gives_every_user_a_list():
    """Most-popular: one list for all; Markov-1: the last history item's successors (pipeline.floor_topk)."""
    from diger_lib import data as D, metrics as M

    split = D.split_leave_one_out(D.load_interactions(TINY["data_root"], "Tiny"), 20)
    pv, pt = pipeline.floor_topk(Method.MOST_POPULAR, split, 5)
    assert pv.shape == (len(split.valid), 5) and pt.shape == (len(split.test), 5) and (pt == pt[0]).all()
    mv, mt = pipeline.floor_topk(Method.MARKOV1, split, 5)
    assert mt.shape == (len(split.test), 5) and len({tuple(r) for r in mt}) > 1
    last = M.last_items(split.test.history, split.test.length)
    assert (mt == M.markov1_topk(split.train_sequences, last, split.n_items, 5)).all()
    with pytest.raises(ValueError, match="not a floor"):
        pipeline.floor_topk(Method.TWO_STAGE, split, 5)


def test_run_label():
    assert pipeline.run_label("two_stage", "letter") == "Two-Stage (LETTER IDs)"
    assert pipeline.run_label("diger", decay="frqud") == "DIGER (FrqUD)"
    assert pipeline.run_label("diger", decay="none", noise="gaussian") == "DIGER (w/o UD) noise=gaussian update=soft"


def test_full_size_cosine_two_stage_differs_from_the_old_run_only_in_its_schedule():
    """paper_two_stage_cosine: the paper-size Two-Stage, on the same artifacts, with warm-up + cosine over 20 epochs."""
    old, new = _spec("paper_two_stage", "two_stage"), _spec("paper_two_stage_cosine", "two_stage_cosine")
    assert new.model == old.model and new.data == old.data and new.train.lr == old.train.lr
    assert new.train.lr_schedule.value == "warmup_cosine" and new.train.warmup_steps == 500
    assert (new.train.epochs, new.train.patience, old.train.epochs) == (20, 5, 200)
    assert new.train.samples_per_epoch == old.train.samples_per_epoch == 0  # every training sample, every epoch
    assert new.fingerprint() != old.fingerprint()
    art = {p["artifacts_dir"] for s, v, p in steps_for("paper_two_stage_cosine") if not s.startswith("06")}
    assert art == {"paper_two_stage"}
    # the full-size DIGER beside it: the same model, data, IDs, budget and recipe; only the method differs (and the
    # tokenizer's rate, which Two-Stage does not use)
    dg = _spec("paper_two_stage_cosine", "diger_frqud_cosine")
    assert dg.model == new.model and dg.data == new.data and dg.train.method is Method.DIGER
    same = lambda t: {k: v for k, v in vars(t).items() if k not in ("method", "tokenizer_lr")}  # noqa: E731 (joint only)
    assert same(dg.train) == same(new.train)


def test_paper_cpu_trains_every_dataset_the_same_number_of_passes():
    """One scale for all of paper_cpu's runs, counted in passes over each dataset's training samples: Yelp, with 1.7x
    Beauty's samples, gets proportionally more per epoch (profiles._CPU_SCALE)."""
    from diger_lib import data as D
    from diger_lib.profiles import _CPU_PASSES

    n_train = {ds: len(D.split_leave_one_out(D.load_interactions(ROOT / "data", ds), 20).train)
               for ds in ("Beauty", "Instruments", "Yelp")}
    seen = set()
    for stem, name, params in steps_for("paper_cpu"):
        if stem == "04_train_recommender" and params.get("method") not in FLOOR_METHODS:
            t = pipeline.RunSpec.from_params(notebook_params(**params)).train
            passes = t.epochs * t.samples_per_epoch / n_train[params["dataset"]]
            assert abs(passes - _CPU_PASSES) < 0.02, (name, passes)
            seen.add(params["dataset"])
    assert seen == set(n_train)
