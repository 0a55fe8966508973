"""UniGRec as notebook 04's method="unigrec": its gradient paths, each loss on hand-made inputs, the tau schedule, the
M0-M6 switches, the teacher contract, the fingerprints and a run through notebook 04's code path."""
import json
import math
import sys
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import pytest
import torch

from diger_lib import data as D
from diger_lib import pipeline
from diger_lib import unigrec as UG
from diger_lib.config import VARIANT_PARTS, ConfigError, RQVAEConfig, UniGRecConfig
from diger_lib.paper import paper_row
from diger_lib.rqvae import RQVAE, add_conflict_codes
from diger_lib.teachers import load_teacher
from diger_lib.vocab import SIDVocab

sys.path.insert(0, str(Path(__file__).parent))
from _tiny_run import build, summary  # noqa: E402
from test_pipeline import PINNED, TINY, notebook_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(pre_epochs=2, pre_batch_size=64)  # stage 1: two short epochs on Tiny's 120 items


def _ug(tmp_path, variant="M6", epochs=1, **u):
    return build("unigrec", tmp_path, epochs=epochs, train={"tokenizer_lr": 1e-3},
                 unigrec=dict(FAST, variant=variant, **u))


def _inputs(tr, n=64):
    idx = np.arange(len(tr.split.train))[:n]
    return idx, tr._step_inputs(idx, tr.split.train)


def _lrec_grads(tr):
    """Backpropagate L_Rec ALONE (no L_Recon, no distillation) of one batch; the tokenizer's gradients."""
    _, (input_ids, mask, labels, input_extra, dec_extra, _, _) = _inputs(tr)
    assert dec_extra is None  # the decoder reads hard tokens (the authors' SoftT5)
    tr.model.zero_grad()
    tr.joint.zero_grad()
    tr.model(input_ids, mask, labels, input_extra=input_extra).loss.backward()
    rq = tr.joint.rqvae
    return [p.grad for p in rq.encoder.parameters()], rq.codebooks.grad


def _nonzero(grads) -> bool:
    return all(g is not None and g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------------------------------------------------------
# Gradient paths
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["M2", "M3", "M4", "M5", "M6"])
def test_lrec_reaches_encoder_and_codebooks_through_soft_ids(variant, tmp_path):
    enc, cb = _lrec_grads(_ug(tmp_path, variant))
    assert _nonzero(enc) and _nonzero([cb])


def test_the_same_check_fails_when_the_soft_ids_are_cut(tmp_path, monkeypatch):
    tr = _ug(tmp_path, "M2")
    soft_assign = UG.soft_assign
    monkeypatch.setattr(UG, "soft_assign", lambda *a: soft_assign(*a)._replace(probs=soft_assign(*a).probs.detach()))
    enc, cb = _lrec_grads(tr)
    assert not _nonzero(enc) and not _nonzero([cb])


def test_m1_reads_soft_ids_but_its_tokenizer_is_frozen(tmp_path):
    tr = _ug(tmp_path, "M1")
    assert tr.tok_opt is None and not tr.joint.trains_tokenizer
    _, (_, _, _, input_extra, _, _, _) = _inputs(tr)
    assert input_extra.abs().sum() > 0  # the history reads the mixture, not the hard rows (what M1 adds to M0)
    enc, cb = _lrec_grads(tr)
    assert all(g is None for g in enc) and cb is None


def test_m0_is_two_stage(tmp_path):
    """M0 (TIGER) has no tokenizer in the loop; it is our Two-Stage, bit for bit."""
    m0 = _ug(tmp_path / "m0", "M0")
    assert m0.joint is None and m0.item_ids is not None
    a = summary(m0.fit())  # built and trained before the next build: dropout reads the global generator
    assert a == summary(build("two_stage", tmp_path / "ts", epochs=1).fit())


def test_cd_tokenizer_loss_reaches_projections_tokenizer_and_encoder_states(tmp_path):
    tr = _ug(tmp_path, "M4")
    j = tr.joint
    assert j.cd_enc is not None and j.cd_tea is not None and j.cd_dec is None
    h = torch.randn(5, 16, requires_grad=True)
    j.cd_tokenizer_loss(h, torch.arange(5)).backward()
    assert _nonzero([p.grad for m in (j.cd_enc, j.cd_tea) for p in m.parameters()])
    assert _nonzero([p.grad for p in j.rqvae.encoder.parameters()]) and _nonzero([j.rqvae.codebooks.grad])
    assert _nonzero([h.grad])  # and back into the recommender's encoder


