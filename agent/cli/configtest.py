"""`senate configtest`: Consul 0.7's spelling of `validate`, with its -config-file / -config-dir
flags turned into the paths `senate validate` takes."""

from __future__ import annotations

import sys


def run(argv: list[str]) -> int:
    from agent.cli import validate

    paths: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in ("config-file", "config-dir"):
            if not eq:
                if i + 1 >= len(argv):
                    sys.stderr.write(f"flag needs an argument: -{name}\n")
                    return 1
                value = argv[i + 1]
                i += 1
            paths.append(value)
        elif arg in ("-h", "-help", "--help"):
            validate.run(["--help"])
            return 0
        else:
            sys.stderr.write(f"flag provided but not defined: {arg}\n")
            return 1
        i += 1
    return validate.run(paths)
