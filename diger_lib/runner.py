"""Papermill runner: ``python -m diger_lib.runner --profile quick`` (or ``--profile-file my_batch.toml``).

Executes the profile's notebooks in order. Before anything runs, every step's parameters are checked
against the notebook's ``parameters`` cell (an unknown or misspelt name fails the whole batch). Each step
executes into a staging folder and is moved into place only when it finished, so
``papermill_runs/<profile>/<notebook>[__variant]/`` always holds a complete run: the executed notebook,
the flat ``metrics.json`` the notebook wrote, the resolved ``config.json`` and a ``manifest.json``
(commit, versions, device, seed, wall time). Every recorded path is relative to the repository root. Rerunning a
profile re-executes its steps and replaces the finished runs (they are in git: ``git diff`` shows what changed);
``--skip-finished`` keeps those whose configuration is unchanged (05/06: and the runs they read). One runner per
profile at a time (a lock file).
Training checkpoints live in ``$DIGER_ARTIFACTS/<profile>/`` (default ``artifacts/``), so an interrupted run
resumes where it stopped when the runner is started again.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .config import ConfigError, reject_unknown
from .kernels import kernel_config, relativize_notebook
from .lock import LOCK_NAME, LockHeld, profile_lock, stop_on_sigterm
from .outputs import AGGREGATES, input_runs, inputs_changed, stale_reason
from .provenance import git_commit, hardware, versions
from .paths import ROOT, artifacts_dir, relative, staging_dir
from .profile_files import ProfileFileError, load_profile_file
from .profiles import PROFILES, Step, steps_for
from .schedule import PARALLEL_STEMS, SchedulingError, dependencies, label_of, run_parallel  # noqa: F401 (re-exported)

NOTEBOOKS = ROOT / "notebooks"
RUNS = ROOT / "papermill_runs"


class RunnerError(RuntimeError):
    pass


def notebook_path(stem: str) -> Path:
    path = NOTEBOOKS / f"{stem}.ipynb"
    if not path.is_file():
        known = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
        raise RunnerError(f"no notebook {relative(path)}; known: {', '.join(known)}")
    return path


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    import papermill as pm

    params = pm.inspect_notebook(str(path))
    if not params:
        raise RunnerError(f"{relative(path)} has no cell tagged 'parameters'")
    return params


def check_parameters(stem: str, params: dict[str, Any]) -> None:
    try:
        reject_unknown(params, list(notebook_parameters(notebook_path(stem))), where=f"notebook {stem}")
    except ConfigError as e:
        raise RunnerError(str(e)) from None


def resolved_parameters(stem: str, params: dict[str, Any]) -> dict[str, Any]:
    """The notebook's defaults overridden by ``params``: every value the run used."""
    out = {}
    for name, p in notebook_parameters(notebook_path(stem)).items():
        try:
            out[name] = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            out[name] = p["default"]
    out.update(params)
    return out


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def convert(value: str, type_name: str, key: str, where: str) -> Any:
    """A ``--set`` value (text) as the parameter's declared type; a bad value fails naming both."""
    try:
        if type_name == "bool":
            if value.strip().lower() not in _TRUE + _FALSE:
                raise ValueError
            return value.strip().lower() in _TRUE
        return {"int": int, "float": float}.get(type_name, str)(value)
    except ValueError:
        kind = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(type_name, type_name)
        raise RunnerError(f"--set {key}={value}: {key} is declared {type_name} in {where}; "
                          f"{value!r} is not {kind}") from None


def _declaring(steps: list[Step], key: str, where: str) -> list[tuple[str, dict, dict[str, Any]]]:
    """(notebook, its declared parameters, the step's params) of every step that declares ``key``; none fails."""
    hits, everything = [], set()
    for stem, _, params in steps:
        declared = notebook_parameters(notebook_path(stem))
        everything.update(declared)
        if key in declared:
            hits.append((stem, declared, params))
    if not hits:
        try:
            reject_unknown({key: None}, everything, where=f"any step of this profile ({where})")
        except ConfigError as e:
            raise RunnerError(str(e)) from None
    return hits