def test_cd_recommender_loss_trains_the_decoder_side(tmp_path):
    tr = _ug(tmp_path, "M5")
    j = tr.joint
    assert j.cd_dec is not None and j.cd_enc is None
    idx, inputs = _inputs(tr)
    tr.model.zero_grad()
    step = tr._batch_backward(idx, inputs)
    assert set(step.parts) == {"loss_cdr"} and step.parts["loss_cdr"] > 0
    assert _nonzero([p.grad for p in j.cd_dec.parameters()]) and _nonzero([tr.model.dec_blocks[0].wi.weight.grad])


# ---------------------------------------------------------------------------------------------------------------
# Soft identifiers and the tau schedule
# ---------------------------------------------------------------------------------------------------------------
def _hard_chain(z, codebooks):
    residual, codes = z, []
    for cb in codebooks:
        c = torch.cdist(residual, cb).argmin(-1)
        residual = residual - cb[c]
        codes.append(c)
    return torch.stack(codes, 1)


def test_soft_mixture_is_the_hard_embedding_as_tau_goes_to_zero():
    torch.manual_seed(0)
    z, codebooks = torch.randn(30, 4), torch.randn(2, 8, 4)
    vocab = SIDVocab(3, 8)
    table = torch.randn(vocab.size, 6)
    hard = _hard_chain(z, codebooks)
    hard_rows = table[vocab.codes_to_tokens(torch.cat([hard, torch.zeros(30, 1, dtype=torch.long)], 1))[:, :2]]
    cold = UG.soft_assign(z, codebooks, 1e-6)
    assert torch.equal(cold.codes, hard)
    torch.testing.assert_close(UG.soft_token_embeddings(cold.probs, table, vocab), hard_rows)
    torch.testing.assert_close(cold.quantized, sum(codebooks[j][hard[:, j]] for j in range(2)))
    warm = UG.soft_assign(z, codebooks, 10.0)
    assert not torch.allclose(UG.soft_token_embeddings(warm.probs, table, vocab), hard_rows, atol=1e-3)


def test_trainer_inputs_equal_hard_tokens_as_tau_goes_to_zero(tmp_path):
    tr = _ug(tmp_path, "M2")
    tr.model.eval()
    for tau, equal in ((1e-7, True), (1.0, False)):
        tr.joint.tau = tau
        _, (input_ids, mask, labels, input_extra, _, _, _) = _inputs(tr, 8)
        soft = tr.model(input_ids, mask, labels, input_extra=input_extra).logits
        hard = tr.model(input_ids, mask, labels).logits  # the inference path: plain tokens of the hard IDs
        assert torch.allclose(soft, hard, atol=1e-5) == equal


def test_tau_schedule_eq16():
    cfg = UniGRecConfig(tau_max=0.05, tau_min=0.001)
    taus = [UG.anneal_tau(cfg, s, 100) for s in (0, 25, 50, 99, 100, 130)]
    assert taus == pytest.approx([0.05, 0.03775, 0.0255, 0.00149, 0.001, 0.001])
    assert UG.anneal_tau(cfg, 0, 0) == 0.001  # no stage 1: tau_min from the start


def test_stage1_anneals_every_step_and_stage2_keeps_tau_min(tmp_path, monkeypatch):
    seen = []
    recon = UG._soft_recon
    monkeypatch.setattr(UG, "_soft_recon", lambda rq, x, tau: (seen.append(tau), recon(rq, x, tau))[1])
    tr = _ug(tmp_path, "M3", epochs=1, pre_epochs=3, tau_max=0.05)
    per_epoch = math.ceil(tr.split.n_items / 64)
    cfg = tr.joint.cfg
    assert seen == pytest.approx([UG.anneal_tau(cfg, s, 3 * per_epoch) for s in range(3 * per_epoch)])
    assert seen[0] == 0.05 and seen[-1] > 0.001 and len(set(seen)) == len(seen)  # a new tau at every step
    assert [r["tau"] for r in tr.stage1_history] == pytest.approx(
        [UG.anneal_tau(cfg, e * per_epoch, 3 * per_epoch) for e in (1, 2, 3)])
    assert tr.stage1_history[-1]["tau"] == 0.001 and tr.joint.tau == 0.001
    assert all(r["tau"] == 0.001 for r in tr.fit().history)  # stage 2: fixed at tau_min (Algorithm 1, line 12)


