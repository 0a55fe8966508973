"""--skip-finished on a new machine: a run finished in git whose artifacts are gone, or were rebuilt into other semantic
IDs, runs again (outputs.stale_reason, runner.needs_run); a run whose artifacts are in place is skipped."""
import json

import numpy as np

from diger_lib import outputs as O, runner
from diger_lib.pipeline import RunSpec, tokenizer_digest

T04 = dict(dataset="Beauty", method="two_stage", ids="ours", codebook_size=256, n_levels=3, data_root="data")


def _tokenizer(art, codes=(1, 2, 3)):
    d = art / "Beauty" / "rqvae_K256_m3"
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "codes.npy", np.array([codes]))
    (d / "rqvae.pt").write_bytes(b"weights")
    return O.sha256_file(d / "codes.npy")


def test_encode_needs_its_embeddings(tmp_path):
    params = dict(dataset="Beauty")
    assert "item_emb.npy" in O.stale_reason(O.ENCODE, params, {}, tmp_path)
    (tmp_path / "Beauty").mkdir()
    np.save(tmp_path / "Beauty" / "item_emb.npy", np.zeros((2, 3)))
    assert O.stale_reason(O.ENCODE, params, {}, tmp_path) is None


def test_pretrain_needs_its_tokenizer_and_the_codes_it_recorded(tmp_path):
    params = dict(dataset="Beauty", codebook_size=256, n_levels=3)
    assert "rqvae.pt, codes.npy" in O.stale_reason(O.PRETRAIN, params, {}, tmp_path)
    digest = _tokenizer(tmp_path)
    assert O.stale_reason(O.PRETRAIN, params, {"codes_sha256": digest}, tmp_path) is None
    assert O.stale_reason(O.PRETRAIN, params, {}, tmp_path) is None  # a run from before digests were recorded
    assert "another tokenizer" in O.stale_reason(O.PRETRAIN, params, {"codes_sha256": "0" * 64}, tmp_path)


def test_training_pairs_only_with_the_ids_it_recorded(tmp_path):
    assert "not in the artifacts" in O.stale_reason(O.TRAIN, T04, {}, tmp_path)
    digest = _tokenizer(tmp_path)
    assert O.stale_reason(O.TRAIN, T04, {"tokenizer_codes_sha256": digest}, tmp_path) is None
    other = O.stale_reason(O.TRAIN, T04, {"tokenizer_codes_sha256": "ab" * 32}, tmp_path)
    assert "other semantic IDs" in other and digest[:12] in other
    assert "other semantic IDs" in O.stale_reason(O.TRAIN, T04, {}, tmp_path)  # unrecorded IDs are not paired
    assert O.stale_reason(O.TRAIN, dict(T04, method="most_popular"), {}, tmp_path) is None
    assert O.stale_reason("06_results_tables", {}, {}, tmp_path) is None


def test_the_notebook_records_the_digest_the_runner_checks(tmp_path):
    digest = _tokenizer(tmp_path)
    assert tokenizer_digest(RunSpec.from_params(T04), tmp_path) == digest
    letter = O.ids_file(tmp_path, "data", "Beauty", ids="letter")
    assert tokenizer_digest(RunSpec.from_params(dict(T04, ids="letter")), tmp_path) == O.sha256_file(letter)


def test_skip_finished_reruns_a_run_made_on_other_ids(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path / "store"))
    step = ("04_train_recommender", "ts", dict(T04))
    final, _, config_view = runner.plan_step("p", *step)
    assert runner.needs_run("p", *step) == "not finished"
    final.mkdir(parents=True)
    (final / "config.json").write_text(json.dumps(config_view))
    (final / "manifest.json").write_text("{}")
    digest = _tokenizer(tmp_path / "store" / "p")
    (final / "metrics.json").write_text(json.dumps({"tokenizer_codes_sha256": digest}))
    assert runner.needs_run("p", *step) is None
    assert runner.unfinished("p", [step]) == []
    _tokenizer(tmp_path / "store" / "p", codes=(3, 2, 1))  # notebook 03 rebuilt on another machine
    assert "other semantic IDs" in runner.needs_run("p", *step)
    assert runner.unfinished("p", [step]) == [step]
    changed = ("04_train_recommender", "ts", dict(T04, seed=7))
    assert runner.needs_run("p", *changed).startswith("configuration differs in seed")


def test_skip_finished_continues_a_run_its_time_budget_stopped(tmp_path, monkeypatch):
    """A training cut by time_budget_minutes (a loaded machine, a long run) is not finished: --skip-finished runs it
    again, and notebook 04 resumes it from its last epoch checkpoint; one that ended by early stopping or its epoch
    limit is skipped."""
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path / "store"))
    step = ("04_train_recommender", "ts", dict(T04, epochs=4, time_budget_minutes=60.0))
    final, _, config_view = runner.plan_step("p", *step)
    final.mkdir(parents=True)
    (final / "config.json").write_text(json.dumps(config_view))
    (final / "manifest.json").write_text("{}")
    digest = _tokenizer(tmp_path / "store" / "p")
    for reason, skipped in (("max_epochs", True), ("early_stopping", True), ("time_budget", False)):
        metrics = {"tokenizer_codes_sha256": digest, "stop_reason": reason, "epochs_run": 3}
        (final / "metrics.json").write_text(json.dumps(metrics))
        assert (runner.unfinished("p", [step]) == []) == skipped, reason
    assert runner.needs_run("p", *step) == "stopped by its time budget after 3 epoch(s), continues from its checkpoint"


def test_skip_finished_reruns_a_table_whose_runs_changed(tmp_path, monkeypatch):
    """Notebooks 05/06 read the profile's finished runs: one made before a run was added or retrained (or that did not
    record what it read) runs again; one whose runs are as it read them is skipped. The runner records the runs in the
    manifest (``inputs``) as ``outputs.input_runs`` lists them."""
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path / "store"))
    step = ("06_results_tables", "", {})
    final, full, config_view = runner.plan_step("p", *step)
    runs = tmp_path / "runs" / "p"
    for name, m in (("04_train_recommender__a", {"R@10": 0.1}), ("04_train_recommender__b", {"R@10": 0.2})):
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics.json").write_text(json.dumps(m))
    final.mkdir(parents=True)
    (final / "config.json").write_text(json.dumps(config_view))
    (final / "metrics.json").write_text("{}")
    (final / "manifest.json").write_text("{}")
    assert runner.needs_run("p", *step) == "it did not record the runs it read"
    inputs = O.input_runs(runs)
    assert sorted(inputs) == ["04_train_recommender__a", "04_train_recommender__b"]  # not 06 itself
    (final / "manifest.json").write_text(json.dumps({"inputs": inputs}))
    assert runner.needs_run("p", *step) is None
    (runs / "04_train_recommender__c").mkdir()
    (runs / "04_train_recommender__c" / "metrics.json").write_text("{}")
    (runs / "04_train_recommender__a" / "metrics.json").write_text(json.dumps({"R@10": 0.3}))
    assert runner.needs_run("p", *step) == ("the runs it reads changed (new 04_train_recommender__c; changed "
                                            "04_train_recommender__a)")
    (final / "manifest.json").write_text(json.dumps({"inputs": O.input_runs(runs)}))
    assert runner.unfinished("p", [step]) == []
    train = ("04_train_recommender", "d", dict(T04))  # a training still to run: the table's turn decides
    assert runner.unfinished("p", [train, step]) == [train, step]
