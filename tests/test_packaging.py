"""The package: pyproject.toml lists every package of inspect_core and reads its pins from the requirements files,
the console command's scan leaves torch and Streamlit unimported, and CI's planted-rows check finds what it must."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_is_listed_and_the_app_files_ship_inside():
    tool = PYPROJECT["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "inspect_core").rglob("__init__.py")}
    assert set(tool["packages"]) - {"inspect_core.app", "inspect_core.app.pages"} == on_disk
    assert tool["package-dir"] == {"inspect_core.app": ".", "inspect_core.app.pages": "pages"}
    assert (REPO / "Home.py").is_file() and (REPO / ".streamlit" / "config.toml").is_file()
    assert PYPROJECT["project"]["scripts"] == {"dataset-inspector": "inspect_core.cli:main"}


def test_pins_come_from_the_requirements_files_which_hold_only_pins():
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    files = [*dynamic["dependencies"]["file"], *(f for extra in dynamic["optional-dependencies"].values()
                                                   for f in extra["file"])]
    assert files == ["requirements.txt", "tests/requirements.txt", "bench/requirements.txt", "requirements-cluster.txt"]
    for name in files:
        lines = [ln.strip() for ln in (REPO / name).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert lines and all("==" in ln and not ln.startswith("-") for ln in lines), name
    assert "torch==2.13.0" in (REPO / "requirements.txt").read_text().split()


def test_scan_command_imports_neither_torch_nor_streamlit(tmp_path, textured):
    root = tmp_path / "ds"
    for k in range(3):
        (root / "cat").mkdir(parents=True, exist_ok=True)
        textured(k).save(root / "cat" / f"{k}.png")
    code = ("import sys; from inspect_core.cli import main; rc = main(['scan', sys.argv[1], '--out', sys.argv[2]]); "
            "print(rc, 'torch' in sys.modules, 'streamlit' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(root), str(tmp_path / "out")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "0 False False", proc.stderr
    assert (tmp_path / "out" / "findings.csv").is_file()


def _check_planted():
    spec = importlib.util.spec_from_file_location("check_planted", REPO / ".ci" / "check_planted.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_planted_check_names_what_was_missed(tmp_path):
    cp = _check_planted()
    planted = [{"image_id": "a.jpg", "check": "dark"}, {"image_id": "b.jpg", "check": "mislabeled"},
               {"image_id": "c.jpg", "check": "truncated"}]
    findings = [{"image_id": "a.jpg", "check": "dark"}, {"image_id": "c.jpg", "check": "unreadable"}]
    assert cp.missed_rows(planted, findings, [{"image_id": "b.jpg"}]) == [("c.jpg", "truncated")]
    assert cp.missed_rows(planted, findings + [{"image_id": "c.jpg", "check": "truncated"}], []) == \
        [("b.jpg", "mislabeled")]
    for name, text in (("p.csv", "image_id,check\na.jpg,dark\n"), ("f.csv", "image_id,check\na.jpg,dark\n"),
                       ("l.csv", "image_id\n")):
        (tmp_path / name).write_text(text)
    assert cp.main([str(tmp_path / n) for n in ("p.csv", "f.csv", "l.csv")]) == 0
    assert cp.main([str(tmp_path / "p.csv"), str(tmp_path / "nope.csv"), str(tmp_path / "l.csv")]) == 2
    # further tables (the detection triage's errors) count as findings
    (tmp_path / "p2.csv").write_text("image_id,check\na.jpg,dark\nd.jpg,missing_box\n")
    (tmp_path / "d.csv").write_text("rank,image_id,check\n1,d.jpg,missing_box\n")
    assert cp.main([str(tmp_path / n) for n in ("p2.csv", "f.csv", "l.csv")]) == 1
    assert cp.main([str(tmp_path / n) for n in ("p2.csv", "f.csv", "l.csv", "d.csv")]) == 0


def test_every_test_marked_slow_still_exists():
    import ast
    spec = importlib.util.spec_from_file_location("tests_conftest", REPO / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    names: dict[str, set[str]] = {}
    for nodeid in conftest.SLOW_TESTS:
        path, _, name = nodeid.partition("::")
        if path not in names:
            tree = ast.parse((REPO / "tests" / path).read_text())
            names[path] = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in names[path], f"conftest.SLOW_TESTS names {nodeid}, which no longer exists"


def test_no_module_of_the_library_is_over_600_lines():
    """Issue 11: a module that grows past ~600 lines is split along its seams (the model wing, the loaders)."""
    long = {str(p.relative_to(REPO)): n for p in sorted(REPO.glob("inspect_core/**/*.py"))
            if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def test_make_test_installs_chromium_or_says_why_and_fails_only_under_ci(tmp_path):
    """`make test` and `.ci/run` call .ci/ensure_chromium.sh (no browser installed by hand): with chromium there it
    does nothing; where it cannot install it (here: no apt-get on the PATH) it names the file and what to install,
    and fails only when CI is set (the browser tests would be skipped otherwise, with that reason)."""
    import subprocess
    repo = Path(__file__).resolve().parents[1]
    script = repo / ".ci" / "ensure_chromium.sh"
    assert "bash .ci/ensure_chromium.sh" in (repo / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n")[0]
    assert "bash .ci/ensure_chromium.sh" in (repo / ".ci" / "run").read_text()
    present = tmp_path / "chromium"
    present.write_text("#!/bin/sh\n")
    present.chmod(0o755)
    bin_dir = tmp_path / "bin"                      # a PATH with the shell's tools but no apt-get
    bin_dir.mkdir()
    for tool in ("id", "sudo", "true", "env"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)

    def run(chromium: Path, ci: bool):
        env = {"PATH": str(bin_dir), "DI_CHROMIUM_PATH": str(chromium), **({"CI": "true"} if ci else {})}
        return subprocess.run(["/bin/bash", str(script)], capture_output=True, text=True, env=env)

    assert run(present, ci=True).returncode == 0
    missing = tmp_path / "nowhere" / "chromium"
    quiet, strict = run(missing, ci=False), run(missing, ci=True)
    assert quiet.returncode == 0 and strict.returncode == 1
    assert str(missing) in strict.stderr and "apt-get is not on this machine" in strict.stderr