# ---------------------------------------------------------------------------------------------------------------
# The losses on hand-made inputs
# ---------------------------------------------------------------------------------------------------------------
def test_codeword_uniformity_exact_values():
    K, m = 4, 2
    eye = torch.eye(K)
    uniform = torch.full((5, m, K), 1 / K)
    spread = eye[:, None, :].expand(K, m, K)  # one-hot rows, each code once: the batch average is uniform
    half = eye[[0, 1]][:, None, :].expand(2, m, K)  # two codes share the mass
    collapsed = eye[[0, 0, 0]][:, None, :].expand(3, m, K)  # every item on code 0
    assert UG.codeword_uniformity(uniform).item() == pytest.approx(-m * math.log(K))
    assert UG.codeword_uniformity(spread).item() == pytest.approx(-m * math.log(K))
    assert UG.codeword_uniformity(half).item() == pytest.approx(-m * math.log(2))
    assert UG.codeword_uniformity(collapsed).item() == pytest.approx(0.0, abs=1e-9)
    assert UG.codeword_uniformity(uniform) < UG.codeword_uniformity(half) < UG.codeword_uniformity(collapsed)


def test_codeword_uniformity_gradient_stays_finite_when_a_code_is_unused():
    """At tau = 0.004 on Beauty, softmax gives exactly 0 to codes far from every item of a batch; x log x then has an
    infinite slope and stage 1 turned NaN (seen at its epoch 4). The gradient must stay finite."""
    logits = torch.tensor([[[0.0, 0.0, -1e5]], [[0.0, 1.0, -1e5]]], requires_grad=True)  # code 2: p exactly 0
    probs = torch.softmax(logits, -1)
    assert (probs[..., 2] == 0).all()
    UG.codeword_uniformity(probs).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_infonce_matches_a_hand_computed_3x3_example():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 3.0], [-2.0, 0.0]])
    r = 1 / math.sqrt(2)
    S = [[r, 0.0, -1.0], [r, 1.0, 0.0], [1.0, r, -r]]  # cos(a_i, b_j), worked out by hand
    tau = 0.07

    def nce(M):  # Eq. 19 averaged over the rows
        return sum(-M[i][i] / tau + math.log(sum(math.exp(M[i][j] / tau) for j in range(3))) for i in range(3)) / 3

    St = [[S[j][i] for j in range(3)] for i in range(3)]
    assert UG.info_nce(a, b, tau).item() == pytest.approx(nce(S), rel=1e-5)
    assert UG.symmetric_info_nce(a, b, tau).item() == pytest.approx(nce(S) + nce(St), rel=1e-5)  # Eq. 20


def test_symmetric_kl_exact_values():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    log_p, log_q = p.log()[None, None], q.log()[None, None]  # one row, one level
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1) + 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert UG.symmetric_kl(log_p, log_q).item() == pytest.approx(expected)
    assert UG.symmetric_kl(log_q, log_p).item() == pytest.approx(expected)
    assert UG.symmetric_kl(log_p, log_p).item() == 0.0
    two_levels = torch.stack([log_p[0, 0], log_q[0, 0]])[None], torch.stack([log_q[0, 0], log_q[0, 0]])[None]
    assert UG.symmetric_kl(*two_levels).item() == pytest.approx(expected)  # summed over levels


# ---------------------------------------------------------------------------------------------------------------
# The M0-M6 switches
# ---------------------------------------------------------------------------------------------------------------
TABLE3 = {"M0": set(), "M1": {"soft"}, "M2": {"soft", "joint"}, "M3": {"soft", "joint", "cu"},
          "M4": {"soft", "joint", "cu", "cdt"}, "M5": {"soft", "joint", "cu", "cdr"},
          "M6": {"soft", "joint", "cu", "cdt", "cdr"}}


def test_variants_are_table3():
    assert {v.value: {p.value for p in parts} for v, parts in VARIANT_PARTS.items()} == TABLE3
    for v in TABLE3:
        assert paper_row(pipeline.run_label("unigrec", unigrec=UniGRecConfig(variant=v)), "Beauty") is not None
    assert paper_row(pipeline.run_label("unigrec"), "Beauty")["R@10"] == 0.0825  # M6, Table 3
    custom = UniGRecConfig(variant="custom", components="soft, cdr")
    assert {p.value for p in custom.parts} == {"soft", "cdr"}
    assert pipeline.run_label("unigrec", unigrec=custom) == "UniGRec (cdr,soft)"