def apply_defaults(steps: list[Step], defaults: dict[str, Any]) -> list[Step]:
    """A profile file's top-level ``[params]``: set on every step that declares the key, unless the step sets it."""
    steps = [(stem, variant, dict(params)) for stem, variant, params in steps]
    for key, value in defaults.items():
        for _, _, params in _declaring(steps, key, "[params]"):
            params.setdefault(key, value)
    return steps


def apply_overrides(steps: list[Step], sets: list[str]) -> list[Step]:
    """``--set KEY=VALUE`` on every step whose notebook declares KEY (typed as declared there)."""
    steps = [(stem, variant, dict(params)) for stem, variant, params in steps]
    for item in sets:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise RunnerError(f"--set {item!r}: expected KEY=VALUE")
        for stem, declared, params in _declaring(steps, key, "--set"):
            params[key] = convert(value, declared[key]["inferred_type_name"], key, f"notebook {stem}")
    return steps


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def finished_config(final: Path, stem: str) -> dict[str, Any] | None:
    """The resolved configuration of the finished run in ``final``, or None if there is none."""
    if not (final / "manifest.json").is_file() or not (final / "config.json").is_file():
        return None
    try:
        config = _plain(resolved_parameters(stem, json.loads((final / "config.json").read_text())))
    except ValueError:
        return None
    config.pop("out_dir", None)  # the staging folder: not part of a run's configuration
    return config


def config_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 6) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
    if not keys:
        return "same configuration"
    shown = ", ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in keys[:limit])
    return f"configuration differs in {shown}" + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def default_figures_dir(profile: str, runs_root: Path) -> str:
    """Paper-labelled figures of the built-in profiles go to figures/; smoke's and profile files' stay with their runs."""
    if profile in PROFILES and profile != "smoke":
        return "figures"
    return relative(runs_root / profile / "figures")


def plan_step(profile: str, stem: str, variant: str, params: dict[str, Any], runs_root: Path | None = None,
              figures_dir: str | None = None) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """(final run folder, parameters passed to the notebook except out_dir, the resolved config.json)."""
    runs_root = Path(runs_root or RUNS)
    final = runs_root / profile / (f"{stem}__{variant}" if variant else stem)
    full = dict(params)
    full.setdefault("profile", profile)
    full.setdefault("runs_dir", relative(runs_root / profile))
    full.setdefault("figures_dir", figures_dir or default_figures_dir(profile, runs_root))
    # artifacts_dir stays as given ("" = $DIGER_ARTIFACTS/<profile>); the notebook resolves it (paths.artifacts_dir)
    config = _plain(resolved_parameters(stem, full))
    config.pop("out_dir", None)  # the staging folder: not part of a run's configuration
    return final, full, config


def _execute(stem: str, name: str, staging: Path, final: Path, full: dict[str, Any]) -> float:
    import papermill as pm

    env_before = os.environ.get("DIGER_PROGRESS")
    os.environ["DIGER_PROGRESS"] = env_before or "plain"
    t0 = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="diger-kernel-") as sockets:
            pm.execute_notebook(str(notebook_path(stem)), str(staging / f"{stem}.ipynb"), parameters=full,
                                cwd=str(ROOT), kernel_name="python3", progress_bar=False, log_output=False,
                                config=kernel_config(sockets))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (papermill has shut the kernel down): no half-run folder stays
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as e:
        if not staging.exists():
            raise RunnerError(f"notebook {stem} ({name}): its staging folder {relative(staging)} was removed while "
                              f"it ran") from None
        failed = final.with_name(f".{name}.FAILED")
        shutil.rmtree(failed, ignore_errors=True)
        staging.rename(failed)
        cause = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise RunnerError(f"notebook {stem} ({name}) failed; the executed notebook with the error is in "
                          f"{relative(failed)}. Cause: {cause}") from None
    finally:
        if env_before is None:
            os.environ.pop("DIGER_PROGRESS", None)
    return time.time() - t0


