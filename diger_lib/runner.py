"""Papermill runner: ``python -m diger_lib.runner --profile quick``.

Executes the profile's notebooks in order. Before anything runs, every step's parameters are checked
against the notebook's ``parameters`` cell (an unknown or misspelt name fails the whole batch). Each step
executes into a staging folder and is moved into place only when it finished, so
``papermill_runs/<profile>/<notebook>[__variant]/`` always holds a complete run: the executed notebook,
the flat ``metrics.json`` the notebook wrote, the resolved ``config.json`` and a ``manifest.json``
(commit, versions, device, seed, wall time). A finished run is never replaced by a run with a different
configuration unless ``--force`` is given. Training checkpoints live in ``artifacts/<profile>/`` so an
interrupted run resumes where it stopped when the runner is started again.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .config import ConfigError, reject_unknown
from .profiles import ROOT, steps_for

NOTEBOOKS = ROOT / "notebooks"
RUNS = ROOT / "papermill_runs"
ARTIFACTS = ROOT / "artifacts"  # checkpoints, embeddings, tokenizers (git-ignored)
COMMON = ("out_dir", "artifacts_dir", "figures_dir", "runs_dir", "profile")


class RunnerError(RuntimeError):
    pass


def notebook_path(stem: str) -> Path:
    path = NOTEBOOKS / f"{stem}.ipynb"
    if not path.is_file():
        known = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
        raise RunnerError(f"no notebook {path}; known: {', '.join(known)}")
    return path


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    import papermill as pm

    params = pm.inspect_notebook(str(path))
    if not params:
        raise RunnerError(f"{path} has no cell tagged 'parameters'")
    return params


def check_parameters(stem: str, params: dict[str, Any]) -> None:
    try:
        reject_unknown(params, list(notebook_parameters(notebook_path(stem))), where=f"notebook {stem}")
    except ConfigError as e:
        raise RunnerError(str(e)) from None


def resolved_parameters(stem: str, params: dict[str, Any]) -> dict[str, Any]:
    """The notebook's defaults overridden by ``params``: every value the run used."""
    import ast

    out = {}
    for name, p in notebook_parameters(notebook_path(stem)).items():
        try:
            out[name] = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            out[name] = p["default"]
    out.update(params)
    return out


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


def hardware() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "numpy", "pandas", "papermill", "sentence-transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run_step(profile: str, stem: str, variant: str, params: dict[str, Any], *, force: bool,
             runs_root: Path | None = None, artifacts_root: Path | None = None) -> Path:
    import papermill as pm

    runs_root = Path(runs_root or RUNS)
    artifacts_root = Path(artifacts_root or ARTIFACTS)
    name = f"{stem}__{variant}" if variant else stem
    final = runs_root / profile / name
    full = dict(params)
    full.setdefault("profile", profile)
    full.setdefault("runs_dir", str(runs_root / profile))
    full.setdefault("artifacts_dir", str(artifacts_root / profile))
    full.setdefault("figures_dir", str(ROOT / "figures") if profile != "smoke" else str(runs_root / profile / "figures"))
    config_view = {k: v for k, v in resolved_parameters(stem, full).items() if k not in ("out_dir",)}
    old_manifest = final / "manifest.json"
    if old_manifest.exists() and not force:
        old = json.loads((final / "config.json").read_text()) if (final / "config.json").exists() else None
        old = None if old is None else json.loads(json.dumps(resolved_parameters(stem, old)))
        if old is not None and old != json.loads(json.dumps(config_view)):
            raise RunnerError(f"{final} holds a finished run with a different configuration; refusing to overwrite "
                              f"it. Pass --force to replace it (or use another profile).")
    staging = final.with_name(f".{name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    full["out_dir"] = str(staging)
    env_before = os.environ.get("DIGER_PROGRESS")
    os.environ["DIGER_PROGRESS"] = env_before or "plain"
    commit = git_commit()  # the code that runs, read before it runs
    t0 = time.time()
    try:
        pm.execute_notebook(str(notebook_path(stem)), str(staging / f"{stem}.ipynb"), parameters=full,
                            cwd=str(ROOT), kernel_name="python3", progress_bar=False, log_output=False)
    except Exception as e:
        failed = final.with_name(f".{name}.FAILED")
        shutil.rmtree(failed, ignore_errors=True)
        staging.rename(failed)
        raise RunnerError(f"notebook {stem} ({name}) failed; the executed notebook with the error is in {failed}. "
                          f"Cause: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}") from None
    finally:
        if env_before is None:
            os.environ.pop("DIGER_PROGRESS", None)
    seconds = time.time() - t0
    if not (staging / "metrics.json").exists():
        raise RunnerError(f"notebook {stem} finished without writing metrics.json in {staging}")
    (staging / "config.json").write_text(json.dumps(config_view, indent=2, sort_keys=True) + "\n")
    manifest = {"notebook": stem, "variant": variant, "profile": profile, "commit": commit,
                "versions": versions(), "hardware": hardware(), "seed": config_view.get("seed"),
                "wall_seconds": round(seconds, 1), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": f"python -m diger_lib.runner --profile {profile}"}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if final.exists():
        trash = final.with_name(f".{name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        final.rename(trash)
        staging.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(final)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m diger_lib.runner", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True, help="smoke | quick | dynamics | paper")
    ap.add_argument("--only", default="", help="comma-separated step names (e.g. 04_train_recommender__two_stage)")
    ap.add_argument("--force", action="store_true", help="replace finished runs whose configuration differs")
    ap.add_argument("--list", action="store_true", help="print the steps and exit")
    args = ap.parse_args(argv)
    try:
        steps = steps_for(args.profile)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    if args.only:
        wanted = set(args.only.split(","))
        steps = [s for s in steps if (f"{s[0]}__{s[1]}" if s[1] else s[0]) in wanted]
        if not steps:
            print(f"error: --only {args.only} matches no step of profile {args.profile}", file=sys.stderr)
            return 2
    try:
        for stem, _, params in steps:  # validate everything before anything executes
            check_parameters(stem, params)
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for stem, variant, params in steps:
        label = f"{stem}__{variant}" if variant else stem
        if args.list:
            print(label, json.dumps(params))
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {args.profile}: {label} ...", flush=True)
        try:
            out = run_step(args.profile, stem, variant, params, force=args.force)
        except RunnerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        metrics = json.loads((out / "metrics.json").read_text())
        brief = {k: round(v, 4) for k, v in metrics.items() if k in ("R@5", "R@10", "N@5", "N@10")}
        brief["seconds"] = json.loads((out / "manifest.json").read_text())["wall_seconds"]
        print(f"[{time.strftime('%H:%M:%S')}]   -> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} {brief}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