@pytest.mark.parametrize("variant", ["M1", "M2", "M3", "M4", "M5", "M6"])
def test_each_variant_runs_exactly_its_components(variant, tmp_path):
    parts = TABLE3[variant]
    tr = _ug(tmp_path, variant)
    j = tr.joint
    assert (tr.tok_opt is not None) == ("joint" in parts)
    assert (j.cd_enc is not None, j.cd_dec is not None) == ("cdt" in parts, "cdr" in parts)
    s1 = tr.stage1_history[-1]  # L_CU (~ -4e-4 here) enters stage 1's loss only with cu (Eq. 21); float32 sums
    assert s1["loss"] - s1["loss_recon"] == pytest.approx(1e-4 * s1["loss_cu"] if "cu" in parts else 0.0, abs=1e-6)
    idx, inputs = _inputs(tr)
    step = tr._batch_backward(idx, inputs)
    assert set(step.parts) == {f"loss_{p}" for p in parts & {"cdt", "cdr"}}
    expected = step.gen + (0.5 * inputs[5].out.loss_recon.detach() if "joint" in parts else 0)  # Eq. 22
    expected = expected + 0.01 * step.parts.get("loss_cdt", 0) + 0.1 * step.parts.get("loss_cdr", 0)
    assert step.loss.item() == pytest.approx(float(expected), rel=1e-6)


def test_variant_validation_names_the_problem():
    with pytest.raises(ConfigError, match="unigrec_variant='M7' is not one of"):
        UniGRecConfig(variant="M7")
    with pytest.raises(ConfigError, match="only applies to unigrec_variant='custom'"):
        UniGRecConfig(variant="M3", components="soft")
    with pytest.raises(ConfigError, match="needs unigrec_components"):
        UniGRecConfig(variant="custom")
    with pytest.raises(ConfigError, match="builds on 'soft'"):
        UniGRecConfig(variant="custom", components="joint,cu")
    with pytest.raises(ConfigError, match="unigrec_components entry='cdx'"):
        UniGRecConfig(variant="custom", components="soft,cdx")
    with pytest.raises(ConfigError, match="unigrec_lambda_cdr=0 switches 'cdr' off"):
        UniGRecConfig(variant="M6", lambda_cdr=0.0)
    UniGRecConfig(variant="M3", lambda_cdr=0.0)  # not used by M3: fine
    with pytest.raises(ConfigError, match="unigrec_tau_max"):
        UniGRecConfig(tau_max=1e-4, tau_min=1e-3)
    with pytest.raises(ConfigError, match="unigrec_tau_min"):
        pipeline.RunSpec.from_params(notebook_params(**TINY, method="unigrec", unigrec_tau_min=0.0))


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints, teacher, a run through notebook 04's code path
# ---------------------------------------------------------------------------------------------------------------
def test_unigrec_parameters_enter_only_unigrec_fingerprints():
    given, pinned = PINNED[0]
    other = dict(given, unigrec_variant="M3", unigrec_lambda_cdr=0.5, unigrec_pre_epochs=3, teacher="other")
    assert pipeline.RunSpec.from_params(notebook_params(**other)).fingerprint() == pinned  # method two_stage
    u = notebook_params(**TINY, method="unigrec")
    fps = {v: pipeline.RunSpec.from_params(dict(u, unigrec_variant=v)).fingerprint() for v in TABLE3}
    assert len(set(fps.values())) == 7
    spec = pipeline.RunSpec.from_params(dict(u, unigrec_variant="M6", unigrec_lambda_cdr=0.5))
    assert spec.fingerprint() != fps["M6"] and spec.run_config()["unigrec"]["parts"] == sorted(TABLE3["M6"])
    assert spec.run_config()["joint"]["labels"] == "deterministic" and spec.run_config()["assign"]["noise"] == "none"
    m3 = pipeline.RunSpec.from_params(dict(u, unigrec_variant="M3", teacher="other"))
    assert m3.fingerprint() == fps["M3"]  # M3 reads no teacher


def _write_teacher(root: Path, n_items: int, dim: int = 6, meta: dict | None = None, rows: int | None = None):
    d = root / "Tiny" / "teachers" / "sasrec"
    d.mkdir(parents=True, exist_ok=True)
    emb = np.random.default_rng(0).normal(size=(rows or n_items, dim)).astype("float32")
    np.save(d / "item_emb.npy", emb)
    (d / "meta.json").write_text(json.dumps(meta or {"model": "SASRec", "n_items": n_items, "dim": dim}))
    return emb