def _move_into_place(staging: Path, final: Path) -> None:
    if final.exists():
        trash = final.with_name(f".{final.name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        final.rename(trash)
        staging.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(final)


def run_step(profile: str, stem: str, variant: str, params: dict[str, Any], *, runs_root: Path | None = None,
             figures_dir: str | None = None, command: str | None = None,
             log: Callable[[str], None] = print) -> Path:
    """Execute one step into its staging folder, then move it over ``papermill_runs/<profile>/<name>/``."""
    final, full, config_view = plan_step(profile, stem, variant, params, runs_root, figures_dir)
    name = final.name
    old = finished_config(final, stem)
    if old is not None:
        log(f"  replacing the finished run {relative(final)} ({config_changes(old, config_view)})")
    staging = staging_dir(final)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    full["out_dir"] = relative(staging)
    commit = git_commit()  # the code that runs, read before it runs
    inputs = {"inputs": input_runs(ROOT / full["runs_dir"])} if stem in AGGREGATES else {}  # what 05/06 read
    seconds = _execute(stem, name, staging, final, full)
    if not staging.is_dir():
        raise RunnerError(f"notebook {stem} ({name}): its staging folder {relative(staging)} was removed while it ran")
    if not (staging / "metrics.json").exists():
        raise RunnerError(f"notebook {stem} finished without writing metrics.json in {relative(staging)}")
    relativize_notebook(staging / f"{stem}.ipynb", notebook_path(stem), final)
    (staging / "config.json").write_text(json.dumps(config_view, indent=2, sort_keys=True) + "\n")
    manifest = {"notebook": stem, "variant": variant, "profile": profile, "commit": commit,
                "versions": versions(), "hardware": hardware(), "seed": config_view.get("seed"),
                "wall_seconds": round(seconds, 1), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": command or f"python -m diger_lib.runner --profile {profile}", **inputs}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _move_into_place(staging, final)
    return final


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m diger_lib.runner", description=__doc__.split("\n\n")[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--profile", help=f"a built-in profile: {' | '.join(PROFILES)}")
    which.add_argument("--profile-file", metavar="FILE.toml",
                       help="your own batch: a name and one [[step]] per notebook run (see profiles/byo_example.toml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a parameter on every step whose notebook declares it (repeatable)")
    ap.add_argument("--only", default="", help="comma-separated step names (e.g. 04_train_recommender__two_stage)")
    ap.add_argument("--skip-finished", action="store_true",
                    help="skip steps whose finished run has exactly this configuration (continue a stopped batch)")
    ap.add_argument("--force", action="store_true", help="no longer needed: a rerun replaces finished runs")
    ap.add_argument("--list", action="store_true", help="print the steps and exit")
    ap.add_argument("--workers", type=int, default=1, metavar="N",
                    help="run up to N notebook-04 trainings at once, each in its own process with "
                         "OMP_NUM_THREADS = cores // N unless set (other notebooks run alone, in profile order, "
                         "with every core); "
                         "each step's output goes to papermill_runs/<profile>/.logs/<step>.log")
    ap.add_argument("--no-lock", action="store_true", help=argparse.SUPPRESS)  # a --workers child: its parent holds it
    return ap


def select_steps(args: argparse.Namespace) -> tuple[str, list[Step]]:
    """The profile's name and its validated steps after ``--set`` and ``--only``; raises RunnerError."""
    try:
        if args.profile:
            profile, steps = args.profile, steps_for(args.profile)
        else:
            profile, steps, defaults = load_profile_file(args.profile_file)
    except KeyError as e:
        raise RunnerError(e.args[0]) from None
    except ProfileFileError as e:
        raise RunnerError(str(e)) from None
    for stem, _, _ in steps:
        notebook_path(stem)
    if args.profile_file:
        steps = apply_defaults(steps, defaults)
    steps = apply_overrides(steps, args.set)
    if args.only:
        wanted = set(args.only.split(","))
        steps = [s for s in steps if label_of(s[0], s[1]) in wanted]
        if not steps:
            raise RunnerError(f"--only {args.only} matches no step of profile {profile}")
    for stem, _, params in steps:  # validate everything before anything executes
        check_parameters(stem, params)
    return profile, steps


def _command(argv: list[str]) -> str:
    """The command line as run, with paths inside the repository written relative to it."""
    def rel(token: str) -> str:
        key, eq, value = token.rpartition("=")
        return f"{key}{eq}{relative(value)}" if value.startswith("/") else token

    return "python -m diger_lib.runner " + " ".join(shlex.quote(rel(t)) for t in argv)


def needs_run(profile: str, stem: str, variant: str, params: dict[str, Any]) -> str | None:
    """``--skip-finished``: None if the finished run has exactly this configuration and the artifacts it made are
    still in place (outputs.stale_reason: a new machine has none, or another tokenizer), else why it runs. A training
    its time budget stopped (``stop_reason: time_budget``) runs again: it resumes and trains its remaining epochs."""
    final, _, config_view = plan_step(profile, stem, variant, params)
    old = finished_config(final, stem)
    if old is None:
        return "not finished"
    if old != config_view:
        return config_changes(old, config_view)
    try:
        metrics = json.loads((final / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = None
    art = artifacts_dir(str(config_view.get("artifacts_dir", "")), str(config_view.get("profile") or profile))
    stale = stale_reason(stem, config_view, metrics, art)
    if stale is None and stem in AGGREGATES:  # notebooks 05/06: the runs they read changed since
        manifest = json.loads((final / "manifest.json").read_text())
        stale = inputs_changed(manifest.get("inputs"), input_runs(ROOT / str(config_view.get("runs_dir"))))
    if stale is None and (metrics or {}).get("stop_reason") == "time_budget":
        # a run cut by its per-call time budget is not done: called again, it resumes from its last epoch checkpoint
        return (f"stopped by its time budget after {metrics.get('epochs_run', '?')} epoch(s), continues from its "
                f"checkpoint")
    return stale


def _skips(profile: str, stem: str, variant: str, params: dict[str, Any]) -> bool:
    reason = needs_run(profile, stem, variant, params)
    when = time.strftime('%H:%M:%S')
    if reason is None:
        print(f"[{when}] {profile}: skipping {label_of(stem, variant)} (finished, same configuration, artifacts in place)")
    elif reason not in ("not finished",) and not reason.startswith("configuration differs"):
        print(f"[{when}] {profile}: {label_of(stem, variant)} runs again: {reason}", flush=True)
    return reason is None


def unfinished(profile: str, steps: list[Step]) -> list[Step]:
    """The steps ``--skip-finished`` runs (``needs_run``); notebooks 05/06 too while any other step is to run (the
    runs they read may change: a ``--workers`` child decides at their turn)."""
    todo = [(stem, variant, params) for stem, variant, params in steps if not _skips(profile, stem, variant, params)]
    if any(stem not in AGGREGATES for stem, _, _ in todo):
        todo = [s for s in steps if s in todo or s[0] in AGGREGATES]
    return todo


def child_threads(stem: str, workers: int, cores: int, given: str | None) -> str:
    """OMP_NUM_THREADS of a ``--workers`` child: the user's value if set; else cores // N for a training (N of them
    share the cores) and every core for a step that runs alone. Notebook 03's tokenizer depends on the thread count
    (float sums in another order), so a step run alone must get the cores a sequential run gives it."""
    if given:
        return given
    return str(max(1, cores // workers)) if stem in PARALLEL_STEMS else str(max(1, cores))


def run_profile_parallel(profile: str, steps: list[Step], args: argparse.Namespace, command: str) -> int:
    """``--workers N``: each step runs as a child runner (``--only <step> --no-lock``) in its own process, once the
    steps whose artifacts it reads have finished (``dependencies``). Children get OMP_NUM_THREADS from
    ``child_threads``, and write their output to ``papermill_runs/<profile>/.logs/<step>.log``."""
    if args.skip_finished:
        # Checked twice: here, to leave out what is finished; and by each child when its turn comes (it gets
        # --skip-finished too), since a finished training whose tokenizer is not built yet (a new machine) looks stale
        # now but is skipped once its notebook 03 has rebuilt the same semantic IDs.
        steps = unfinished(profile, steps)
    labels = [label_of(stem, variant) for stem, variant, _ in steps]
    logs = RUNS / profile / ".logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DIGER_RUNNER_COMMAND=command)
    given, cores = os.environ.get("OMP_NUM_THREADS"), os.cpu_count() or 1
    # a child is this runner with the same runs root (tests point RUNS elsewhere), one step and no lock
    base = [sys.executable, "-c", "import sys; from pathlib import Path; from diger_lib import runner; "
            f"runner.RUNS = Path({str(RUNS)!r}); sys.exit(runner.main(sys.argv[1:]))"]
    base += ["--profile", args.profile] if args.profile else ["--profile-file", str(Path(args.profile_file).resolve())]
    for kv in args.set:
        base += ["--set", kv]
    base += ["--skip-finished"] if args.skip_finished else []
    handles: dict[int, tuple[subprocess.Popen, Any]] = {}

    def start(i: int) -> int:
        log_file = logs / f"{labels[i]}.log"
        fh = open(log_file, "w")
        env_i = dict(env, OMP_NUM_THREADS=child_threads(steps[i][0], args.workers, cores, given))
        print(f"[{time.strftime('%H:%M:%S')}] {profile}: {labels[i]} ... (OMP_NUM_THREADS={env_i['OMP_NUM_THREADS']}, "
              f"output in {relative(log_file)})", flush=True)
        handles[i] = (subprocess.Popen(base + ["--only", labels[i], "--no-lock"], cwd=ROOT, env=env_i, stdout=fh,
                                       stderr=subprocess.STDOUT), fh)
        return i

    def poll(i: int) -> int | None:
        proc, fh = handles[i]
        code = proc.poll()
        if code is not None:
            fh.close()
            lines = (logs / f"{labels[i]}.log").read_text(errors="replace").strip().splitlines()
            print(lines[-1] if lines else f"[{time.strftime('%H:%M:%S')}]   {labels[i]}: exit {code}", flush=True)
        return code

    try:
        return run_parallel(labels, dependencies(steps, resolved_parameters), start, args.workers, poll,
                            log=lambda m: print(m, file=sys.stderr))
    finally:  # Ctrl-C or an error here: stop the children (each resumes from its checkpoint next time)
        for proc, fh in handles.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            fh.close()


def run_profile(profile: str, steps: list[Step], *, skip_finished: bool, command: str) -> int:
    for stem, variant, params in steps:
        label = label_of(stem, variant)
        if skip_finished and _skips(profile, stem, variant, params):  # checked when the step's turn comes
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {profile}: {label} ...", flush=True)
        try:
            out = run_step(profile, stem, variant, params, command=command)
        except RunnerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        metrics = json.loads((out / "metrics.json").read_text())
        brief = {k: round(v, 4) for k, v in metrics.items() if k in ("R@5", "R@10", "N@5", "N@10")}
        brief["seconds"] = json.loads((out / "manifest.json").read_text())["wall_seconds"]
        print(f"[{time.strftime('%H:%M:%S')}]   -> {relative(out)} {brief}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        with stop_on_sigterm():
            return _main(argv)
    except KeyboardInterrupt:
        print("stopped (Ctrl-C or SIGTERM): finished runs are kept; the step that was running left no run folder, "
              "and its training checkpoints let `--skip-finished` continue it", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    try:
        profile, steps = select_steps(args)
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"error: --workers {args.workers} must be >= 1", file=sys.stderr)
        return 2
    if args.list:
        for stem, variant, params in steps:
            print(label_of(stem, variant), json.dumps(params))
        return 0
    command = os.environ.get("DIGER_RUNNER_COMMAND", "") if args.no_lock else ""
    command = command or _command(argv)
    if args.no_lock:  # a --workers child: its parent holds the profile's lock
        return run_profile(profile, steps, skip_finished=args.skip_finished, command=command)
    lock = RUNS / profile / LOCK_NAME
    try:
        with profile_lock(lock, command, warn=lambda s: print(s, file=sys.stderr)):
            if args.workers > 1:
                return run_profile_parallel(profile, steps, args, command)
            return run_profile(profile, steps, skip_finished=args.skip_finished, command=command)
    except LockHeld as e:
        print(f"error: profile {profile} is already being run by {e} (lock {relative(lock)}). Two runners on one "
              f"profile would replace each other's runs: wait for that one to finish, or stop it, then run again.",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
