#!/usr/bin/env python3
"""Run the Consul client libraries' own test suites against senate and print the results table
(passed/failed/skipped/errors per suite, then the failing test ids): what
tests/integration/clients/test_library_suites.py checks against its floor, for a human.

    .venv/bin/python scripts/client_suites.py                   # py-consul's whole tests/
    .venv/bin/python scripts/client_suites.py -k "kv or session"  # a part of it

The libraries and their sdists come from scripts/test.sh (under .venv/clients/). Each of the
suite's tests gets a fresh `senate agent -dev` on a 127.79.x.y address; the suite's own output
goes to <workdir>/py-consul/py-consul-suite.log. Exit status: 0 when the suite ran, 1 when it
passed fewer than the test's floor, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration" / "clients"))

from suite_runner import run_py_consul, table, unavailable_suites  # noqa: E402
from test_library_suites import PY_CONSUL_FLOOR  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", help="pytest -k expression selecting py-consul's tests")
    parser.add_argument(
        "--workdir", type=Path, help="where logs and reports go (default: a temp dir)"
    )
    parser.add_argument("--timeout", type=float, default=2700.0, help="seconds for the whole suite")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="client-suites-"))
    select = None
    if args.k:
        from clients_support import PY_CONSUL_SDIST

        select = ["-k", args.k, str(PY_CONSUL_SDIST / "tests")]
    print(f"running py-consul 1.8.0's tests/ against senate (log: {workdir / 'py-consul'})")
    result = run_py_consul(workdir / "py-consul", net="127.79", timeout=args.timeout, select=select)
    print(table([result, *unavailable_suites()]))
    if not result.ran:
        return 2
    if not args.k:
        print(
            f"\nfloor (test_library_suites.py): {PY_CONSUL_FLOOR} passed; this run: {result.passed}"
        )
        if result.passed < PY_CONSUL_FLOOR:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
