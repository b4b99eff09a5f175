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
# e2e: Patroni (PostgreSQL HA) with senate as its DCS (tests/e2e/test_patroni.py). Patroni's
# Depends are "python3-etcd | python3-consul | ...", so python3-consul is checked on its own (in
# /usr/bin/python3, the interpreter of /usr/bin/patroni, not whichever python3 is on PATH).
[ -x /usr/bin/patroni ] || need+=(patroni)
/usr/bin/python3 -c 'import consul' >/dev/null 2>&1 || need+=(python3-consul)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
# integration: Prometheus scrapes a senate datacenter (tests/integration/test_prometheus.py)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
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

# Real Consul client libraries for tests/integration/clients, each in its own dir under .venv/
# (never committed). Both Python libraries are the package `consul`, so each gets a --target
# dir of its own; their sdists carry the libraries' own test suites. Installed only when missing.
clients=.venv/clients
pip_target() {  # dir, requirement, dist-info dir that shows it is there
    if [ ! -d "$clients/$1/$3" ]; then
        echo "==> installing $2 into $clients/$1"
        rm -rf "$clients/$1"
        .venv/bin/pip install -q --disable-pip-version-check --target "$clients/$1" "$2"
    fi
}
pip_target python-consul python-consul==1.1.0 python_consul-1.1.0.dist-info
pip_target py-consul py-consul==1.8.0 py_consul-1.8.0.dist-info
NODE_CONSUL=2.0.1  # node-consul, the npm package `consul`: its current 2.x release
if command -v npm >/dev/null 2>&1 \
    && ! grep -qs "\"version\": \"$NODE_CONSUL\"" "$clients/npm/node_modules/consul/package.json"; then
    echo "==> installing consul@$NODE_CONSUL (npm) into $clients/npm"
    mkdir -p "$clients/npm"
    npm install --silent --no-audit --no-fund --prefix "$clients/npm" "consul@$NODE_CONSUL" >/dev/null
fi
if [ ! -d "$clients/src/py_consul-1.8.0/tests" ] || [ ! -d "$clients/src/python-consul-1.1.0" ]; then
    echo "==> fetching the sdists of py-consul 1.8.0 and python-consul 1.1.0 (their test suites)"
    mkdir -p "$clients/src"
    .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
        py-consul==1.8.0 python-consul==1.1.0 -d "$clients/src"
    for sdist in "$clients"/src/py_consul-1.8.0.tar.gz "$clients"/src/python-consul-1.1.0.tar.gz; do
        tar -xzf "$sdist" -C "$clients/src"
    done
fi
# npm's tarball of consul@$NODE_CONSUL has no test/ dir (only lib/), so there is no node-consul
# suite to run; its scenario (tests/integration/clients/scenario_npm_consul.js) still runs.

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/pytest -q "$@"
