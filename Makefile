# gauntlet: the two commands of the README, and the longer runs.
#   make demo   run the main job on the local backend (installs nginx + Prometheus if missing)
#   make test   run every test (cargo test), installing what the tests need
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test deps build e2e chaos gate fmt lint

# Debian packages the local backend runs: a real nginx and a real Prometheus.
deps:
	@bash .ci/deps

build:
	$(CARGO) build --workspace --bins

# The main job on the local backend: bring the sample app up behind nginx with Prometheus
# scraping it, print where to reach them, and hold until Ctrl-C.
demo: deps build
	./target/debug/gauntlet up --backend local --target fixtures/apps/argo

test: deps
	$(CARGO) test --workspace

# Real clusters (needs Docker, kind and network); not runnable on the development machines.
e2e:
	GAUNTLET_BACKEND=kind $(CARGO) test --workspace --test suites

chaos: deps
	$(CARGO) test --workspace --test suites -- --ignored

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
