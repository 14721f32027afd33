.PHONY: up test bench lint
up:
	deploy/up.sh
test:
	deploy/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
bench:
	deploy/bench.sh
