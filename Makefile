# Thin entry points; each target calls the script of the same name in scripts/.
.PHONY: install serve test check bench

install:
	./scripts/install

serve:
	./scripts/serve

test:
	./scripts/test

check:
	./scripts/check

bench:
	./scripts/bench
