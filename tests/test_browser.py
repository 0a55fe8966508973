"""Every notebook opens in JupyterLab in a real headless browser, renders, and shows its parameters cell.

Needs Debian's ``chromium`` (``apt-get install chromium``) and playwright (``pip install -r
requirements-browser.txt``; it drives the system browser, nothing is downloaded). Skipped when either is
missing. ``make test-browser`` runs it; set ``DIGER_SCREENSHOT=docs/notebook04_jupyterlab.png`` to keep the
screenshot of notebook 04.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-browser.txt")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("jupyter")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                             f"--ServerApp.token={token}", f"--ServerApp.root_dir={ROOT}",
                             "--LabApp.news_url=", "--allow-root"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("jupyter lab did not start within 90 s")
    yield base, token
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _first_parameter(path: Path) -> str:
    book = nbformat.read(path, as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    return next(line for line in cell.source.splitlines() if line.strip() and not line.startswith("#"))


def test_every_notebook_renders_with_its_parameters_visible(lab, tmp_path):
    base, token = lab
    shot = os.environ.get("DIGER_SCREENSHOT")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path in NOTEBOOKS:
            page.goto(f"{base}/lab/tree/notebooks/{path.name}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel:visible .jp-Cell", timeout=60_000)
            line = _first_parameter(path)
            name = line.split(":")[0]
            cell = page.locator(".jp-NotebookPanel:visible .jp-CodeCell").filter(has_text=f"{name}:").first
            cell.wait_for(state="visible", timeout=30_000)
            assert cell.is_visible(), f"{path.name}: parameters cell not visible"
            assert name in cell.inner_text(), f"{path.name}: parameter {name!r} not rendered"
            md = page.locator(".jp-NotebookPanel:visible .jp-MarkdownCell").first
            assert md.is_visible(), f"{path.name}: no rendered Markdown"
            if path.stem.startswith("04"):
                out = Path(shot) if shot else tmp_path / "notebook04.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
                assert out.stat().st_size > 10_000
        browser.close()
