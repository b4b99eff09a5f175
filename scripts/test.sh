#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it.
# System packages (openssh-server, iproute2) are installed when missing and we are root;
# the e2e tests skip themselves, saying why, where they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v strip >/dev/null 2>&1 || need+=(binutils)  # the artifact build strips debug info
command -v gcc >/dev/null 2>&1 || need+=(gcc)  # the strip test builds a shared object
command -v sudo >/dev/null 2>&1 || need+=(sudo)  # e2e: provision as a non-root SSH user
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,provision]'

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/pytest -q "$@"
