"""Named run profiles: which notebooks run, in which order, with which parameters.

Each step is ``(notebook stem, variant or "", parameters)``; the runner writes it to
``papermill_runs/<profile>/<stem>[__variant]/``. Parameters not given keep the notebook's defaults
(the paper's settings). ``smoke`` runs a tiny committed fixture in about a minute (tests); ``quick`` is
the main job (real Beauty, < 30 min on 2 CPU cores); ``paper`` is the paper's full configuration.
A researcher's own batch is a profile file (TOML, one ``[[step]]`` per entry), read by
``profile_files.load_profile_file``.
Paths are relative to the repository root (the notebooks' working directory), so configs compare across clones.
"""
from __future__ import annotations

from typing import Any

from .config import FLOOR_METHODS

FIXTURES = "tests/fixtures"

Step = tuple[str, str, dict]

# A tiny recommender for smoke tests: 1+1 layers, d_model 32.
_TINY_MODEL = dict(d_model=32, d_ff=64, n_heads=2, d_kv=16, n_encoder_layers=1, n_decoder_layers=1)
_TINY_RQ = dict(codebook_size=16, rqvae_epochs=5, hidden_dims="64,32", code_dim=8, kmeans_iters=5)
_TINY_04 = dict(codebook_size=16)


def _smoke() -> list[Step]:
    d = dict(dataset="Tiny", data_root=FIXTURES)
    train = dict(d, **_TINY_MODEL, codebook_size=16, epochs=12, patience=4, batch_size=64, lr=5e-3, beam_size=10, topk=10)
    return [
        ("01_prepare_data", "", dict(datasets="Tiny", data_root=FIXTURES, compare_paper=False)),
        ("02_encode_item_text", "", dict(d)),
        ("03_pretrain_rqvae", "", dict(dataset="Tiny", **_TINY_RQ)),
        ("04_train_recommender", "two_stage", dict(train, method="two_stage")),
        ("04_train_recommender", "most_popular", dict(train, method="most_popular")),
        ("04_train_recommender", "markov1", dict(train, method="markov1")),
        ("04_train_recommender", "ste", dict(train, method="ste")),
        ("04_train_recommender", "diger_sdud_frqud", dict(train, method="diger", decay="sdud+frqud")),
        ("05_sid_dynamics_figures", "", dict(runs="ste,diger_sdud_frqud", main_diger="diger_sdud_frqud")),
        ("06_results_tables", "", dict()),
    ]


# The main job: real Beauty, sized for a laptop CPU. Smaller recommender (2+2 layers) and few epochs.
_QUICK_MODEL = dict(n_encoder_layers=2, n_decoder_layers=2)
_QUICK_TRAIN = dict(_QUICK_MODEL, epochs=4, patience=2, samples_per_epoch=65536, max_eval_users=2000, batch_size=256,
                    lr=2e-3)
_QUICK_RQ = dict(rqvae_epochs=60, kmeans_iters=20)


def _quick() -> list[Step]:
    d = dict(dataset="Beauty")
    return [
        ("01_prepare_data", "", dict()),
        ("02_encode_item_text", "", dict(d)),
        ("03_pretrain_rqvae", "", dict(d, **_QUICK_RQ)),
        ("04_train_recommender", "most_popular", dict(d, method="most_popular")),
        ("04_train_recommender", "markov1", dict(d, method="markov1")),
        ("04_train_recommender", "two_stage", dict(d, **_QUICK_TRAIN, method="two_stage")),
        ("04_train_recommender", "two_stage_letter", dict(d, **_QUICK_TRAIN, method="two_stage", ids="letter")),
        ("06_results_tables", "", dict()),
    ]


# The diagnosis study's choice of DIGER's settings (README, "DIGER diagnosis study"; issue 13): the authors' later
# true-e2e coupling (`dg_e2e`), the closest of every configuration to Two-Stage on Beauty at the CPU budget (3 seeds:
# R@10 -0.0006 [-0.0013, +0.0002], N@10 -0.0001 [-0.0005, +0.0002], drift 6%); no configuration beat Two-Stage.
# Hard tokens forward (exactly Two-Stage's), the Gumbel-softmax probabilities backward through the recommender's own
# token embeddings and labels; encoder frozen, codebooks at lr 1e-5; labels from the epoch's deterministic table,
# which validation and test read too; FrqUD per item; Gaussian-scaled Eq. 5. It was measured with the warm-up + cosine schedule (`_COSINE`), so every row it is compared with shares that schedule. The notebook
# defaults stay the literal reading of the paper (README note 21), so earlier runs keep their fingerprints.
DIGER_CHOICE = dict(sim="gaussian", labels="deterministic", coupling="embeddings", tokenizer_train="codebooks",
                    tokenizer_lr=1e-5, frqud_mode="per_item", eval_ids="trained")
