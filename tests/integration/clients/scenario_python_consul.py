"""python-consul 1.1.0 as its users call it, against a running agent.

    PYTHONPATH=.venv/clients/python-consul python scenario_python_consul.py HOST:PORT NODE GROUP...

Exits 0 when every named group passed, 1 with the failing assertion otherwise (see
scenario_common.py for the groups, shared with py-consul, whose API this library began)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import consul  # type: ignore[import-not-found]
from scenario_common import COMMON, main

LIB = "python-consul"

if __name__ == "__main__":
    assert Path(consul.__file__).parent.parent.name == LIB, f"wrong consul: {consul.__file__}"
    sys.exit(main(consul, LIB, dict(COMMON), sys.argv))