def test_teacher_missing_or_mismatched_gives_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="Tiny/teachers/sasrec/item_emb.npy not found"):
        load_teacher("Tiny", "sasrec", 10, root=tmp_path)
    emb = _write_teacher(tmp_path, 10)
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path))  # the artifacts root
    t = load_teacher("Tiny", "sasrec", 10)
    assert t.emb.dtype == torch.float32 and torch.equal(t.emb, torch.from_numpy(emb)) and t.meta["model"] == "SASRec"
    with pytest.raises(ValueError, match="n_items=10, but Tiny has 12 items"):
        load_teacher("Tiny", "sasrec", 12)
    _write_teacher(tmp_path, 10, rows=9)
    with pytest.raises(ValueError, match=r"expected float \[10, 6\]"):
        load_teacher("Tiny", "sasrec", 10)
    _write_teacher(tmp_path, 10, meta={"model": "SASRec", "n_items": 10})
    with pytest.raises(ValueError, match="lacks dim"):
        load_teacher("Tiny", "sasrec", 10)
    with pytest.raises(ValueError, match="needs the teacher"):
        UG.UniGRecTokenizer(RQVAE(12, _rq_cfg()), torch.randn(10, 12), UniGRecConfig(variant="M5"), 16, 0)


def _rq_cfg() -> RQVAEConfig:
    return RQVAEConfig(codebook_size=8, n_levels=2, code_dim=4, hidden_dims=(16,))


def _tiny_artifacts(root: Path) -> tuple[Path, D.Split]:
    """What notebooks 02 and 03 leave for Tiny: item_emb.npy, rqvae_K8_m2/{rqvae.pt, codes.npy}."""
    split = D.split_leave_one_out(D.load_interactions(ROOT / "tests" / "fixtures", "Tiny"), 20)
    art = root / "prof"
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(split.n_items, 12)).astype("float32"))
    rq = RQVAE(12, _rq_cfg())
    rq.fit_input_norm_(x)
    rq.kmeans_init_(x, iters=5, seed=0)
    (art / "Tiny" / "rqvae_K8_m2").mkdir(parents=True)
    np.save(art / "Tiny" / "item_emb.npy", x.numpy())
    pipeline.save_tokenizer(rq, _rq_cfg(), art / "Tiny" / "rqvae_K8_m2" / "rqvae.pt")
    np.save(art / "Tiny" / "rqvae_K8_m2" / "codes.npy", add_conflict_codes(rq.deterministic_codes(x), 8).numpy())
    return art, split


RUN = dict(TINY, method="unigrec", codebook_size=8, n_levels=2, d_model=16, n_heads=2, d_kv=8, d_ff=32,
           n_encoder_layers=1, n_decoder_layers=1, epochs=1, batch_size=64, beam_size=10, tokenizer_lr=1e-3,
           unigrec_pre_epochs=2, unigrec_pre_batch_size=64, device="cpu")


def test_run_through_notebook04_code_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path))
    art, split = _tiny_artifacts(tmp_path)
    said = []
    spec = pipeline.RunSpec.from_params(notebook_params(**RUN))  # M6, as notebook 04 builds it
    with pytest.raises(FileNotFoundError, match="teachers/sasrec/item_emb.npy not found"):
        pipeline.build_trainer(spec, split, art, "u6", log=said.append, progress=False)
    _write_teacher(tmp_path, split.n_items)
    tr = pipeline.build_trainer(spec, split, art, "u6", log=said.append, progress=False)
    res = tr.fit()
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in res.test.values()) and res.test["R@10"] >= res.test["R@5"]
    last = res.history[-1]
    assert all(math.isfinite(last[k]) for k in ("loss", "loss_gen", "loss_recon", "loss_cdt", "loss_cdr",
                                                  "drift_cum", "agreement_label", "collision_rate", "max_prob_l0"))
    assert (art / "Tiny" / "rqvae_K8_m2" / "unigrec_stage1").is_dir() and not any("reusing" in s for s in said)
    m5 = pipeline.RunSpec.from_params(notebook_params(**RUN, unigrec_variant="M5"))
    pipeline.build_trainer(m5, split, art, "u5", log=said.append, progress=False)
    assert any("reusing the pretrained tokenizer" in s for s in said)  # M3-M6 share one stage 1


def test_resume_continues_exactly(tmp_path):
    full = summary(_ug(tmp_path / "a", "M6", epochs=2).fit())
    _ug(tmp_path / "b", "M6", epochs=1).fit()
    resumed = _ug(tmp_path / "b", "M6", epochs=2).fit()
    assert resumed.resumed_from == 1 and summary(resumed) == full