_COSINE = dict(lr_schedule="warmup_cosine", warmup_steps=500)

# SID dynamics on Beauty (issue: DIGER; Figures 2, 6, 7): every joint method, short runs sized for this CPU, DIGER
# with the study's choice and every row on the warm-up + cosine schedule.
_DYN_TRAIN = dict(_QUICK_TRAIN, epochs=6, patience=6, samples_per_epoch=24576, max_eval_users=1500)
_DECAYS = ("none", "sdud", "frqud", "sdud+frqud")
# the diagnosis schedule's shape: its 500 warm-up steps are 49% of its 4 x 256 steps; here of 6 x 96 steps
_DYN_COSINE = dict(lr_schedule="warmup_cosine", warmup_steps=280)
_SDUD_LAMBDA = dict(sdud_lambda=2.0)


def _dynamics() -> list[Step]:
    d = dict(dataset="Beauty")
    t = dict(d, **_DYN_TRAIN, **_DYN_COSINE)
    steps = [
        ("02_encode_item_text", "", dict(d)),
        ("03_pretrain_rqvae", "", dict(d, **_QUICK_RQ)),
        ("04_train_recommender", "two_stage", dict(t, method="two_stage")),
        ("04_train_recommender", "ste", dict(t, method="ste")),
    ]
    # SDUD with lambda 2.0 (in the paper's grid): sigma* = sqrt(L_gen) - lambda reaches 0 within a CPU budget
    # (`dg_sdud_lambda2` in the study: sigma 1 -> 0 by epoch 3); at lambda 1.4 sigma barely moves
    steps += [("04_train_recommender", f"diger_{decay.replace('+', '_')}",
               dict(t, method="diger", decay=decay, **DIGER_CHOICE, **(_SDUD_LAMBDA if "sdud" in decay else {})))
              for decay in _DECAYS]
    steps += [("05_sid_dynamics_figures", "", dict(main_diger="diger_frqud", figures_dir="figures/dynamics")),
              ("06_results_tables", "", dict())]
    return steps


def _dynamics_literal() -> list[Step]:
    """The `dynamics` profile before the study chose DIGER's settings: the literal reading of the paper (notebook
    defaults: W_j e inputs, sampled labels, the whole tokenizer at lr 1e-4, FrqUD per code, constant lr), on the
    `dynamics` tokenizer. Its committed runs (sessions 1-2, `papermill_runs/dynamics_literal/`) show the collapse the
    study set out to explain. Needs `dynamics` run first."""
    d = dict(dataset="Beauty", artifacts_dir="dynamics")  # $DIGER_ARTIFACTS/dynamics
    steps = [("04_train_recommender", "two_stage", dict(d, **_DYN_TRAIN, method="two_stage")),
             ("04_train_recommender", "ste", dict(d, **_DYN_TRAIN, method="ste"))]
    steps += [("04_train_recommender", f"diger_{decay.replace('+', '_')}",
               dict(d, **_DYN_TRAIN, method="diger", decay=decay)) for decay in _DECAYS]
    return steps + [("05_sid_dynamics_figures", "", dict(main_diger="diger_frqud",
                                                         figures_dir="figures/dynamics_literal")),
                    ("06_results_tables", "", dict())]


def _dynamics_gaussian() -> list[Step]:
    """DIGER again on the `dynamics` profile's tokenizer, with sim="gaussian" (Eq. 5 scaled by the quantiser's
    error, so Gumbel noise perturbs rather than re-draws the deeper codes). Needs `dynamics` run first."""
    d = dict(dataset="Beauty", artifacts_dir="dynamics", sim="gaussian")  # $DIGER_ARTIFACTS/dynamics
    steps = [("04_train_recommender", f"diger_{decay}", dict(d, **_DYN_TRAIN, method="diger", decay=decay))
             for decay in ("none", "sdud", "frqud")]
    figs = "figures/dynamics_gaussian"
    return steps + [("05_sid_dynamics_figures", "", dict(runs="diger_none,diger_sdud,diger_frqud",
                                                         main_diger="diger_frqud", figures_dir=figs)),
                    ("06_results_tables", "", dict())]


# Issue "DIGER that reproduces its paper": the diagnosis study at one fixed CPU budget on Beauty. T5 2+2,
# 4 "epochs" of 65,536 fresh samples (~2 passes over the 131,413), validation on a fixed 5,000 users, test on all.
_DIAG_TRAIN = dict(_QUICK_MODEL, epochs=4, patience=4, samples_per_epoch=65536, max_eval_users=5000, batch_size=256,
                   lr=2e-3, time_budget_minutes=60.0)
