"""The runner's plumbing: repo-relative paths, --set and profile files, the per-profile lock, and papermill's
injected parameters checked inside the notebook (direct papermill use is as safe as the runner)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diger_lib import outputs, paths, runner
from diger_lib.config import ConfigError
from diger_lib.lock import profile_lock
from diger_lib.nbparams import check_injected
from diger_lib.profiles import PROFILES, steps_for

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------------------
def test_artifacts_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("DIGER_ARTIFACTS", raising=False)
    assert paths.artifacts_dir("", "quick") == ROOT / "artifacts" / "quick"
    assert paths.artifacts_dir("dynamics", "dynamics_gaussian") == ROOT / "artifacts" / "dynamics"
    assert paths.artifacts_dir(str(tmp_path / "x"), "quick") == tmp_path / "x"
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path / "store"))
    assert paths.artifacts_dir("", "quick") == tmp_path / "store" / "quick"
    assert paths.artifacts_dir("dynamics", "q") == tmp_path / "store" / "dynamics"
    monkeypatch.setenv("DIGER_ARTIFACTS", "elsewhere")  # relative: from the repository root
    assert paths.artifacts_dir("", "smoke") == ROOT / "elsewhere" / "smoke"
    with pytest.raises(ValueError):
        paths.artifacts_dir("", "")


def test_display_path_never_shows_the_machine(monkeypatch, tmp_path):
    monkeypatch.delenv("DIGER_ARTIFACTS", raising=False)
    assert paths.display_path(ROOT / "artifacts" / "quick" / "Beauty") == "artifacts/quick/Beauty"
    assert paths.display_path("papermill_runs/quick") == "papermill_runs/quick"
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path / "store"))
    ckpt = paths.artifacts_dir("", "quick") / "Beauty" / "runs" / "x" / "last.pt"
    assert paths.display_path(ckpt) == "$DIGER_ARTIFACTS/quick/Beauty/runs/x/last.pt"
    assert paths.relative(ROOT / "figures" / "a.png") == "figures/a.png"
    assert paths.relative(tmp_path) == str(tmp_path)  # outside the repository: unchanged


def test_runner_records_repo_relative_paths():
    final, full, config = runner.plan_step("quick", "04_train_recommender", "two_stage", {"method": "two_stage"})
    assert final == runner.RUNS / "quick" / "04_train_recommender__two_stage"
    assert config["runs_dir"] == "papermill_runs/quick" and config["figures_dir"] == "figures"
    assert config["artifacts_dir"] == "" and "artifacts_dir" not in full  # the notebook resolves it
    _, _, smoke = runner.plan_step("smoke", "06_results_tables", "", {})
    assert smoke["figures_dir"] == "papermill_runs/smoke/figures"
    _, _, gauss = runner.plan_step("dynamics_gaussian", *PROFILES["dynamics_gaussian"]()[0])
    assert gauss["artifacts_dir"] == "dynamics"
    for profile in PROFILES:
        for step in PROFILES[profile]():
            text = json.dumps(runner.plan_step(profile, *step)[2])
            assert str(ROOT) not in text, (profile, step)
    assert runner._command(["--profile-file", str(ROOT / "profiles" / "x.toml")]) == \
        "python -m diger_lib.runner --profile-file profiles/x.toml"


ABSOLUTE = ("/work/", "/home/", "/tmp/", "/root/", "/Users/", "/private/var/", "C:\\\\Users")


def test_committed_runs_and_figures_hold_no_absolute_path():
    """A clone anywhere must reproduce and compare the committed runs: none of their files names a machine's path."""
    tracked = subprocess.run(["git", "ls-files", "-z", "papermill_runs", "figures"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split("\0")
    tracked = [f for f in tracked if f]
    assert tracked, "no committed runs found"
    bad = []
    for f in tracked:
        text = (ROOT / f).read_bytes().decode("utf-8", errors="replace")
        for needle in ABSOLUTE + (str(ROOT) + "/",):
            if needle in text:
                bad.append(f"{f}: {needle}")
                break
    assert not bad, "absolute paths in committed files:\n" + "\n".join(bad)


# ---------------------------------------------------------------------------------------------------------
# --set and profile files
# ---------------------------------------------------------------------------------------------------------
def test_set_applies_typed_to_every_declaring_step():
    steps = runner.apply_overrides(PROFILES["smoke"](), ["epochs=3", "compare_paper=true", "lr=1e-2", "decay=frqud"])
    by = {runner.label_of(s[0], s[1]): s[2] for s in steps}
    assert by["04_train_recommender__ste"]["epochs"] == 3 and by["01_prepare_data"]["compare_paper"] is True
    assert by["04_train_recommender__two_stage"]["lr"] == 0.01 and "epochs" not in by["03_pretrain_rqvae"]
    assert by["04_train_recommender__two_stage"]["decay"] == "frqud"
    with pytest.raises(runner.RunnerError, match="did you mean 'epochs'"):
        runner.apply_overrides(PROFILES["smoke"](), ["epoch=3"])
    with pytest.raises(runner.RunnerError, match="'x3' is not an integer"):
        runner.apply_overrides(PROFILES["smoke"](), ["epochs=x3"])
    with pytest.raises(runner.RunnerError, match="true or false"):
        runner.apply_overrides(PROFILES["smoke"](), ["resume=perhaps"])
    with pytest.raises(runner.RunnerError, match="KEY=VALUE"):
        runner.apply_overrides(PROFILES["smoke"](), ["epochs"])


def _profile_file(tmp_path, body: str) -> str:
    path = tmp_path / "batch.toml"
    path.write_text(body)
    return str(path)


@pytest.mark.parametrize("body, message", [
    ('name = "b"\n[[step]]\nnotebook = "04_train_recomender"\n', "did you mean '04_train_recommender'"),
    ('name = "b"\n[[step]]\nnotebook = "04_train_recommender"\nparams = { methd = "ste" }\n',
     "unknown parameter 'methd' for notebook 04_train_recommender; did you mean 'method'"),
    ('name = "b"\n[params]\nepoch = 3\n[[step]]\nnotebook = "04_train_recommender"\n', "did you mean 'epochs'"),
    ('name = "b"\n[[step]]\nnotebok = "04_train_recommender"\n', "did you mean 'notebook'"),
    ('name = "quick"\n[[step]]\nnotebook = "06_results_tables"\n', "built-in profile"),
    ('name = "b"\n', "no steps"),
    ('name = "b"\n[[step]]\nnotebook = "06_results_tables"\n[[step]]\nnotebook = "06_results_tables"\n', "twice"),
    ('name = "b"\n[[step]\n', "not valid TOML"),
])
def test_profile_file_is_validated_before_anything_runs(tmp_path, monkeypatch, capsys, body, message):
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    assert runner.main(["--profile-file", _profile_file(tmp_path, body)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_profile_file_steps_and_overrides(tmp_path, capsys):
    body = ('name = "mine"\n[params]\nepochs = 2\n[[step]]\nnotebook = "04_train_recommender"\nvariant = "a"\n'
            'params = { method = "ste", epochs = 5 }\n[[step]]\nnotebook = "04_train_recommender"\nvariant = "b"\n')
    assert runner.main(["--profile-file", _profile_file(tmp_path, body), "--set", "lr=0.1", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    a, b = (json.loads(line.split(" ", 1)[1]) for line in lines)
    assert a == {"method": "ste", "epochs": 5, "lr": 0.1} and b == {"epochs": 2, "lr": 0.1}
    assert runner.default_figures_dir("mine", runner.RUNS) == "papermill_runs/mine/figures"


# ---------------------------------------------------------------------------------------------------------
# One runner per profile
# ---------------------------------------------------------------------------------------------------------
HOLD = ("import sys, time; from diger_lib.lock import profile_lock\n"
        "with profile_lock(sys.argv[1], 'python -m diger_lib.runner --profile held'):\n"
        "    print('held', flush=True); time.sleep(120)")


def test_second_runner_is_refused_and_a_killed_runners_lock_is_taken_over(tmp_path, monkeypatch, capsys):
    lock = tmp_path / "runs" / "held" / ".runner.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setitem(PROFILES, "held", lambda: [("06_results_tables", "", {})])
        monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
        assert runner.main(["--profile", "held"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "--profile held" in err and "started" in err
        assert not (tmp_path / "runs" / "held" / "06_results_tables").exists()
    finally:
        holder.kill()  # SIGKILL: no chance to release the lock
        holder.wait()
    assert lock.exists()  # left behind by the killed runner
    said = []
    with profile_lock(lock, "second", warn=said.append) as me:
        assert json.loads(lock.read_text())["pid"] == me["pid"] == os.getpid()
    assert len(said) == 1 and "stale" in said[0] and f"pid {holder.pid}" in said[0]
    assert not lock.exists()  # released at exit


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or os.name != "posix", reason="reads /proc for the kernel")
def test_sigterm_stops_a_runner_as_ctrl_c_does(tmp_path):
    """SIGTERM while a notebook runs (a session's end, ``kill``): exit 130 with a message, the kernel shut down, the
    staging folder removed, no run folder and the lock released (SIGTERM's default left all of them behind)."""
    import signal
    import time

    name = f"sigterm_probe_{os.getpid()}"
    body = (ROOT / "profiles" / "byo_example.toml").read_text().replace('name = "byo_example"', f'name = "{name}"')
    (tmp_path / "p.toml").write_text(body)
    runs = ROOT / "papermill_runs" / name
    env = dict(os.environ, DIGER_ARTIFACTS=str(tmp_path / "art"))
    proc = subprocess.Popen([sys.executable, "-m", "diger_lib.runner", "--profile-file", str(tmp_path / "p.toml")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        kids, deadline = [], time.time() + 120
        while not kids and time.time() < deadline and proc.poll() is None:  # the first step's kernel has started
            time.sleep(0.2)
            kids = [int(k) for t in Path(f"/proc/{proc.pid}/task").iterdir()
                    for k in (t / "children").read_text().split()] if Path(f"/proc/{proc.pid}").is_dir() else []
        assert kids and any(p.name.endswith(".partial") for p in runs.iterdir())
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130 and "stopped (Ctrl-C or SIGTERM)" in err
        assert sorted(p.name for p in runs.iterdir()) == []  # no lock, no staging folder, no run
        deadline = time.time() + 30
        while any(Path(f"/proc/{k}").is_dir() for k in kids) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(Path(f"/proc/{k}").is_dir() for k in kids)  # the kernel is gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(runs, ignore_errors=True)


def test_the_runner_gives_sigterm_back_to_its_previous_handler(monkeypatch):
    """runner.main runs inside other programs too (tests, a notebook): its SIGTERM handling ends with it."""
    import signal

    monkeypatch.setitem(PROFILES, "tiny_list", lambda: [("06_results_tables", "", {})])
    before = signal.getsignal(signal.SIGTERM)
    assert runner.main(["--profile", "tiny_list", "--list"]) == 0
    assert signal.getsignal(signal.SIGTERM) == before


def test_lock_is_released_on_error(tmp_path):
    lock = tmp_path / ".runner.lock"
    with pytest.raises(RuntimeError):
        with profile_lock(lock, "first"):
            raise RuntimeError("a step failed")
    said = []
    with profile_lock(lock, "second", warn=said.append):
        pass
    assert not said and not lock.exists()


# ---------------------------------------------------------------------------------------------------------
# Papermill's injected parameters, checked inside the notebook
# ---------------------------------------------------------------------------------------------------------
PARAMS = 'method: str = "two_stage"  # which\nepochs: int = 200  # how long\n'


def test_check_injected_names_the_misspelt_parameter():
    with pytest.raises(ConfigError, match="unknown parameter 'methd'.*did you mean 'method'"):
        check_injected(["", PARAMS, '# Parameters\nmethd = "diger"\n', "check_injected()"])
    check_injected(["", PARAMS, '# Parameters\nmethod = "diger"\nepochs = 3\n', "check_injected()"])
    check_injected(["", PARAMS, "check_injected()"])  # JupyterLab: no injected cell
    check_injected([])  # not in a kernel


@pytest.mark.notebooks
def test_direct_papermill_with_a_misspelt_parameter_fails_at_the_first_cell(tmp_path):
    import papermill as pm

    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(ROOT / "notebooks" / "04_train_recommender.ipynb"), str(out), cwd=str(ROOT),
                            parameters={"method": "diger", "methd": "diger", "out_dir": str(tmp_path / "o")},
                            kernel_name="python3", progress_bar=False)
    assert err.value.ename == "ConfigError" and "did you mean 'method'" in err.value.evalue
    executed = [c for c in json.loads(out.read_text())["cells"] if c.get("execution_count")]
    assert len(executed) == 3  # parameters, injected parameters, and the first cell that stopped
    assert not (tmp_path / "o").exists()


@pytest.mark.notebooks
def test_results_table_reads_the_committed_runs(tmp_path):
    """The committed runs, made on another machine, are read as they are by a clone anywhere."""
    import pandas as pd

    params = {"runs_dir": "papermill_runs/quick", "figures_dir": str(tmp_path / "figures")}
    out = runner.run_step("quick", "06_results_tables", "", params, runs_root=tmp_path / "runs")
    n_04 = sum(stem == "04_train_recommender" for stem, _, _ in steps_for("quick"))  # every quick run is committed
    assert json.loads((out / "metrics.json").read_text())["n_runs"] == n_04 == 4
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]  # what --skip-finished compares next time
    assert inputs == outputs.input_runs(ROOT / "papermill_runs" / "quick") and len(inputs) >= n_04
    ours = pd.read_csv(tmp_path / "figures" / "results_quick.csv")
    committed = pd.read_csv(ROOT / "figures" / "results_quick.csv")
    cols = ["run", "label", "R@5", "R@10", "N@5", "N@10", "best_epoch", "commit"]
    assert ours[cols].equals(committed[cols])


def test_relative_text_strips_the_machine_from_printed_output(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGER_ARTIFACTS", str(tmp_path / "store"))
    text = f"resumed from {tmp_path}/store/quick/last.pt; warning in {ROOT}/.venv/lib/x.py; {ROOT}-other/y"
    assert paths.relative_text(text) == \
        f"resumed from $DIGER_ARTIFACTS/quick/last.pt; warning in .venv/lib/x.py; {ROOT}-other/y"


# ---------------------------------------------------------------------------------------------------------
# --workers: trainings side by side, other notebooks alone
# ---------------------------------------------------------------------------------------------------------
def _steps(*names):
    out = []
    for n in names:
        stem, _, variant = n.partition(":")
        params = {"init_from": f"04_train_recommender__{variant.split('<')[1]}"} if "<" in variant else {}
        out.append((stem, variant.split("<")[0], params))
    return out


def test_dependencies_make_every_other_notebook_a_barrier():
    steps = _steps("02_encode_item_text", "03_pretrain_rqvae", "04_train_recommender:a",
                   "04_train_recommender:b<a", "04_train_recommender:c", "05_sid_dynamics_figures",
                   "04_train_recommender:d", "06_results_tables")
    assert runner.dependencies(steps) == [set(), {0}, {0, 1}, {0, 1, 2}, {0, 1}, {0, 1, 2, 3, 4}, {5}, set(range(7))]
    assert runner.dependencies(_steps("04_train_recommender:a", "04_train_recommender:b")) == [set(), set()]


def test_dependencies_follow_the_artifacts_each_step_writes_and_reads():
    """A tokenizer of another K waits only for its dataset's embeddings, so Table 5's K = 128 tokenizer and its training
    run beside Table 2's K = 256 trainings; a training waits for its own tokenizer; a dataset's new embeddings wait
    for every earlier step of that dataset; other datasets and artifacts folders are independent."""
    def st(stem, variant="", **p):
        return (stem, variant, p)
    steps = [st("01_prepare_data"),                                            # 0
             st("02_encode_item_text", "B", dataset="B"),                      # 1
             st("03_pretrain_rqvae", "B", dataset="B"),                        # 2
             st("04_train_recommender", "B_a", dataset="B"),                   # 3
             st("03_pretrain_rqvae", "B_K128", dataset="B", codebook_size=128),  # 4
             st("04_train_recommender", "B_K128", dataset="B", codebook_size=128),  # 5
             st("04_train_recommender", "B_b", dataset="B"),                   # 6: K 256 again
             st("03_pretrain_rqvae", "B_again", dataset="B"),                  # 7: rewrites K 256: after 3 and 6
             st("02_encode_item_text", "I", dataset="I"),                      # 8
             st("03_pretrain_rqvae", "I", dataset="I"),                        # 9
             st("04_train_recommender", "I_a", dataset="I"),                   # 10
             st("04_train_recommender", "B_x", dataset="B", artifacts_dir="other"),  # 11: another folder
             st("02_encode_item_text", "B_cf", dataset="B"),                   # 12: new embeddings of B
             st("06_results_tables")]                                          # 13
    deps = runner.dependencies(steps)
    assert deps[:4] == [set(), {0}, {0, 1}, {0, 1, 2}]
    assert deps[4] == {0, 1} and deps[5] == {0, 1, 4} and deps[6] == {0, 1, 2}
    assert deps[7] == {0, 1, 2, 3, 6}
    assert deps[8] == {0} and deps[9] == {0, 8} and deps[10] == {0, 8, 9} and deps[11] == {0}
    assert deps[12] == {0, 1, 2, 3, 4, 5, 6, 7}  # not I's steps, not the other folder's
    assert deps[13] == set(range(13))
    # the notebook's defaults count: a step that leaves K unset trains on the K the notebook defaults to
    resolve = lambda stem, p: {"codebook_size": 128, **p}  # noqa: E731
    assert runner.dependencies([steps[4], st("04_train_recommender", "d", dataset="B")], resolve) == [set(), {0}]
    # on a clock: the K = 128 tokenizer and training overlap the K = 256 trainings instead of waiting for them all
    code, spans = _simulate(deps[:7], [1, 1, 1, 10, 1, 10, 10], workers=2)
    assert code == 0 and spans[4][0] < spans[3][1] and spans[5][0] < spans[3][1]


def _simulate(deps, durations, workers, fail=()):
    """run_parallel on a clock: each poll advances time by one tick; returns (exit code, {step: (start, end)})."""
    clock, spans, live = [0], {}, {}

    def start(i):
        spans[i] = (clock[0], None)
        live[i] = clock[0] + durations[i]
        return i

    def poll(i):
        if clock[0] < live[i]:
            return None
        spans[i] = (spans[i][0], clock[0])
        return 1 if i in fail else 0

    def tick():
        clock[0] += 1

    code = runner.run_parallel([str(i) for i in range(len(deps))], deps, start, workers, poll, wait=tick,
                               log=lambda m: None)
    return code, spans


def test_run_parallel_respects_dependencies_and_the_worker_count():
    steps = _steps("03_pretrain_rqvae", "04_train_recommender:a", "04_train_recommender:b<a",
                   "04_train_recommender:c", "04_train_recommender:d", "06_results_tables")
    deps = runner.dependencies(steps)
    code, spans = _simulate(deps, [2, 5, 3, 4, 4, 1], workers=2)
    assert code == 0 and set(spans) == set(range(6))
    for i, d in enumerate(deps):
        assert all(spans[j][1] <= spans[i][0] for j in d), (i, spans)
    for t in range(20):  # never more than 2 at a time
        assert sum(1 for s, e in spans.values() if s <= t < e) <= 2
    assert spans[1][0] == spans[3][0] == 2  # a and c start together after the tokenizer; b waits for a
    one = _simulate(deps, [2, 5, 3, 4, 4, 1], workers=1)[1]
    assert max(e for _, e in spans.values()) < max(e for _, e in one.values())  # two workers finish sooner


def test_run_parallel_starts_nothing_after_a_failure():
    deps = runner.dependencies(_steps("04_train_recommender:a", "04_train_recommender:b",
                                      "04_train_recommender:c", "06_results_tables"))
    code, spans = _simulate(deps, [1, 4, 4, 1], workers=2, fail={0})
    assert code == 1 and 1 in spans and 2 not in spans and 3 not in spans  # b was running and finishes
    assert spans[1][1] is not None


def test_workers_children_threads():
    """--workers N: trainings share the cores; a step that runs alone (notebook 03: its tokenizer depends on the
    thread count) gets every core, as in a sequential run; a value the user set wins."""
    assert runner.child_threads("04_train_recommender", 2, 2, None) == "1"
    assert runner.child_threads("04_train_recommender", 3, 8, None) == "2"
    assert runner.child_threads("03_pretrain_rqvae", 2, 2, None) == "2"
    assert runner.child_threads("02_encode_item_text", 4, 2, None) == "2"
    assert runner.child_threads("03_pretrain_rqvae", 2, 2, "1") == "1"
    assert runner.child_threads("04_train_recommender", 4, 2, "") == "1"  # never 0


def test_workers_children_decide_skip_finished_at_their_turn(monkeypatch, tmp_path):
    """A new machine: finished trainings look stale before notebook 03 has rebuilt their tokenizer. With
    --skip-finished --workers N the parent leaves out only what is finished now, and every child gets --skip-finished
    so that it skips its training at its turn if the rebuilt IDs are the ones it was trained on."""
    import argparse
    steps = _steps("03_pretrain_rqvae", "04_train_recommender:a", "04_train_recommender:b")
    reasons = {"03_pretrain_rqvae": "its tokenizer is not in the artifacts",
               "04_train_recommender__a": "its semantic IDs are not in the artifacts", "04_train_recommender__b": None}
    monkeypatch.setattr(runner, "needs_run", lambda p, stem, v, params: reasons[runner.label_of(stem, v)])
    monkeypatch.setattr(runner, "RUNS", tmp_path)
    started = []

    class Done:
        def __init__(self, cmd, **kw):
            started.append(cmd)
            kw["stdout"].write(f"{cmd[-2]} ok\n")

        def poll(self):
            return 0
    monkeypatch.setattr(runner.subprocess, "Popen", Done)
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    args = argparse.Namespace(profile="x", profile_file=None, set=[], workers=2, skip_finished=True)
    assert runner.run_profile_parallel("x", steps, args, "cmd") == 0
    assert [c[c.index("--only") + 1] for c in started] == ["03_pretrain_rqvae", "04_train_recommender__a"]
    assert all("--skip-finished" in c for c in started)
    started.clear()
    args.skip_finished = False  # without the flag, every step runs and no child skips
    assert runner.run_profile_parallel("x", steps, args, "cmd") == 0
    assert len(started) == 3 and not any("--skip-finished" in c for c in started)


def test_no_two_profiles_write_the_same_sid_dynamics_figures():
    """Notebook 05 writes fig2/fig6/fig7/diagnostics into its figures_dir: each built-in profile gets its own folder,
    except the two that regenerate the paper's own figures (paper at full size, paper_cpu at CPU scale) in figures/."""
    owners: dict[str, list[str]] = {}
    for profile in PROFILES:
        for stem, variant, params in steps_for(profile):
            if stem == "05_sid_dynamics_figures":
                final, full, _ = runner.plan_step(profile, stem, variant, params)
                owners.setdefault(full["figures_dir"], []).append(profile)
    assert sorted(owners["figures"]) == ["paper", "paper_cpu"]
    assert all(len(v) == 1 for k, v in owners.items() if k != "figures"), owners
