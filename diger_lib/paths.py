"""Where things live, and how a path is written down.

Every path the runner records is relative to the repository root (the kernel's working directory), so a clone
anywhere reproduces and compares runs. Artifacts (embeddings, tokenizers, checkpoints) may live outside the
checkout: ``$DIGER_ARTIFACTS`` names their root (default ``<repo>/artifacts``), and a notebook's
``artifacts_dir`` parameter is resolved against it by :func:`artifacts_dir`, so a config records ``""`` or
``"dynamics"``, never a machine's path.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_ENV = "DIGER_ARTIFACTS"


def artifacts_root() -> Path:
    """``$DIGER_ARTIFACTS`` (a relative value is taken from the repository root), else ``<repo>/artifacts``."""
    value = os.environ.get(ARTIFACTS_ENV, "").strip()
    return ROOT / value if value else ROOT / "artifacts"  # ROOT / absolute == absolute


def artifacts_dir(value: str | os.PathLike, profile: str) -> Path:
    """A notebook's ``artifacts_dir`` parameter -> the folder it means.

    ``""`` -> ``<artifacts root>/<profile>``; a relative value such as ``"dynamics"`` -> ``<artifacts root>/dynamics``
    (a profile reusing another profile's tokenizer); an absolute path -> itself.
    """
    value = str(value).strip()
    if not value:
        if not profile or "/" in profile or profile in (".", ".."):
            raise ValueError(f"profile={profile!r} must be a folder name when artifacts_dir is empty")
        return artifacts_root() / profile
    return artifacts_root() / Path(value).expanduser()


def relative(path: str | os.PathLike, root: Path = ROOT) -> str:
    """``path`` relative to the repository root if it lies inside it (POSIX separators), else unchanged."""
    p = Path(path)
    if p.is_absolute():
        for a, b in ((p, root), (p.resolve(), root.resolve())):  # as written first (a symlinked folder stays inside)
            try:
                return a.relative_to(b).as_posix() or "."
            except ValueError:
                pass
        return str(path)
    return p.as_posix()


def display_path(path: str | os.PathLike) -> str:
    """How a path is printed into a notebook's output: relative to the repository root, else under
    ``$DIGER_ARTIFACTS/...``, else ``~/...``; an executed notebook then reads the same on every machine."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    shown = relative(p)
    if shown != str(path):
        return shown
    for base, label in ((artifacts_root(), f"${ARTIFACTS_ENV}"), (Path.home(), "~")):
        try:
            return f"{label}/{p.resolve().relative_to(base.resolve()).as_posix()}"
        except ValueError:
            pass
    return str(path)


def relative_text(text: str) -> str:
    """Free text (a notebook's printed output, a warning naming a file) with the repository root and the artifacts
    root written as :func:`display_path` writes them: ``<repo>/x`` -> ``x``, ``<artifacts root>/x`` ->
    ``$DIGER_ARTIFACTS/x`` (when that root lies outside the repository)."""
    root = str(ROOT.resolve()) + os.sep
    art = str(artifacts_root().resolve()) + os.sep
    if not art.startswith(root):
        text = text.replace(art, f"${ARTIFACTS_ENV}/")
    return text.replace(root, "")


def dataset_artifacts(artifacts_dir: Path | str, dataset: str) -> Path:
    """``<artifacts_dir>/<dataset>`` (created): embeddings (notebook 02), tokenizers (03), runs (04)."""
    d = Path(artifacts_dir) / dataset
    d.mkdir(parents=True, exist_ok=True)
    return d


def rqvae_name(K: int, m: int) -> str:
    """The folder name of a tokenizer of K codes per level and m levels, under ``<artifacts_dir>/<dataset>``."""
    return f"rqvae_K{K}_m{m}"


def rqvae_dir(artifacts_dir: Path | str, dataset: str, K: int, m: int) -> Path:
    """Where notebook 03 saves a tokenizer of K codes per level and m levels (``rqvae.pt``, ``codes.npy``)."""
    return dataset_artifacts(artifacts_dir, dataset) / rqvae_name(K, m)


# The runner executes a step into a hidden staging folder beside its final one and renames it when the step finished;
# its checkpoint run name and `cli progress` read the step's name back from that folder's name.
STAGING_SUFFIX = ".partial"


def staging_dir(final: Path) -> Path:
    """Where the runner executes the step whose finished run goes to ``final``: ``.<name>.partial`` beside it."""
    return final.with_name(f".{final.name}{STAGING_SUFFIX}")


def run_of_folder(name: str) -> str:
    """The run name of a run folder or of its staging folder (``.<name>.partial`` -> ``<name>``)."""
    return name.strip(".").replace(STAGING_SUFFIX, "")