# The study's DIGER baseline: FrqUD (Eq. 13), Gaussian-scaled Eq. 5, deterministic labels, tokenizer lr 1e-6.
_DIAG_DIGER = dict(method="diger", decay="frqud", sim="gaussian", labels="deterministic", tokenizer_lr=1e-6)
# The authors' public code (junchen-fu/DIGER @ cef6b94, run_FrqUD.sh + config/beauty_jo.yaml): no gradient coupling,
# encoder frozen, tokenizer lr 1e-5, FrqUD per item, min-max distances, VQ losses on the noisy codes, 500 warm-up
# steps then cosine.
_AUTHORS = dict(method="diger", decay="frqud", frqud_mode="per_item", sim="minmax", vq_codes="sampled",
                labels="deterministic", coupling="none", tokenizer_train="codebooks", tokenizer_lr=1e-5,
                lr_schedule="warmup_cosine", warmup_steps=500)
_E2E = dict(coupling="embeddings", tokenizer_train="codebooks", tokenizer_lr=1e-5, frqud_mode="per_item",
            eval_ids="trained", **_COSINE)


def _diagnosis() -> list[Step]:
    """Rows in the order they are most informative; each run ~10-20 min on 2 cores (README, the study)."""
    d = dict(dataset="Beauty")
    t, dg = dict(d, **_DIAG_TRAIN), dict(d, **_DIAG_TRAIN, **_DIAG_DIGER)
    one_pass = dict(epochs=2, patience=2)  # warm start: 2 x 65,536 samples ~ one pass each
    rows = [
        # session 6, a new machine (Intel Xeon; sessions 2-5 ran on AMD EPYC): notebook 03 gives another tokenizer
        # ("C"; RQ-VAE pretraining is deterministic per machine, not across CPU types), so the verdict rows run again:
        # Two-Stage and DIGER FrqUD per item with eval_ids="trained" (validation and test read the table the
        # recommender trained on) side by side, seed for seed, then the control and the session-5 rows
        ("ts_s2026", dict(t, method="two_stage")),
        ("dg_evtrained", dict(dg, frqud_mode="per_item", eval_ids="trained")),
        ("ts_s2027", dict(t, method="two_stage", seed=2027)),
        ("dg_evtrained_s2027", dict(dg, frqud_mode="per_item", eval_ids="trained", seed=2027)),
        # session 6: the authors' later "true end-to-end" code (junchen-fu/DIGER @ 577e65e, config/*_gradient_fix.yaml):
        # hard tokens from the epoch table forward, the Gumbel-softmax probabilities backward through the recommender's
        # own token embeddings and labels (coupling="embeddings"), encoder frozen, tokenizer lr 1e-5, FrqUD per item,
        # 500 warm-up steps + cosine; against Two-Stage with the same schedule
        ("ts_cosine", dict(t, method="two_stage", **_COSINE)),
        ("dg_e2e", dict(dg, **_E2E)),
        ("ts_cosine_s2027", dict(t, method="two_stage", **_COSINE, seed=2027)),
        ("dg_e2e_s2027", dict(dg, **_E2E, seed=2027)),
        ("ts_cosine_s2028", dict(t, method="two_stage", **_COSINE, seed=2028)),
        ("dg_e2e_s2028", dict(dg, **_E2E, seed=2028)),
        # session 7: the true-e2e pair ties over three seeds, and its new IDs cost the recommender ~0.01 nats on the
        # probe set (probe_loss_new_ids > probe_loss_old_ids at epochs 2-4). Its drift is L_gen's: with the tokenizer's
        # own losses off (dg_e2e_gen_only, last) epoch 1 moves the same 0.74% of IDs. So: the tokenizer's rate
        # (1e-6), STE on tokenizer C, twice the budget for the e2e pair, then the study rows tokenizer C has not run
        ("dg_authors", dict(t, **_AUTHORS)),
        ("dg_e2e_lr1e-6", dict(dg, **dict(_E2E, tokenizer_lr=1e-6))),
        ("ste", dict(t, method="ste")),  # naive joint training: the paper has it far below Two-Stage
        # the e2e pair at twice the budget (8 x 65,536 samples, ~4 passes)
        ("ts_cosine_long8", dict(t, method="two_stage", **_COSINE, epochs=8, patience=8, time_budget_minutes=120.0)),
        ("dg_e2e_long8", dict(dg, **_E2E, epochs=8, patience=8, time_budget_minutes=120.0)),
        ("dg_sdud_lambda2", dict(dg, decay="sdud", sdud_lambda=2.0)),
        ("dg_codebooks_lr1e-5", dict(dg, tokenizer_train="codebooks", tokenizer_lr=1e-5)),
        ("dg_last_layer_lr1e-5", dict(dg, tokenizer_train="last_layer", tokenizer_lr=1e-5)),
        ("ts_s2028", dict(t, method="two_stage", seed=2028)),
        ("dg_evtrained_s2028", dict(dg, frqud_mode="per_item", eval_ids="trained", seed=2028)),
        ("dg_cosine", dict(dg, **_COSINE)),
        # then the control (tokenizer frozen), the cosine schedule for both sides, and the rest
        ("dg_tok_lr0", dict(dg, tokenizer_lr=0.0)),
        ("dg_evtrained_cosine", dict(dg, frqud_mode="per_item", eval_ids="trained", **_COSINE)),
        ("dg_frqud_per_item", dict(dg, frqud_mode="per_item")),  # dg_evtrained's training, evaluated on refreshed IDs
        ("dg_frqud_per_item_s2027", dict(dg, frqud_mode="per_item", seed=2027)),
        ("dg_frqud_per_item_s2028", dict(dg, frqud_mode="per_item", seed=2028)),
        ("dg_base", dict(dg)),
        ("dg_tok_lr1e-5", dict(dg, tokenizer_lr=1e-5)),
        ("dg_sampled_labels", dict(dg, labels="sampled")),
        # the budget-matched warm start (three half-size runs)
        ("ws_ts_pass1", dict(t, method="two_stage", **one_pass)),
        ("ws_ts_plus1", dict(t, method="two_stage", init_from="04_train_recommender__ws_ts_pass1", **one_pass)),
        ("ws_dg_plus1", dict(dg, proj_init="zero", init_from="04_train_recommender__ws_ts_pass1", **one_pass)),
        ("dg_zero_w", dict(dg, proj_init="zero")),
        # twice the budget with the cosine schedule: does DIGER recoup the cost of its ID refreshes once drift decays?
        ("dg_cosine_long8", dict(dg, **_COSINE, epochs=8, patience=8, time_budget_minutes=120.0)),
        ("dg_e2e_gen_only", dict(dg, **_E2E, tokenizer_losses=False)),  # L_gen alone moves the tokenizer
        # session 8: dg_cosine (the W_j e design with the cosine schedule) is level with ts_cosine on seed 2026
        # (R@10 +0.0001, N@10 +0.0005): its seeds 2027 and 2028, against ts_cosine_s2027 / _s2028
        ("dg_cosine_s2027", dict(dg, **_COSINE, seed=2027)),
        ("dg_cosine_s2028", dict(dg, **_COSINE, seed=2028)),
    ]
    steps = [("02_encode_item_text", "", dict(d)), ("03_pretrain_rqvae", "", dict(d, **_QUICK_RQ))]
    steps += [("04_train_recommender", name, params) for name, params in rows]
    pairs = "dg_authors:ts_cosine,dg_cosine:ts_cosine,ws_ts_plus1:ws_ts_pass1,ws_dg_plus1:ws_ts_plus1"
    return steps + [("05_sid_dynamics_figures", "", dict(runs="dg_base,dg_tok_lr1e-5,dg_sampled_labels,dg_authors",
                                                         main_diger="dg_base", figures_dir="figures/diagnosis")),
                    ("06_results_tables", "", dict(baseline="ts_s2026", pairs=pairs))]


