"""Notebooks: committed stripped and in sync with their builder; the runner validates parameters before
running; the smoke profile runs every notebook end to end on the tiny fixture and writes real metrics."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from diger_lib import runner
from diger_lib.profiles import PROFILES, steps_for

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_are_stripped_and_in_sync():
    assert len(NOTEBOOKS) == 6
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_notebooks.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


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


@pytest.mark.notebooks
def test_smoke_profile_runs_every_notebook(tmp_path):
    """The real entry point on the tiny fixture: every notebook, every method kind, figures and tables."""
    env_runs = tmp_path / "runs"
    code = ("import sys; from diger_lib import runner; from pathlib import Path; "
            f"runner.RUNS = Path({str(env_runs)!r}); runner.ARTIFACTS = Path({str(tmp_path / 'artifacts')!r}); sys.exit(runner.main(['--profile', 'smoke']))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = env_runs / "smoke"
    for stem, variant, _ in steps_for("smoke"):
        d = runs / (f"{stem}__{variant}" if variant else stem)
        assert (d / f"{stem}.ipynb").is_file() and (d / "manifest.json").is_file() and (d / "config.json").is_file()
        json.loads((d / "metrics.json").read_text())
    for v in ("two_stage", "most_popular", "ste", "diger_sdud_frqud"):
        m = json.loads((runs / f"04_train_recommender__{v}" / "metrics.json").read_text())
        assert all(0.0 <= m[k] <= 1.0 for k in ("R@5", "R@10", "N@5", "N@10")) and m["R@10"] >= m["R@5"]
    m = json.loads((runs / "04_train_recommender__two_stage" / "metrics.json").read_text())
    pop = json.loads((runs / "04_train_recommender__most_popular" / "metrics.json").read_text())
    assert m["R@10"] > pop["R@10"]  # Tiny users follow a theme: a trained model beats popularity
    for name in ("fig2_ndcg_coverage", "fig6_sid_dynamics", "fig7_code_usage"):
        assert (runs / "figures" / f"{name}.png").is_file()
    assert (runs / "figures" / "results_smoke.csv").is_file()
    d = runs / "04_train_recommender__diger_sdud_frqud"
    hist = (d / "history.csv").read_text().splitlines()
    epochs_run = json.loads((d / "metrics.json").read_text())["epochs_run"]
    assert hist[0].split(",").count("sigma") == 1 and len(hist) == 1 + 1 + epochs_run  # header, epoch 0, epochs 1..n
    # Same seed, same config: an independent rerun (fresh checkpoints) writes an identical metrics.json.
    stem, variant, params = next(s for s in steps_for("smoke") if s[1] == "two_stage")
    first = (runs / f"{stem}__{variant}" / "metrics.json").read_text()
    shutil.copytree(tmp_path / "artifacts", tmp_path / "artifacts2", ignore=shutil.ignore_patterns("runs"))
    again = runner.run_step("smoke", stem, variant, params, force=False, runs_root=tmp_path / "again",
                            artifacts_root=tmp_path / "artifacts2")
    assert (again / "metrics.json").read_text() == first
    # A finished run is not replaced by a different configuration without --force.
    step = [("03_pretrain_rqvae", "", {"dataset": "Tiny", "codebook_size": 16, "rqvae_epochs": 1,
                                        "hidden_dims": "64,32", "code_dim": 8, "kmeans_iters": 5})]
    with pytest.raises(runner.RunnerError, match="different configuration"):
        runner.run_step("smoke", *step[0], force=False, runs_root=env_runs, artifacts_root=tmp_path / "artifacts")
