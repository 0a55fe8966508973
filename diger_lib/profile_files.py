"""A researcher's own batch as a profile file: TOML with a ``name``, optional shared ``[params]`` and one ``[[step]]``
per notebook run, checked as strictly as the built-in profiles (``profiles.py``): unknown keys and notebooks are named,
with a "did you mean"."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, NamedTuple

from .paths import ROOT
from .profiles import PROFILES, Step

NOTEBOOKS = ROOT / "notebooks"


class ProfileFileError(ValueError):
    """A profile file is malformed: unknown key, unknown notebook, wrong type."""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ProfileFileError("profile files need Python 3.11+ (tomllib) or `pip install tomli`") from None
    try:
        return tomllib.loads(path.read_text())
    except OSError as e:
        raise ProfileFileError(f"cannot read profile file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileFileError(f"{path} is not valid TOML: {e}") from None


def _hint(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown_keys(table: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ProfileFileError(f"unknown key {key!r} in {where}{_hint(key, allowed)} Allowed: {', '.join(allowed)}")


class ProfileFile(NamedTuple):
    name: str
    steps: list[Step]
    defaults: dict[str, Any]  # the file's top-level [params]: for every step whose notebook declares the key


def _check_values(params: Any, where: str) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ProfileFileError(f"{where}: `params` must be a table")
    for key, value in params.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ProfileFileError(f"{where}: {key} = {value!r} must be a string, number or boolean")
    return dict(params)


def load_profile_file(path: str | Path) -> ProfileFile:
    """A TOML profile: ``name = "..."``, optional ``[params]`` shared by the steps, and one ``[[step]]`` per step
    (``notebook``, optional ``variant``, optional ``params``). Parameter names are checked by the runner against
    each notebook, as for built-in profiles."""
    path = Path(path)
    doc = _read_toml(path)
    _unknown_keys(doc, ("name", "description", "params", "step"), str(path))
    name = doc.get("name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ProfileFileError(f"{path}: `name` must be a folder name (the runs go to papermill_runs/<name>/)")
    if name in PROFILES:
        raise ProfileFileError(f"{path}: name {name!r} is a built-in profile; choose another name")
    entries = doc.get("step")
    if not isinstance(entries, list) or not entries:
        raise ProfileFileError(f"{path}: no steps; add one [[step]] table per notebook run")
    known = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    steps, labels = [], set()
    for i, entry in enumerate(entries, 1):
        where = f"{path} step {i}"
        _unknown_keys(entry, ("notebook", "variant", "params"), where)
        stem, variant = entry.get("notebook"), entry.get("variant", "")
        if stem not in known:
            raise ProfileFileError(f"{where}: unknown notebook {stem!r}{_hint(str(stem), known)} Known: {', '.join(known)}")
        if not isinstance(variant, str) or "/" in variant or variant.startswith("."):
            raise ProfileFileError(f"{where}: `variant` must be a plain string (part of a folder name)")
        label = f"{stem}__{variant}" if variant else stem
        if label in labels:
            raise ProfileFileError(f"{where}: {label} appears twice; give one of them another `variant`")
        labels.add(label)
        steps.append((stem, variant, _check_values(entry.get("params", {}), where)))
    return ProfileFile(name, steps, _check_values(doc.get("params", {}), f"{path} [params]"))