# Issue "Every table and figure": Tables 2, 4, 5 and Figures 2, 5, 6, 7 in one batch sized for this CPU (48 training runs
# of ~13-20 min on 2 cores). Every run is named <Dataset>__<key>__s<seed> (the keys diger_lib.reproduce reads) and
# has the diagnosis budget (T5 2+2, 4 x 65,536 samples, 5,000 validation users, test on all users).
# DIGER's settings: the diagnosis study's choice (DIGER_CHOICE), and every row on its warm-up + cosine schedule.
_CPU_TRAIN = dict(_DIAG_TRAIN, **_COSINE)
_CPU_DIGER = DIGER_CHOICE
_CPU_SEEDS = {"Beauty": (2026, 2027), "Instruments": (2026,), "Yelp": (2026,)}
# Figure 5's sweep has a run of its own at every grid point, the defaults r = 1.5 and lambda = 1.4 included (the same
# settings as Table 2's DIGER (FrqUD) and (SDUD) at seed 2026), so its points always share one tokenizer: a sweep
# finished on another machine than Table 2 would otherwise set its points beside a default on other IDs (note 14).
_CPU_FIG5 = {"r": (1.0, 1.5, 2.0, 3.0), "lambda": (1.0, 1.4, 2.0)}
# A second seed where one seed showed DIGER above Two-Stage beyond test-set noise (Instruments, FrqUD: N@10 +0.0029
# [+0.0022, +0.0038], session 10), so the claims check sees the seed spread before the Yelp and Table 4/5 runs.
_CPU_CONFIRM = {"Instruments": (2027, ("frqud",))}  # seed, DIGER decays: each run beside a Two-Stage of that seed
# One scale in passes: 4 x 65,536 samples is ~2.0 passes over Beauty's 131,413 and Instruments' 131,837 training
# samples, but only 1.16 over Yelp's 225,061 (its Table 2 rows at 4 x 65,536 stayed below the most-popular floor with
# validation still rising, session 10). Yelp gets 4 x 112,640 (2.0 passes) and a time budget to match.
_CPU_PASSES = 2.0
_CPU_SCALE = {"Yelp": dict(samples_per_epoch=112_640, time_budget_minutes=150.0)}