@pytest.mark.notebooks
def test_notebook04_runs_unigrec_under_papermill(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path))
    art, split = _tiny_artifacts(tmp_path)
    _write_teacher(tmp_path, split.n_items)
    out = tmp_path / "out"
    params = dict(RUN, artifacts_dir=str(art), out_dir=str(out), runs_dir=str(tmp_path), figures_dir=str(tmp_path / "f"))
    pm.execute_notebook(str(ROOT / "notebooks" / "04_train_recommender.ipynb"), str(tmp_path / "04.ipynb"),
                        parameters=params, cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    m = json.loads((out / "metrics.json").read_text())
    assert m["label"] == "M6: UniGRec (Full)" and m["unigrec_parts"] == "cdr,cdt,cu,joint,soft"
    assert all(0 <= m[k] <= 1 for k in ("R@5", "R@10", "N@5", "N@10"))
    assert (out / "stage1_history.csv").is_file() and (out / "history.csv").is_file()
    assert nbformat.read(tmp_path / "04.ipynb", as_version=4).cells  # executed without error


def test_unigrec_profile_and_cross_profile_baseline():
    """The lead's batch: M0-M6 with STE and DIGER at paper_cpu's budget on paper_cpu's Beauty tokenizer, every row
    compared (notebook 06) with M0 = Two-Stage on the same IDs; a `profile/run` reference must find another
    profile's committed run."""
    from diger_lib import runs as R
    from diger_lib.profiles import steps_for
    steps = steps_for("unigrec")  # its parameters are checked with every profile's (test_notebooks.py)
    rows = {v: p for s, v, p in steps if s == "04_train_recommender"}
    ug = {v: p for v, p in rows.items() if p["method"] == "unigrec"}
    assert {p["unigrec_variant"] for p in ug.values()} == set(TABLE3)
    assert {rows["ste"]["method"], rows["diger_frqud"]["method"]} == {"ste", "diger"}
    cpu = {v: p for s, v, p in steps_for("paper_cpu") if s == "04_train_recommender"}
    for name, ref in (("ug_m0", "Beauty__two_stage__s2026"), ("ste", "Beauty__ste__s2026"),
                      ("diger_frqud", "Beauty__diger_frqud__s2026")):  # paper_cpu's Table 2 rows, on this tokenizer
        own = {k: v for k, v in rows[name].items() if k not in ("artifacts_dir", "method", "tokenizer_lr")}
        assert own == {k: v for k, v in cpu[ref].items() if k not in ("method", "tokenizer_lr")} | (
            {"unigrec_variant": "M0"} if name == "ug_m0" else {}), name
    for v, p in rows.items():
        assert p["artifacts_dir"] == "paper_cpu" and p["seed"] == (2027 if v.endswith("_s2027") else 2026)
    for v in ("ug_m0", "ug_m6", "diger_frqud"):  # the second seed of the rows the verdicts rest on: only the seed differs
        assert rows[f"{v}_s2027"] == dict(rows[v], seed=2027)
    assert all(p["tokenizer_lr"] in (2e-7, 2e-8) for p in ug.values())
    # the teacher's variants come last: the SASRec grid gives the teacher only when it has finished
    order = [v for v in rows]
    assert max(order.index(v) for v in ("ste", "diger_frqud", "ug_m0", "ug_m1", "ug_m2", "ug_m3")) < min(
        order.index(v) for v in ("ug_m4", "ug_m5", "ug_m6"))
    baseline, pairs = dict(steps[-1][2])["baseline"], dict(steps[-1][2])["pairs"]
    assert baseline == "ug_m0" and R.other_profile_refs(baseline, pairs) == []
    assert pairs.split(",") == ["ug_m6:diger_frqud", "ug_m6_s2027:ug_m0_s2027", "diger_frqud_s2027:ug_m0_s2027"]
    assert {v for pair in pairs.split(",") for v in pair.split(":")} <= set(rows)
    other = "diagnosis/ts_cosine"  # a committed run of another profile, as notebook 06 may name one
    assert R.other_profile_refs(other, "a:b,c:quick/x") == [other, "quick/x"]
    runs_dir = ROOT / "papermill_runs" / "unigrec"
    assert R.resolve_run(runs_dir, "ts") == runs_dir / "04_train_recommender__ts"
    ref, = R.read_refs(runs_dir, [other])
    assert ref.name == other and ref.metrics["method"] == "two_stage" and len(ref.ranks()) == ref.metrics["n_test_users"]
    with pytest.raises(FileNotFoundError, match="names no finished run"):
        R.read_refs(runs_dir, ["diagnosis/nope"])
