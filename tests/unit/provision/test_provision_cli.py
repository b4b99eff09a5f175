"""The `provision` entry point on a machine without the controller's extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_without_the_provision_extra_the_command_says_what_to_install() -> None:
    """An agent host has senate without the controller's packages: `provision` explains
    itself instead of a traceback."""
    code = (
        "import sys; sys.modules['rich'] = None; sys.modules['fabric'] = None\n"
        "from provision.cli import main\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 2, out
    assert "pip install 'senate[provision]'" in out.stderr
    assert "Traceback" not in out.stderr