def _cpu_train(ds: str) -> dict[str, Any]:
    """paper_cpu's training settings on ``ds``, at its one scale in passes (``_CPU_SCALE``)."""
    return dict(dataset=ds, **_CPU_TRAIN) | _CPU_SCALE.get(ds, {})


def _cpu_table2(ds: str) -> list[Step]:
    t = _cpu_train(ds)

    def two_stage(seed: int) -> Step:
        return ("04_train_recommender", f"{ds}__two_stage__s{seed}", dict(t, seed=seed, method="two_stage"))

    def diger(seed: int, decay: str) -> Step:
        return ("04_train_recommender", f"{ds}__diger_{decay.replace('+', '_')}__s{seed}",
                dict(t, seed=seed, method="diger", decay=decay, **_CPU_DIGER))

    out = [("04_train_recommender", f"{ds}__{floor}__s2026", dict(dataset=ds, method=floor)) for floor in FLOOR_METHODS]
    for seed in _CPU_SEEDS[ds]:
        out += [two_stage(seed), ("04_train_recommender", f"{ds}__ste__s{seed}", dict(t, seed=seed, method="ste"))]
        out += [diger(seed, decay) for decay in ("sdud", "frqud", "sdud+frqud")]
    out.append(("04_train_recommender", f"{ds}__two_stage_letter__s2026", dict(t, method="two_stage", ids="letter")))
    if ds in _CPU_CONFIRM:
        seed, decays = _CPU_CONFIRM[ds]
        out += [two_stage(seed)] + [diger(seed, decay) for decay in decays]
    return out


def _cpu_fig5(ds: str) -> list[Step]:
    dg = dict(_cpu_train(ds), method="diger", **_CPU_DIGER)
    out = [("04_train_recommender", f"{ds}__frqud_r{r:g}__s2026", dict(dg, decay="frqud", frqud_r=r))
           for r in _CPU_FIG5["r"]]
    return out + [("04_train_recommender", f"{ds}__sdud_lambda{lam:g}__s2026", dict(dg, decay="sdud", sdud_lambda=lam))
                  for lam in _CPU_FIG5["lambda"]]


def _paper_cpu() -> list[Step]:
    steps: list[Step] = [("01_prepare_data", "", dict())]
    for ds in ("Beauty", "Instruments", "Yelp"):
        steps += [("02_encode_item_text", ds, dict(dataset=ds)), ("03_pretrain_rqvae", ds, dict(dataset=ds, **_QUICK_RQ))]
        steps += _cpu_table2(ds)
    b = dict(_cpu_train("Beauty"), method="diger", **_CPU_DIGER)
    steps += [("04_train_recommender", f"Beauty__{key}__s2026", dict(b, **extra)) for key, extra in (  # Table 4
        ("diger_none", dict(decay="none")), ("abl_no_gumbel", dict(decay="none", noise="none")),
        # the hard update (Fig. 3) needs L_gen to reach the selected code: the W_j e coupling, not the choice's
        ("abl_hard_update", dict(decay="none", update="hard", coupling="gradient")),
        ("abl_tau_anneal", dict(decay="tau_anneal")), ("abl_gaussian", dict(decay="none", noise="gaussian")))]
    for K, m in ((128, 3), (512, 3), (256, 2), (256, 4)):  # Table 5: a tokenizer per (K, m)
        steps.append(("03_pretrain_rqvae", f"Beauty_K{K}_m{m}", dict(dataset="Beauty", codebook_size=K, n_levels=m,
                                                                    **_QUICK_RQ)))
        steps.append(("04_train_recommender", f"Beauty__K{K}_m{m}__s2026",
                      dict(b, decay="frqud", codebook_size=K, n_levels=m)))
    steps += _cpu_fig5("Beauty") + _cpu_fig5("Instruments")
    main = "Beauty__diger_frqud__s2026"
    # paired bootstraps: every run against Two-Stage of its dataset and seed (the same test users)
    pairs = ",".join(f"{v}:{v.split('__')[0]}__two_stage__s{v.rsplit('__s', 1)[1]}" for s, v, _ in steps
                     if s == "04_train_recommender" and "__two_stage__" not in v and v.split("__")[1] not in FLOOR_METHODS)
    return steps + [("05_sid_dynamics_figures", "", dict(runs=f"Beauty__ste__s2026,Beauty__diger_none__s2026,"
                                                           f"Beauty__diger_sdud__s2026,{main}", main_diger=main)),
                    ("06_results_tables", "", dict(pairs=pairs, n_boot=2000))]


