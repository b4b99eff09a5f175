"""`senate validate <file|dir>...`: check agent config files without starting an agent."""

from __future__ import annotations

import sys

from agent.config import ConfigError, load_files

USAGE = """Usage: senate validate [options] FILE_OR_DIRECTORY...

  Performs a basic sanity test on Senate configuration files. For each file
  or directory given, the validate command will attempt to parse the
  contents just as the "senate agent" command would, and catch any errors.
  This is useful to do a test of the configuration only, without actually
  starting the agent.

  Returns 0 if the configuration is valid, or 1 if there are problems.
"""


def run(argv: list[str]) -> int:
    paths = [a for a in argv if not a.startswith("-")]
    if any(a in ("-h", "-help", "--help") for a in argv) or not paths:
        sys.stderr.write(USAGE)
        if not paths and not any(a in ("-h", "-help", "--help") for a in argv):
            sys.stderr.write("\nMust specify at least one config file or directory\n")
        return 1
    try:
        cfg = load_files(paths)  # dns_config too: its DNSConfigError is a ConfigError
    except ConfigError as exc:
        sys.stderr.write(f"Config validation failed: {exc}\n")
        return 1
    for warning in cfg.warnings:  # keys without effect, files not read
        sys.stderr.write(f"==> {warning}\n")
    sys.stdout.write("Configuration is valid!\n")
    return 0
