"""A scan on a separate Ray cluster (inspect_core/cluster/engine.py ``connected``): a Ray head started here on
127.0.0.1 by ``ray start`` (its own temp dir, token authentication on, as ``ray start`` sets by default; 2 worker
CPUs; no inspect_core on its workers' path), then ``--cluster ray://127.0.0.1:PORT`` (Ray Client) and ``--cluster
auto`` with ``RAY_ADDRESS`` give the local scan's rows, findings and pairs on sample_data; the workers import the
inspect_core the driver uploads (``engine.runtime_env``); a wrong address is a one-line error naming it.

Each scan runs in a subprocess: in this one a test may already have joined a local Ray, which ``connected`` would
reuse."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from cluster_support import REPO

import inspect_core
from inspect_core.scanner import load_scan

SAMPLE = REPO / "sample_data"
# one scan on the cluster, printed as JSON: where the workers import inspect_core from, and the summary. Ray gives
# its workers the driver's sys.path (a single machine's shortcut): the checkout leaves it once inspect_core is
# imported, so the workers can only import the package the driver uploads, as on a cluster of other machines.
SCAN = """
import json, sys
from pathlib import Path
import inspect_core
from inspect_core.cluster import engine
root, ws, spec, repo = sys.argv[1:5]
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(repo)]
with engine.connected(spec) as ray:
    where = ray.get(ray.remote(lambda: __import__("inspect_core").__file__).remote())
    r = inspect_core.scan(root, workspace=ws, cluster=spec)
print(json.dumps({"where": where, "workspace": str(r.workspace), "summary": r.summary}, default=str))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(temp_dir: Path) -> list[int]:
    """The head's processes (their command line names its temp dir) and every process they started."""
    parent, marked = {}, set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if str(temp_dir).encode() in (d / "cmdline").read_bytes():
                marked.add(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    found, grew = set(marked), True
    while grew:
        more = {p for p, pp in parent.items() if pp in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def _stop(pids: list[int], timeout_s: float = 20.0) -> None:
    """The head's processes only (never ``ray stop``: it stops every Ray on the machine)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    pytest.importorskip("ray")
    pytest.importorskip("grpc")             # Ray Client (ray[client], requirements-cluster.txt)
    temp_dir = tmp_path_factory.mktemp("head")
    gcs_port, client_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               # the head starts a server per Ray Client and waits 30 s for it by default: too short on a loaded box
               RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S="90")
    ray_cli = Path(sys.executable).parent / "ray"
    proc = subprocess.run([str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
                           "--ray-client-server-port", str(client_port), "--num-cpus", "2",
                           "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp_dir)],
                          env=env, cwd=temp_dir, capture_output=True, text=True, timeout=300)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield {"env": env, "gcs": f"127.0.0.1:{gcs_port}", "client": f"ray://127.0.0.1:{client_port}",
               "temp_dir": temp_dir}
    finally:
        _stop(_processes_under(temp_dir))


@pytest.fixture(scope="module")
def sample_local(tmp_path_factory):
    return inspect_core.scan(SAMPLE, workspace=tmp_path_factory.mktemp("ws_local"))


# Ray 2.60's own flake, seen once in a fresh-clone CI run: the head's per-client server (``ray.util.client.server
# --mode=specific-server``) never started after its runtime env was set up (its log empty), and the client was told
# "Starting Ray client server failed". A second connection gets a new server; anything else fails at once.
CLIENT_SERVER_FLAKE = "Starting Ray client server failed"


def _scan_on(spec: str, ws: Path, env: dict) -> dict:
    for _attempt in (1, 2):
        proc = subprocess.run([sys.executable, "-c", SCAN, str(SAMPLE), str(ws), spec, str(REPO)], cwd=ws.parent,
                              capture_output=True, text=True, timeout=900, env={**env, "PYTHONPATH": str(REPO)})
        if proc.returncode == 0 or CLIENT_SERVER_FLAKE not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("how", ["client", "auto"])
def test_a_separate_cluster_gives_the_local_scan(ray_head, sample_local, tmp_path, how):
    env = dict(ray_head["env"])
    if how == "auto":
        env["RAY_ADDRESS"] = ray_head["gcs"]
    out = _scan_on(ray_head["client"] if how == "client" else "auto", tmp_path / "ws", env)
    # the workers ran the driver's inspect_core, uploaded by it into the head's temp dir (they have no path to it)
    assert out["where"].startswith(str(ray_head["temp_dir"])), out["where"]
    assert out["where"].endswith("inspect_core/__init__.py"), out["where"]
    summary = out["summary"]
    n = len(sample_local.images)
    assert summary["files_read"] == n and summary["chunks_read_in_driver"] == 0
    steps = summary["global_steps"]
    assert (steps["rows_read_from_partitions"], steps["rows_sent_by_driver"]) == (n, 0)
    on_cluster = load_scan(Path(out["workspace"]))
    pd.testing.assert_frame_equal(sample_local.images, on_cluster.images)
    pd.testing.assert_frame_equal(sample_local.findings, on_cluster.findings)
    pd.testing.assert_frame_equal(sample_local.pairs, on_cluster.pairs)
    assert {"exact_duplicate", "near_duplicate"} <= set(on_cluster.findings["check"])


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    code = "import sys; from inspect_core.cli import main; print(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(REPO)})


def test_auto_with_a_wrong_ray_address_is_a_one_line_error_naming_it(tmp_path, textured):
    root = tmp_path / "ds"
    (root / "cat").mkdir(parents=True)
    textured(0).save(root / "cat" / "0.png")
    closed = f"127.0.0.1:{_free_port()}"
    for address, says in ((closed, f"cannot reach the Ray cluster at {closed} (RAY_ADDRESS, --cluster auto)"),
                          ("nowhere", "RAY_ADDRESS='nowhere' is not HOST:PORT")):
        env = {**os.environ, "RAY_ADDRESS": address}
        proc = _cli(["scan", str(root), "--workspace", str(tmp_path / "ws"), "--cluster", "auto"], env)
        lines = proc.stderr.strip().splitlines()
        assert proc.stdout.strip().splitlines()[-1] == "2", proc.stderr
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert says in lines[0], lines[0]
