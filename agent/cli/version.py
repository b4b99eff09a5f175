"""`senate version`: the version and the protocol range this build speaks."""

from __future__ import annotations

import sys


def run(argv: list[str]) -> int:
    from agent.cli import version_text

    if argv and argv[0] in ("-h", "-help", "--help"):
        sys.stdout.write("Usage: senate version\n\n  Prints the Senate version.\n")
        return 0
    sys.stdout.write(version_text())
    return 0
