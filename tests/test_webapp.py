"""The web app opened by the console command: `dataset-inspector app ROOT` is the app `make app` opens (Home.py and
pages/ found beside the package or inside it, the .streamlit settings passed along) and answers on its health URL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from inspect_core import webapp

REPO = Path(__file__).resolve().parents[1]


def test_app_dir_is_the_checkout_with_home_and_pages():
    d = webapp.app_dir()
    assert d == REPO
    assert (d / "Home.py").is_file() and sorted(p.name for p in (d / "pages").glob("*.py"))[0] == "1_Gallery.py"


def test_app_dir_prefers_the_copy_shipped_inside_the_package(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "inspect_core"
    (pkg / "app" / "pages").mkdir(parents=True)
    (pkg / "app" / "Home.py").write_text("")
    monkeypatch.setattr(webapp, "__file__", str(pkg / "webapp.py"))
    assert webapp.app_dir() == pkg / "app"


def test_command_runs_home_with_the_app_settings_and_the_root(tmp_path):
    argv = webapp.streamlit_command("data/x", "coco", port=8600, address="0.0.0.0")
    assert argv[:5] == [sys.executable, "-m", "streamlit", "run", str(REPO / "Home.py")]
    # every setting of .streamlit/config.toml travels as a flag (Streamlit reads that file only from the cwd)
    assert "--server.address=127.0.0.1" in argv and "--server.fileWatcherType=none" in argv
    assert "--client.showErrorDetails=none" in argv and "--server.headless=true" in argv
    # options given on the command line come after (and so win over) the file's
    assert argv.index("--server.address=0.0.0.0") > argv.index("--server.address=127.0.0.1")
    assert "--server.port=8600" in argv
    assert argv[argv.index("--"):] == ["--", "--root", "data/x", "--format", "coco"]


def test_config_flags_of_a_missing_file_are_none(tmp_path):
    assert webapp.config_flags(tmp_path / "nothing.toml") == []


def test_app_on_a_missing_folder_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "inspect_core", "app", str(tmp_path / "nope")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"inspect_core app: error: no dataset folder {tmp_path / 'nope'}; "
                                                "give the folder that holds the images"]


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_command_answers_on_the_health_url(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "inspect_core", "app", str(REPO / "sample_data"), "--port",
                             str(port)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True)
    try:
        body, deadline = None, time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        assert body == b"ok", f"no health answer; exit {proc.poll()}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
