.PHONY: up down test lint bench
up:
	python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/provision up inventories/local.yml
down:
	.venv/bin/provision down inventories/local.yml
test:
	./scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
bench:
	for b in bench/*.py; do .venv/bin/python $$b || exit 1; done
