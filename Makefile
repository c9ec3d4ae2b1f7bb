# Thin entry points; each target calls the script of the same name in scripts/.
.PHONY: install serve test check docs lock test-latest test-wheel bench

install:
	./scripts/install

serve:
	./scripts/serve

test:
	./scripts/test

check:
	./scripts/check

docs:
	./scripts/docs

lock:
	./scripts/lock

test-latest:
	./scripts/test-latest

test-wheel:
	./scripts/test-wheel

bench:
	./scripts/bench