# UniGRec (issue 10, part 3) on Beauty at paper_cpu's budget and recipe (the diagnosis budget with 500 warm-up steps +
# cosine), on paper_cpu's Beauty tokenizer ($DIGER_ARTIFACTS/paper_cpu, which `make paper-cpu` builds first), with its
# own Two-Stage (M0 is TIGER), STE and DIGER (FrqUD) on those very IDs, so every comparison is paired over the same IDs
# and test users (tokenizers differ between CPU types, README note 14). Until session 14 it read the diagnosis
# tokenizer and compared with the diagnosis rows ts_cosine / dg_cosine; their tokenizer (Intel, 474053bd...) is paper_cpu's
# Table 2 one, and a new machine rebuilds the two alike. M4-M6 read the SASRec teacher that the `baselines` profile
# (notebook 03b) exports. UniGRec's section 4.1: tokenizer lr from its grid {2e-7, 2e-8}; recommender lr 2e-3 is in its
# grid {2e-3, 5e-3, 8e-3} and is the study's. Stage 1 starts from the notebook-03 tokenizer; M1-M2 share one stage 1
# and M3-M6 another (cached beside the tokenizer).
_UNIGREC = dict(method="unigrec", tokenizer_lr=2e-7)
# M4-M6 last: they need the teacher, which the SASRec grid gives only once it has finished
_UNIGREC_ORDER = ("M0", "M1", "M3", "M2", "M4", "M5", "M6")


def _unigrec() -> list[Step]:
    """UniGRec's Table 3 (M0-M6) and the three methods it is set beside, all at seed 2026 on one tokenizer, then M0,
    M6 and DIGER at seed 2027; notebook 06 compares every row with M0 (TIGER = Two-Stage) and the full UniGRec (M6)
    with DIGER."""
    t = dict(_cpu_train("Beauty"), seed=2026, artifacts_dir="paper_cpu")
    steps = [("04_train_recommender", f"ug_{v.lower()}", dict(t, **_UNIGREC, unigrec_variant=v)) for v in _UNIGREC_ORDER]
    steps[1:1] = [("04_train_recommender", "ste", dict(t, method="ste")),
                  ("04_train_recommender", "diger_frqud", dict(t, method="diger", decay="frqud", **_CPU_DIGER))]
    # a second seed of the rows the verdicts rest on (M6 and M5 above M0 by +0.0018 R@10 with one seed, M6 vs DIGER)
    again = {"ug_m0", "ug_m6", "diger_frqud"}
    steps += [(stem, f"{v}_s2027", dict(p, seed=2027)) for stem, v, p in list(steps) if v in again]
    return steps + [("05_sid_dynamics_figures", "", dict(runs="ste,diger_frqud,ug_m2,ug_m3,ug_m6", main_diger="ug_m6",
                                                         figures_dir="figures/unigrec")),
                    ("06_results_tables", "", dict(baseline="ug_m0", pairs="ug_m6:diger_frqud,ug_m6_s2027:ug_m0_s2027,"
                                                                           "diger_frqud_s2027:ug_m0_s2027"))]


# Issue 10, parts 1 and 4: Table 3's conventional rows that cornac has, on our split and metrics (notebook 03b). SASRec
# comes first on each dataset: it is also UniGRec's teacher ($DIGER_ARTIFACTS/<dataset>/teachers/sasrec/). Every run
# rewrites figures/table3 (paper vs ours; TIGER, LETTER, DIGER from the paper_cpu runs when they exist).
# Epoch budgets sized on this CPU (README): one SASRec epoch on Beauty is 70 s (d 64) to 142 s (d 128) of one core and
# it is near its best after a few epochs, so it is checked every 2 epochs; BERT4Rec's Cloze training (13 s per epoch at
# d 64) needs many more epochs; a BPR epoch takes 0.1 s (validation, 6 s per check, costs more).
_BASELINE_EPOCHS = {"sasrec": dict(max_epochs=50, eval_every=2, patience=3),
                    # MF at 200 epochs stopped still rising on Yelp (best epoch 200) and Instruments (180), session 9
                    "mf": dict(max_epochs=1000, eval_every=10, patience=3),
                    "bert4rec": dict(max_epochs=200, eval_every=5, patience=4),
                    # LightGCN: ~5-9 s per Beauty epoch here; at rate 5e-3 it peaks near epoch 10, at 1e-3 much later
                    "lightgcn": dict(max_epochs=1000, eval_every=5, patience=4)}


