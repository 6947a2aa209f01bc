"""The real app in headless Chromium: the Au3Ni preset end to end, offline.

Serves app.py with `streamlit run` on localhost, drives Debian's chromium with Playwright, and
checks that the DOS plot and the 3D viewer canvas appear and that no request leaves localhost.
The screenshot is kept under tests/artifacts/ (git-ignored).
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    port = free_port()
    env = dict(os.environ, DOSMATGEN_RUNS=str(tmp_path / "runs.db"))
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                break
        except Exception:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not start: " + proc.stdout.read().decode()[-2000:])
    yield url
    proc.terminate()
    proc.wait(10)


def test_au3ni_preset_generates_and_shows_dos_and_3d(server):
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"])
        page = browser.new_page(viewport={"width": 1400, "height": 6000})

        def watch(req):
            host = urlparse(req.url).hostname
            if req.url.startswith(("http://", "https://", "ws://", "wss://")) and host not in ("127.0.0.1", "localhost"):
                outside.append(req.url)
        page.on("request", watch)
        page.goto(server, wait_until="networkidle")
        page.get_by_role("button", name="Preset: Ni in Au₃Ni (paper)").click()
        page.wait_for_timeout(1500)
        cand = page.get_by_label("Candidates")
        cand.fill("3")
        cand.press("Enter")
        page.wait_for_timeout(800)
        steps = page.get_by_role("slider", name="Steps")
        steps.focus()
        steps.press("Home")            # fewest steps: the test checks the flow, not the quality
        page.wait_for_timeout(800)
        page.get_by_role("button", name="Generate").click()
        try:
            page.get_by_text("6 · Results").wait_for(timeout=240_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "au3ni_preset_timeout.png"), full_page=True)
            raise
        page.wait_for_timeout(3000)
        # a DOS overlay (plotly) in the results and 3Dmol canvases in the viewer frames
        assert page.locator(".js-plotly-plot").count() >= 3
        canvases = sum(f.locator("canvas").count() for f in page.frames if f != page.main_frame)
        assert canvases >= 2
        page.screenshot(path=str(ARTIFACTS / "au3ni_preset.png"), full_page=True)
        browser.close()
    assert outside == [], f"requests left localhost: {outside[:5]}"
