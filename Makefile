.PHONY: up down upgrade test bench lint
up:
	deploy/up.sh
down:
	deploy/down.sh
upgrade:
	deploy/upgrade.sh
test:
	deploy/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
bench:
	deploy/bench.sh