# SASRec's full grid runs on Beauty; Instruments and Yelp keep the axis Beauty left open. On Beauty, CE beat SASRec's
# own BCE by 2x in validation N@10 (d 64, dropout 0.2: 0.0480 vs 0.0224), and cornac's "bce" collapsed (0.0003-0.0004),
# as public re-evaluations of SASRec also find CE well ahead (README, "SASRec on Beauty"). Half of the SASRec cost.
# BERT4Rec on Yelp keeps dropout 0.2: it won at both sizes on Beauty and Instruments (4 of 4, by 0.002-0.014
# validation N@10) and for Yelp's SASRec; a Yelp d 128 point takes about an hour of one core here.
# LightGCN on Yelp keeps Adam rate 5e-3: on Beauty and Instruments the rate changed how many epochs a point needs
# (15-20 at 5e-3, 75-140 at 1e-3) and not where it ends (validation N@10 within 0.0006 at equal L2), and a Yelp point
# at 1e-3 was still rising at epoch 115 (19 s per epoch here).
_BASELINE_GRIDS = {("Instruments", "sasrec"): "loss:ce", ("Yelp", "sasrec"): "loss:ce",
                   ("Yelp", "bert4rec"): "dropout:0.2", ("Yelp", "lightgcn"): "learning_rate:0.005"}


def _baselines() -> list[Step]:
    def params(ds: str, m: str) -> dict[str, Any]:
        grid = {"grid": _BASELINE_GRIDS[ds, m]} if (ds, m) in _BASELINE_GRIDS else {}
        return dict(dataset=ds, model=m, **_BASELINE_EPOCHS[m], **grid)

    return [("03b_conventional_baselines", f"{ds}__{m}__s2026", params(ds, m))
            for ds in ("Beauty", "Instruments", "Yelp") for m in _BASELINE_EPOCHS]


# A probe of Yelp's IDs (issue "Every table"): Yelp's text IDs carry almost no sequential signal (`cli id-signal`,
# README), and its paper_cpu Two-Stage stays below the most-popular floor. The same Two-Stage, budget and seed on IDs
# from Yelp's 32-d collaborative (SASRec) embeddings, as Instruments' tokenizer is built, in its own artifacts folder.
def _yelp_cf() -> list[Step]:
    d = dict(dataset="Yelp")
    train = dict(_cpu_train("Yelp"), seed=2026, method="two_stage")
    return [("02_encode_item_text", "Yelp", dict(d, embedding_file="data/Yelp/Yelp.emb-sasrec32.npy")),
            ("03_pretrain_rqvae", "Yelp", dict(d, **_QUICK_RQ)),
            ("04_train_recommender", "Yelp__two_stage_cf__s2026", train),
            # does DIGER separate from Two-Stage once the IDs carry Yelp's sequential signal? (FrqUD: Table 4's DIGER)
            ("04_train_recommender", "Yelp__diger_frqud_cf__s2026", dict(train, method="diger", decay="frqud",
                                                                          **_CPU_DIGER))]


# Issue 10, part 2: a peer's TIGER (cornac, notebook 04b) beside our Two-Stage on Beauty at the diagnosis budget (4 x
# 65,536 samples, the same subsets; T5 2+2, d_model 128; beam 20), on paper_cpu's MiniLM embeddings and Beauty
# tokenizer ($DIGER_ARTIFACTS/paper_cpu), set beside the unigrec profile's M0 (TIGER = our Two-Stage on those IDs, the
# same warm-up + cosine shape). With cornac's own RQ-VAE, then with our IDs (the tokenizer out of the comparison).
# Each run ~2.5 h wall beside a 2-process batch.
def _peer_tiger() -> list[Step]:
    d = dict(dataset="Beauty", artifacts_dir="paper_cpu", compare_run="unigrec/04_train_recommender__ug_m0")
    return [("04b_peer_tiger", "Beauty__cornac_ids__s2026", dict(d, ids="cornac")),
            ("04b_peer_tiger", "Beauty__our_ids__s2026", dict(d, ids="ours"))]


