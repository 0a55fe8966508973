"""A clone at another path reruns a profile whose finished runs are committed (issue 9.1, `make quick` on a fresh
clone). Clone `a` runs three cheap smoke steps into a profile folder that git tracks and commits them; clone `b`
(a real `git clone` of `a`, somewhere else) reruns the profile without --force: it must proceed, replace the runs,
record the same config.json and no path of either machine."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"]
# A profile named like no built-in one, so its runs folder is not git-ignored; the first three smoke steps.
RUN = ("import sys; from diger_lib import profiles, runner; "
       "assert runner.ROOT.resolve() == __import__('pathlib').Path.cwd().resolve(), runner.ROOT; "
       "profiles.PROFILES['clonecheck'] = lambda: profiles.steps_for('smoke')[:3]; "
       "sys.exit(runner.main(['--profile', 'clonecheck'] + sys.argv[1:]))")


def _export_worktree(dest: Path) -> None:
    """Copy the code under test (tracked and new files, committed or not) into a fresh repository at ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if rel.startswith(("papermill_runs/", "figures/")) or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    subprocess.run(GIT + ["init", "-q"], cwd=dest, check=True)
    subprocess.run(GIT + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(GIT + ["commit", "-qm", "code under test"], cwd=dest, check=True)


def _run(clone: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DIGER_ARTIFACTS", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-c", RUN, *args], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.notebooks
def test_clone_elsewhere_reruns_committed_finished_runs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    _export_worktree(a)
    first = _run(a)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    runs = Path("papermill_runs") / "clonecheck"
    assert len(list((a / runs).glob("*/manifest.json"))) == 3
    subprocess.run(GIT + ["add", str(runs)], cwd=a, check=True)
    subprocess.run(GIT + ["commit", "-qm", "finished runs"], cwd=a, check=True)
    subprocess.run(GIT + ["clone", "-q", str(a), str(b)], check=True)
    assert (b / runs / "01_prepare_data" / "config.json").is_file()  # the clone holds the committed runs

    again = _run(b)  # no --force: a researcher reruns the profile
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "replacing" in again.stdout
    assert "without encryption" not in again.stderr  # the kernel talks over a private socket (IPC)
    tracked = subprocess.run(["git", "ls-files", str(runs)], cwd=b, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked and all((b / f).is_file() for f in tracked)
    for f in tracked:
        text = (b / f).read_text(errors="replace")
        for machine_path in (str(a), str(b), str(tmp_path)):
            assert machine_path not in text, f"{f} records the absolute path {machine_path}"
    # Same code, same parameters: the recorded configuration is byte-identical between the two clones.
    same = subprocess.run(["git", "diff", "--quiet", "--", *[f for f in tracked if f.endswith("config.json")]],
                          cwd=b)
    assert same.returncode == 0, "config.json differs between two clones of the same commit"
    # A restarted batch continues where it stopped: every step is finished with this configuration.
    skipped = _run(b, "--skip-finished")
    assert skipped.returncode == 0, skipped.stdout[-2000:] + skipped.stderr[-2000:]
    assert skipped.stdout.count("skipping") == 3
    # A new machine: the runs are in git, the artifacts are not. --skip-finished must rebuild what the next notebooks
    # read (embeddings, tokenizer) instead of skipping to a training that would find no tokenizer.
    shutil.rmtree(b / "artifacts")
    rebuilt = _run(b, "--skip-finished")
    assert rebuilt.returncode == 0, rebuilt.stdout[-2000:] + rebuilt.stderr[-2000:]
    assert rebuilt.stdout.count("skipping") == 1 and "skipping 01_prepare_data" in rebuilt.stdout
    assert "02_encode_item_text runs again: its embeddings" in rebuilt.stdout
    assert "03_pretrain_rqvae runs again: its tokenizer" in rebuilt.stdout
    assert (b / "artifacts" / "clonecheck").is_dir()
