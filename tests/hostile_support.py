"""Run one hostile case in a child process under a memory cap, and record every file it opens.

``run_case(code, watch=...)`` runs ``code`` (Python, with ``cli_main`` = inspect_core.cli.main at hand; it sets
``rc``) in a fresh interpreter whose address space is capped by RLIMIT_AS (``MEMORY_CAP_BYTES``), with an audit
hook that records each path opened. The result has the exit code, stdout, stderr and the opened paths, so a test
can check that nothing outside the dataset root (and the workspace and output folders) was opened.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Every case runs under this cap on its address space: 1.5 GiB (the scan forks its workers under it too).
MEMORY_CAP_BYTES = 1536 << 20
TIMEOUT_S = 120
# RLIMIT_AS counts address space reserved, not memory used: glibc reserves 64 MiB per thread arena (pyarrow and
# BLAS threads), which would trip the cap at a few hundred MB actually used. Two arenas, as in a container.
_ENV = {"MALLOC_ARENA_MAX": "2"}

_PRELUDE = """
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
_opened = []
_recording = [True]
def _hook(event, args):
    if not _recording[0]:
        return
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))
    elif event == "sqlite3.connect" and args:
        _opened.append(str(args[0]))
sys.addaudithook(_hook)
from inspect_core.cli import main as cli_main
rc = None
try:
{code}
finally:
    _recording[0] = False
    with open({record!r}, "w") as fh:
        json.dump(_opened, fh)
sys.stdout.flush()
sys.exit(rc if isinstance(rc, int) else 0)
"""


@dataclass
class Case:
    rc: int
    stdout: str
    stderr: str
    opened: list[str]

    def one_line_error(self, rc: int = 2) -> str:
        """The single line on stderr of an input error (exit ``rc``), never a traceback."""
        assert self.rc == rc, (self.rc, self.stdout[-2000:], self.stderr[-2000:])
        assert "Traceback" not in self.stderr and "Traceback" not in self.stdout, self.stderr
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, self.stderr
        return lines[0]

    def opened_outside(self, watch: Path, allowed: list[Path]) -> list[str]:
        """Paths opened under ``watch`` that lie in none of ``allowed`` (resolved)."""
        watch = Path(os.path.realpath(watch))
        ok = [Path(os.path.realpath(a)) for a in allowed]
        bad = []
        for p in self.opened:
            real = Path(os.path.realpath(p if os.path.isabs(p) else REPO / p))
            if (real == watch or watch in real.parents) and not any(real == a or a in real.parents for a in ok):
                bad.append(p)
        return bad


def run_case(code: str, tmp_path: Path, env: dict | None = None, timeout_s: int = TIMEOUT_S) -> Case:
    record = tmp_path / f"opened-{os.getpid()}-{len(list(tmp_path.glob('opened-*')))}.json"
    body = "\n".join("    " + line for line in code.strip().splitlines())
    script = _PRELUDE.format(cap=MEMORY_CAP_BYTES, code=body, record=str(record))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, **_ENV, **(env or {})})
    opened = json.loads(record.read_text()) if record.exists() else []
    return Case(proc.returncode, proc.stdout, proc.stderr, opened)


def run_cli_case(args: list, tmp_path: Path, **kw) -> Case:
    """``python -m inspect_core ARGS`` as a case (``rc = cli_main(ARGS)``)."""
    return run_case(f"rc = cli_main({[str(a) for a in args]!r})", tmp_path, **kw)
