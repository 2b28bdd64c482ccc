"""What the browser test and bench/screenshots.py share: the app started with ``streamlit run`` on a free port
(workspace in a given XDG_CACHE_HOME), and the waits and clicks that drive it in Debian's chromium.
Every wait is bounded."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 30_000
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """``streamlit run Home.py -- --root ROOT`` in a subprocess; restartable with the same workspace."""

    def __init__(self, cache: Path, root: str = "sample_data"):
        self.cache = Path(cache)
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log = self.cache / "app.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        env = dict(os.environ, XDG_CACHE_HOME=str(self.cache), PYTHONPATH=str(REPO))
        cmd = [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.port", str(self.port),
               "--server.headless", "true", "--server.fileWatcherType", "none", "--", "--root", self.root]
        self._log_fh = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._log_fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"the app did not answer within {START_TIMEOUT_S} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None
        if getattr(self, "_log_fh", None):
            self._log_fh.close()


def wait_idle(page) -> None:
    """Until Streamlit has finished the script run (its running indicator is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=WAIT_MS)
    page.wait_for_timeout(200)


def main_area(page):
    return page.get_by_test_id("stMain")


TILE_IMAGES = "[data-testid='stMain'] .di-grid img"   # the thumbnails of the grid (one element, tile_grid)


def tiles_shown(page, n_tiles: int, exact: bool = False) -> None:
    """Until the grid shows at least (``exact``: exactly) ``n_tiles`` thumbnails, each decoded by the browser."""
    op = "===" if exact else ">="
    page.wait_for_function(
        f"() => {{ const i = [...document.querySelectorAll(\"{TILE_IMAGES}\")]; "
        f"return i.length {op} {n_tiles} && i.every(x => x.complete && x.naturalWidth > 0); }}", timeout=WAIT_MS)


def tile_boxes(page):
    """The grid's tick boxes, in the order of the tiles."""
    return main_area(page).get_by_role("checkbox")


def tile_open_button(page, image_id: str):
    """The Open button of ``image_id``'s tile (its tooltip is the image_id)."""
    import json
    return main_area(page).locator(f".di-grid button[title={json.dumps(image_id)}]")


def open_buttons(page):
    return main_area(page).get_by_role("button", name="Open", exact=True)


def pick_option(page, container, option: str) -> None:
    container.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def viewer(page):
    """The image viewer (a dialog over the page)."""
    return page.get_by_role("dialog")


def close_viewer(page) -> None:
    if viewer(page).count():
        page.keyboard.press("Escape")
        viewer(page).wait_for(state="detached", timeout=WAIT_MS)
        wait_idle(page)


def open_image(page, image_id: str) -> None:
    """Find one image with the gallery's path search and open it in the viewer."""
    close_viewer(page)
    search = page.get_by_test_id("stSidebar").get_by_label("Path contains")
    search.fill(image_id)
    search.press("Enter")
    wait_idle(page)
    main_area(page).get_by_text(re.compile(r"^1 of [\d,]+ images match")).wait_for(timeout=WAIT_MS)
    tile_open_button(page, image_id).click()   # the grid redraws just after the count: wait for its tile
    viewer(page).get_by_text(image_id, exact=True).first.wait_for(timeout=WAIT_MS)
    wait_idle(page)


def require_chromium() -> None:
    """Skip the calling test module, with the reason, where chromium is missing and CI is not set; under CI
    a missing chromium fails."""
    import pytest
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {CHROMIUM} is missing: install Debian's chromium package", pytrace=False)
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser test needs it",
                    allow_module_level=True)
    pytest.importorskip("playwright.sync_api")


def _fixtures():
    import pytest

    @pytest.fixture()
    def app(tmp_path):
        """The app on sample_data, its workspace in the test's own folder."""
        a = App(tmp_path)
        a.start()
        yield a
        a.stop()

    @pytest.fixture()
    def browser():
        """Debian's chromium, headless."""
        from playwright.sync_api import sync_playwright
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=WAIT_MS)
            yield b
            b.close()
    return app, browser


app, browser = _fixtures()   # a test module imports them: ``from browser_support import app, browser``
