"""Notebooks: the source, stored stripped, with a tagged and typed parameters cell; the runner validates parameters before
running; the smoke profile runs every notebook end to end on the tiny fixture and writes real metrics."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import pytest

from diger_lib import records, runner
from diger_lib.profile_files import load_profile_file
from diger_lib.profiles import PROFILES, steps_for

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _stored(path: Path) -> str:
    """The notebook as git stores it (the index, i.e. after the nbstripout clean filter), else the file itself."""
    rel = path.relative_to(ROOT).as_posix()
    out = subprocess.run(["git", "show", f":{rel}"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else path.read_text()


def test_notebooks_are_the_source_and_stored_stripped():
    """The .ipynb files are the source (no builder regenerates them). What git stores has no outputs; a notebook
    run in JupyterLab may have outputs in the working tree, which the nbstripout filter removes on `git add`."""
    assert len(NOTEBOOKS) == 8
    assert not (ROOT / "scripts" / "build_notebooks.py").exists()
    attrs = (ROOT / ".gitattributes").read_text()
    assert "notebooks/*.ipynb filter=nbstripout" in attrs
    for path in NOTEBOOKS:
        book = nbformat.reads(_stored(path), as_version=4)
        nbformat.validate(book)
        assert book.metadata.get("kernelspec", {}).get("name") == "python3", path.name
        for cell in book.cells:
            assert "execution" not in cell.metadata, f"{path.name} keeps execution metadata"
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} is stored with outputs"


def test_working_tree_notebooks_with_outputs_are_cleaned_by_the_filter():
    """A notebook saved from JupyterLab with outputs is fine as long as git's nbstripout filter is configured."""
    dirty = [p.name for p in NOTEBOOKS if any(c.cell_type == "code" and (c.outputs or c.execution_count)
                                              for c in nbformat.read(p, as_version=4).cells)]
    if not dirty:
        return
    out = subprocess.run(["git", "config", "--get", "filter.nbstripout.clean"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "nbstripout" in out.stdout, \
        f"{dirty} have outputs and the nbstripout filter is not configured: run `make setup`"


def test_parameters_cell_is_tagged_and_first():
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and code[0] is tagged[0], f"{path.name}: the first code cell must be the only one tagged parameters"
        assert "nbparams.check_injected()" in code[1].source, f"{path.name}: the cell after the parameters must check them"


def test_papermill_cannot_parse_a_comment_with_equals():
    """Why parameter comments avoid '=': papermill drops such a line from --help-notebook and the runner's check."""
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell('a: int = 1  # fine\nb: int = 2  # a = b breaks it')
    cell.metadata["tags"] = ["parameters"]
    book.cells = [cell]
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.ipynb"
        nbformat.write(book, p)
        assert list(pm.inspect_notebook(str(p))) != ["a", "b"]


def test_every_parameter_line_is_typed_and_parsed():
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
        names = [l.split(":")[0] for l in cell.source.splitlines() if l.strip() and not l.startswith("#")]
        inspected = pm.inspect_notebook(str(path))
        assert list(inspected) == names, f"{path.name}: papermill could not parse some parameter lines"
        for p in inspected.values():
            assert p["inferred_type_name"] in {"str", "int", "float", "bool"} and p["help"], p


def test_every_profile_passes_parameter_validation():
    for profile in PROFILES:
        for stem, _, params in steps_for(profile):
            runner.check_parameters(stem, params)


def test_misspelt_parameter_fails_before_anything_runs(tmp_path, monkeypatch, capsys):
    bad = [("01_prepare_data", "", {"datasets": "Tiny"}), ("04_train_recommender", "x", {"learning_rate": 0.1})]
    monkeypatch.setitem(PROFILES, "bad", lambda: bad)
    monkeypatch.setattr(runner, "RUNS", tmp_path)
    assert runner.main(["--profile", "bad"]) == 2
    assert "unknown parameter 'learning_rate'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # step 1 was valid but did not run


def test_unknown_profile():
    assert runner.main(["--profile", "quik"]) == 2


def _byo_copy_of_tiny(root: Path, name: str = "MyTiny") -> Path:
    """The Tiny fixture under another name in another folder: a dataset of one's own."""
    (root / name).mkdir(parents=True)
    for kind in ("inter", "item"):
        shutil.copy(ROOT / "tests" / "fixtures" / "Tiny" / f"Tiny.{kind}.json", root / name / f"{name}.{kind}.json")
    return root


@pytest.mark.notebooks
def test_smoke_profile_runs_every_notebook(tmp_path, monkeypatch):
    """The real entry point on the tiny fixture: every notebook, every method kind, figures and tables. It runs the
    smoke profile as the example profile file (a test below checks the two are the same) with --set overrides that
    point it at a dataset of one's own (the fixture renamed), as the README's worked example does."""
    env_runs = tmp_path / "runs"
    data = _byo_copy_of_tiny(tmp_path / "mydata")
    args = ["--profile-file", "profiles/byo_example.toml", "--set", "dataset=MyTiny", "--set", "datasets=MyTiny",
            "--set", f"data_root={data}", "--workers", "2"]  # the four trainings run two at a time
    code = ("import sys; from diger_lib import runner; from pathlib import Path; "
            f"runner.RUNS = Path({str(env_runs)!r}); sys.exit(runner.main(sys.argv[1:]))")
    env = dict(os.environ, DIGER_ARTIFACTS=str(tmp_path / "artifacts"), OMP_NUM_THREADS="1")  # kept by --workers
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "without encryption" not in out.stderr
    runs = env_runs / "byo_example"
    steps = runner.apply_overrides(_example_steps(), args[3:8:2])
    assert "OMP_NUM_THREADS=" in out.stdout and (runs / ".logs" / "04_train_recommender__ste.log").is_file()
    manifest = json.loads((runs / "04_train_recommender__ste" / "manifest.json").read_text())
    assert "--workers 2" in manifest["command"] and "--no-lock" not in manifest["command"]  # the parent's command
    for stem, variant, params in steps:
        d = runs / (f"{stem}__{variant}" if variant else stem)
        assert (d / f"{stem}.ipynb").is_file() and (d / "manifest.json").is_file() and (d / "config.json").is_file()
        json.loads((d / "metrics.json").read_text())
        config = json.loads((d / "config.json").read_text())
        assert config.get("dataset", "MyTiny") == "MyTiny" and config["artifacts_dir"] == ""
    assert json.loads((runs / "01_prepare_data" / "metrics.json").read_text())["all_match_paper"] is None
    emb = tmp_path / "artifacts" / "byo_example" / "MyTiny" / "item_emb.npy"
    from diger_lib.outputs import sha256_file  # recorded so that another machine's embeddings can be told apart
    assert json.loads((runs / "02_encode_item_text" / "metrics.json").read_text())["item_emb_sha256"] == sha256_file(emb)
    for v in ("two_stage", "most_popular", "markov1", "ste", "diger_sdud_frqud"):
        m = json.loads((runs / f"04_train_recommender__{v}" / "metrics.json").read_text())
        assert all(0.0 <= m[k] <= 1.0 for k in ("R@5", "R@10", "N@5", "N@10")) and m["R@10"] >= m["R@5"]
        ranks = records.read_ranks(runs / f"04_train_recommender__{v}" / "test_ranks.txt.gz")  # floors' too
        assert len(ranks) == m["n_test_users"] and ((ranks >= 0) & (ranks < 5)).mean() == pytest.approx(m["R@5"])
    assert json.loads((runs / "04_train_recommender__markov1" / "metrics.json").read_text())["label"] == "Markov-1"
    m = json.loads((runs / "04_train_recommender__two_stage" / "metrics.json").read_text())
    pop = json.loads((runs / "04_train_recommender__most_popular" / "metrics.json").read_text())
    assert m["R@10"] > pop["R@10"]  # Tiny users follow a theme: a trained model beats popularity
    for name in ("fig2_ndcg_coverage", "fig6_sid_dynamics", "fig7_code_usage"):
        assert (runs / "figures" / f"{name}.png").is_file()
    assert (runs / "figures" / "results_byo_example.csv").is_file()
    d = runs / "04_train_recommender__diger_sdud_frqud"
    hist = (d / "history.csv").read_text().splitlines()
    epochs_run = json.loads((d / "metrics.json").read_text())["epochs_run"]
    assert hist[0].split(",").count("sigma") == 1 and len(hist) == 1 + 1 + epochs_run  # header, epoch 0, epochs 1..n
    # Same seed, same config: an independent rerun (fresh checkpoints) writes an identical metrics.json.
    stem, variant, params = next(s for s in steps if s[1] == "two_stage")
    first = (runs / f"{stem}__{variant}" / "metrics.json").read_text()
    shutil.copytree(tmp_path / "artifacts", tmp_path / "artifacts2", ignore=shutil.ignore_patterns("runs"))
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path / "artifacts2"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the first run's thread count: bit-equality holds per thread count
    again = runner.run_step("byo_example", stem, variant, params, runs_root=tmp_path / "again")
    assert (again / "metrics.json").read_text() == first
    # A finished run with another configuration is replaced, saying which keys changed.
    said = []
    stem, variant, params = steps[0]
    runner.run_step("byo_example", stem, variant, dict(params, max_history=10), runs_root=env_runs, log=said.append)
    assert len(said) == 1 and "replacing the finished run" in said[0] and "max_history: 20 -> 10" in said[0]
    assert json.loads((runs / "01_prepare_data" / "config.json").read_text())["max_history"] == 10


def _example_steps():
    name, steps, defaults = load_profile_file(ROOT / "profiles" / "byo_example.toml")
    assert name == "byo_example"
    return runner.apply_defaults(steps, defaults)


def test_example_profile_file_is_the_smoke_profile():
    """So the smoke run above through the file also covers `make smoke`: the same steps, the same resolved values."""
    example, smoke = _example_steps(), steps_for("smoke")
    assert [s[:2] for s in example] == [s[:2] for s in smoke]
    for (stem, _, mine), (_, _, theirs) in zip(example, smoke):
        assert runner.resolved_parameters(stem, mine) == runner.resolved_parameters(stem, theirs), stem


@pytest.mark.notebooks
def test_conventional_baselines_notebook_on_the_fixture(tmp_path):
    """Notebook 03b through papermill on the fixture (SASRec, its first grid point, 2 epochs): notebook 04's metrics
    keys, per-user test ranks, the teacher UniGRec reads, and Table 3 with our row beside the paper's."""
    run = tmp_path / "runs" / "t" / "03b_conventional_baselines__Tiny__sasrec__s2026"
    env = dict(os.environ, DIGER_ARTIFACTS=str(tmp_path / "art"), OMP_NUM_THREADS="1")
    params = dict(dataset="Tiny", data_root="tests/fixtures", model="sasrec", grid="first", max_epochs=2, eval_every=1,
                  out_dir=str(run), figures_dir=str(tmp_path / "fig"), runs_dir=str(tmp_path / "runs" / "t"),
                  generative_runs="", profile="t")
    args = [a for k, v in params.items() for a in ("-p", k, str(v))]
    out = subprocess.run([sys.executable, "-m", "papermill", "notebooks/03b_conventional_baselines.ipynb",
                          str(tmp_path / "out.ipynb"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert {"R@5", "R@10", "N@5", "N@10", "valid_R@10", "valid_N@10", "label", "dataset"} <= set(m)
    assert m["label"] == "SASRec" and (run / "test_ranks.txt.gz").is_file()
    assert (tmp_path / "art" / "Tiny" / "teachers" / "sasrec" / "item_emb.npy").is_file()
    assert "| Tiny | SASRec |" in (tmp_path / "fig" / "table3.md").read_text()
    # LightGCN (its DGL calls from dgl_lite) through the same notebook: its row beside SASRec's
    run = tmp_path / "runs" / "t" / "03b_conventional_baselines__Tiny__lightgcn__s2026"
    args = [a for k, v in dict(params, model="lightgcn", out_dir=str(run)).items() for a in ("-p", k, str(v))]
    out = subprocess.run([sys.executable, "-m", "papermill", "notebooks/03b_conventional_baselines.ipynb",
                          str(tmp_path / "out2.ipynb"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["label"] == "LightGCN" and m["param_learning_rate"] == 1e-3 and (run / "test_ranks.txt.gz").is_file()
    table = (tmp_path / "fig" / "table3.md").read_text()
    assert "| Tiny | SASRec |" in table and "| Tiny | LightGCN |" in table


@pytest.mark.notebooks
def test_peer_tiger_notebook_on_the_fixture(tmp_path):
    """Notebook 04b through papermill on the fixture (cornac's TIGER, tiny model, 2 x 64 samples): notebook 04's
    metrics keys, the budget it recorded, per-user test ranks over all test users, and the table beside a Two-Stage."""
    art, runs = tmp_path / "art", tmp_path / "runs"
    (art / "t" / "Tiny").mkdir(parents=True)
    n_items = len(json.loads((ROOT / "tests" / "fixtures" / "Tiny" / "Tiny.item.json").read_text()))
    np.save(art / "t" / "Tiny" / "item_emb.npy", np.random.default_rng(0).normal(size=(n_items, 12)).astype("float32"))
    ts = runs / "other" / "04_train_recommender__ts"
    ts.mkdir(parents=True)
    (ts / "metrics.json").write_text(json.dumps({"label": "Two-Stage", "R@5": 0.1, "R@10": 0.2, "N@5": 0.05, "N@10": 0.08}))
    run = runs / "t" / "04b_peer_tiger__Tiny"
    peer = runs / "t" / "04b_peer_tiger__other"  # another finished peer run of the profile: a row of the table too
    peer.mkdir(parents=True)
    (peer / "metrics.json").write_text(json.dumps({"peer_ids": "ours", "R@5": 0.3, "R@10": 0.4, "N@5": 0.2, "N@10": 0.25,
                                                   "samples_seen": 128, "train_seconds": 1.0, "valid_seconds": 2.0,
                                                   "test_decode_seconds": 3.0}))
    env = dict(os.environ, DIGER_ARTIFACTS=str(art), OMP_NUM_THREADS="1")
    params = dict(dataset="Tiny", data_root="tests/fixtures", epochs=2, samples_per_epoch=64, batch_size=16,
                  warmup_steps=2, n_encoder_layers=1, n_decoder_layers=1, d_model=16, d_ff=32, n_heads=2, d_kv=8,
                  codebook_size=8, rqvae_epochs=2, max_eval_users=20, compare_run="other/04_train_recommender__ts",
                  out_dir=str(run), figures_dir=str(tmp_path / "fig"), runs_dir=str(runs / "t"), profile="t")
    args = [a for k, v in params.items() for a in ("-p", k, str(v))]
    out = subprocess.run([sys.executable, "-m", "papermill", "notebooks/04b_peer_tiger.ipynb",
                          str(tmp_path / "out.ipynb"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert {"R@5", "R@10", "N@5", "N@10", "valid_R@10", "valid_N@10", "label", "dataset"} <= set(m)
    assert m["samples_seen"] == 128 and m["all_test_users"] is True and m["peer_ids"] == "cornac"
    assert m["resumes"] == 0 and not list((art / "t" / "Tiny" / "peer_tiger").iterdir())  # checkpoint cleared
    assert len(records.read_ranks(run / "test_ranks.txt.gz")) == m["n_test_users"]
    import pandas as pd

    table = pd.read_csv(tmp_path / "fig" / "peer_tiger.csv")
    assert table["run"].tolist() == ["other/04_train_recommender__ts", "t/04b_peer_tiger__Tiny", "t/04b_peer_tiger__other"]
    assert table["method"].tolist() == ["Two-Stage", "TIGER (cornac, cornac IDs)", "TIGER (cornac, our IDs)"]
    assert table["fit_s"].iloc[2] == 3.0 and table["R@10"].iloc[1] == pytest.approx(m["R@10"])
    from diger_lib import cli  # the same table rebuilt from the finished runs

    assert cli.main(["peer-table", "--runs", str(runs / "t"), "--compare", "other/04_train_recommender__ts",
                     "--figures", str(tmp_path / "fig2")]) == 0
    assert (tmp_path / "fig2" / "peer_tiger.md").read_text() == (tmp_path / "fig" / "peer_tiger.md").read_text()
    assert cli.main(["peer-table", "--runs", str(tmp_path / "none")]) == 1
    # with our IDs (notebook 03's codes.npy) the run records which ones, so cli compare pairs it with their runs
    from diger_lib import outputs

    codes = outputs.ids_file(art / "t", "", "Tiny", K=8, m=3)
    codes.parent.mkdir(parents=True)
    np.save(codes, np.random.default_rng(1).integers(0, 8, size=(n_items, 4)))
    ours = runs / "t" / "04b_peer_tiger__ours"
    args = [a for k, v in dict(params, ids="ours", epochs=1, out_dir=str(ours)).items() for a in ("-p", k, str(v))]
    out = subprocess.run([sys.executable, "-m", "papermill", "notebooks/04b_peer_tiger.ipynb",
                          str(tmp_path / "out2.ipynb"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    m2 = json.loads((ours / "metrics.json").read_text())
    assert m2["peer_ids"] == "ours" and m2["tokenizer_codes_sha256"] == outputs.sha256_file(codes)
    assert "tokenizer_codes_sha256" not in m
