"""Where the web app's files are, and the command that opens it (``dataset-inspector app ROOT``).

In a checkout or an editable install, ``Home.py``, ``pages/`` and ``.streamlit/config.toml`` lie beside the
package; an installed wheel ships them inside it, under ``inspect_core/app/`` (pyproject.toml). Streamlit is not
imported here: the app runs in its own process, ``python -m streamlit run``, exactly as ``make app`` runs it.
"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

HOME_PAGE = "Home.py"
CONFIG_FILE = Path(".streamlit") / "config.toml"


def app_dir() -> Path:
    """The folder holding Home.py and pages/: inside the installed package, else the checkout beside it."""
    here = Path(__file__).resolve().parent
    for d in (here / "app", here.parent):
        if (d / HOME_PAGE).is_file() and (d / "pages").is_dir():
            return d
    return here.parent


def config_flags(config_file: Path) -> list[str]:
    """The app's Streamlit settings (.streamlit/config.toml) as ``--section.option=value`` flags, so that they hold
    whatever folder the command is started from (Streamlit reads that file only from the working folder)."""
    if not config_file.is_file():
        return []
    flags = []
    for section, options in tomllib.loads(config_file.read_text()).items():
        for name, value in options.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags.append(f"--{section}.{name}={text}")
    return flags


def streamlit_command(root: str | None, fmt: str | None = None, port: int | None = None,
                      address: str | None = None) -> list[str]:
    """The argv that opens the app on ``root`` (``make app``'s ``streamlit run Home.py -- --root ROOT``)."""
    d = app_dir()
    home = d / HOME_PAGE
    if not home.is_file():
        raise FileNotFoundError(f"the web app's {HOME_PAGE} is not in {d}; reinstall dataset-inspector")
    argv = [sys.executable, "-m", "streamlit", "run", str(home), *config_flags(d / CONFIG_FILE)]
    if port is not None:
        argv.append(f"--server.port={int(port)}")
    if address is not None:
        argv.append(f"--server.address={address}")
    script = []
    if root is not None:
        script += ["--root", str(root)]
    if fmt is not None:
        script += ["--format", fmt]
    return argv + (["--", *script] if script else [])
