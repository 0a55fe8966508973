"""The pins: requirements.txt, environment.yml and constraints.txt agree, and the environment the tests run in is the
pinned one (a package installed at another version than constraints.txt names fails here, by name)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines: list[str], where: str) -> dict[str, str]:
    """Name -> version of ``NAME==VERSION`` lines; any other requirement line is an error naming it."""
    out: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("-c "):
            continue
        m = PIN.match(line)
        assert m, f"{where}: {line!r} is not pinned as NAME==VERSION"
        assert _norm(m[1]) not in out, f"{where}: {m[1]} is listed twice"
        out[_norm(m[1])] = m[2]
    return out


def _requirements() -> dict[str, str]:
    return _pins((ROOT / "requirements.txt").read_text().splitlines(), "requirements.txt")


def _constraints() -> dict[str, str]:
    return _pins((ROOT / "constraints.txt").read_text().splitlines(), "constraints.txt")


def test_environment_yml_mirrors_requirements():
    text = (ROOT / "environment.yml").read_text()
    pip_block = text.split("  - pip:\n", 1)[1]
    lines = [ln.strip()[2:] for ln in pip_block.splitlines() if ln.strip().startswith("- ")]
    assert "-c constraints.txt" in lines, "environment.yml's pip list does not apply constraints.txt"
    assert _pins(lines, "environment.yml") == _requirements()


def test_constraints_pin_every_requirement_at_its_version():
    constraints = _constraints()
    for name, version in _requirements().items():
        assert constraints.get(name) == version, f"constraints.txt has {name}=={constraints.get(name)}, " \
                                                 f"requirements.txt {name}=={version}: run make constraints"


def test_installed_packages_are_the_pinned_ones():
    wrong = {}
    for name, version in _constraints().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (version, "not installed")
            continue
        if have.split("+")[0] != version:  # torch 2.13.0+cpu satisfies torch==2.13.0
            wrong[name] = (version, have)
    assert not wrong, f"installed versions differ from constraints.txt (pinned, installed): {wrong}; run make setup"