def _paper_two_stage() -> list[Step]:
    """Issue "Speed", the payoff: Two-Stage on Beauty at the paper's full size (T5 6+6, every training sample per
    epoch, validation on every user, patience 10). Each call trains for at most 115 minutes and then reports its
    best checkpoint; calling it again resumes from the last epoch until early stopping ends the run."""
    d = dict(dataset="Beauty")
    return [("02_encode_item_text", "", dict(d)), ("03_pretrain_rqvae", "", dict(d)),
            ("04_train_recommender", "two_stage", dict(d, method="two_stage", time_budget_minutes=115.0)),
            ("06_results_tables", "", dict())]


# Issue "Every table and figure": the full-size Two-Stage again with the recipe the diagnosis study found best (500
# warm-up steps, then cosine decay; published TIGER reproductions report it roughly doubles R@10). The cosine needs a
# horizon: 20 epochs (~4.2 h of this CPU at 12.7 min per epoch), early stopping with patience 5 inside it. It reads and
# writes the paper_two_stage artifacts (the same full-size tokenizer); each call trains at most 115 minutes, then resumes.
PAPER_COSINE = dict(lr_schedule="warmup_cosine", warmup_steps=500, epochs=20, patience=5)


def _paper_two_stage_cosine() -> list[Step]:
    """Issue 12: the full-size Two-Stage continued with the study's recipe to early stopping, then one full-size DIGER
    (FrqUD, the study's choice) beside it on the same IDs, recipe and budget. Each call trains each run for at most
    115 minutes; calling again resumes them."""
    d = dict(dataset="Beauty", artifacts_dir="paper_two_stage")
    run = dict(d, time_budget_minutes=115.0, **PAPER_COSINE)
    return [("02_encode_item_text", "", dict(d)), ("03_pretrain_rqvae", "", dict(d)),
            ("04_train_recommender", "two_stage_cosine", dict(run, method="two_stage")),
            ("04_train_recommender", "diger_frqud_cosine", dict(run, method="diger", decay="frqud", **DIGER_CHOICE)),
            ("06_results_tables", "", dict(baseline="two_stage_cosine"))]


def _paper() -> list[Step]:
    steps: list[Step] = [("01_prepare_data", "", dict())]
    for ds in ("Beauty", "Instruments", "Yelp"):
        d = dict(dataset=ds)
        steps += [("02_encode_item_text", ds, dict(d)), ("03_pretrain_rqvae", ds, dict(d))]
        steps.append(("04_train_recommender", f"{ds}__two_stage", dict(d, method="two_stage")))
        steps.append(("04_train_recommender", f"{ds}__ste", dict(d, method="ste")))
        for decay in ("none", "sdud", "frqud", "sdud+frqud"):
            steps.append(("04_train_recommender", f"{ds}__diger_{decay.replace('+', '_')}",
                          dict(d, method="diger", decay=decay)))
    b = dict(dataset="Beauty", method="diger", decay="none")
    steps += [  # Table 4 ablations on DIGER w/o UD
        ("04_train_recommender", "Beauty__abl_no_gumbel", dict(b, noise="none")),
        ("04_train_recommender", "Beauty__abl_hard_update", dict(b, update="hard")),
        ("04_train_recommender", "Beauty__abl_tau_anneal", dict(b, decay="tau_anneal")),
        ("04_train_recommender", "Beauty__abl_gaussian", dict(b, noise="gaussian")),
    ]
    for K, m in ((128, 3), (512, 3), (256, 2), (256, 4)):  # Table 5
        steps.append(("03_pretrain_rqvae", f"Beauty_K{K}_m{m}", dict(dataset="Beauty", codebook_size=K, n_levels=m)))
        steps.append(("04_train_recommender", f"Beauty__K{K}_m{m}",
                      dict(dataset="Beauty", method="diger", decay="frqud", codebook_size=K, n_levels=m)))
    steps += [("05_sid_dynamics_figures", "", dict(runs="Beauty__ste,Beauty__diger_none,Beauty__diger_sdud,"
                                                     "Beauty__diger_frqud", main_diger="Beauty__diger_frqud")),
              ("06_results_tables", "", dict())]
    return steps


PROFILES = {"smoke": _smoke, "quick": _quick, "dynamics": _dynamics, "dynamics_literal": _dynamics_literal,
            "dynamics_gaussian": _dynamics_gaussian,
            "diagnosis": _diagnosis, "paper_cpu": _paper_cpu, "yelp_cf": _yelp_cf, "unigrec": _unigrec, "baselines": _baselines,
            "peer_tiger": _peer_tiger, "paper_two_stage": _paper_two_stage,
            "paper_two_stage_cosine": _paper_two_stage_cosine, "paper": _paper}


def steps_for(profile: str) -> list[Step]:
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[profile]()
