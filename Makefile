# gauntlet: the two commands of the README, and the longer runs.
#   make demo   run the main job on the local backend (installs nginx + Prometheus if missing)
#   make test   run every test (cargo test), installing what the tests need
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo up test deps build e2e chaos fmt lint controlplane fidelity power

# Debian packages the local backend runs: a real nginx and a real Prometheus.
deps:
	@bash .ci/deps

build:
	$(CARGO) build --workspace --bins

# The main job on the local backend: every Argo scenario of suites/argo (a healthy release
# promoted; 500s, latency, a memory leak and a crash loop rolled back; a grey-zone release
# paused), two at a time, each on its own stack, then the summary table.
demo: deps build
	./target/debug/gauntlet run suites/argo --parallel 2

# The stack alone, with the sample app's baseline, until Ctrl-C.
up: deps build
	./target/debug/gauntlet up --backend local --target fixtures/apps/argo

test: deps
	$(CARGO) test --workspace

# The real control plane's binaries (etcd, Kubernetes, Argo Rollouts, Flagger) built with Go ≥ 1.26
# from the pinned modules of fixtures/controlplane into target/controlplane/<key>/bin, cached by
# pin (a second run builds nothing; a cold one takes minutes). Prints the folder, which
# GAUNTLET_CONTROLPLANE_BIN accepts on machines without Go.
controlplane:
	$(CARGO) build -p gauntlet
	./target/debug/gauntlet controlplane build

# The emulation measured against the real controllers: every scenario of suites/fidelity under
# both, side by side (outcome, canary weights, decision time); exit 1 on a difference. Needs
# what the real tier needs (root, Go for the first build). FIDELITY_PARALLEL scenarios at once
# per tier.
FIDELITY_PARALLEL ?= 3
fidelity: deps build
	./target/debug/gauntlet compare suites/fidelity --parallel $(FIDELITY_PARALLEL) --json fidelity.json --artifacts fidelity-artifacts

# Real clusters (needs Docker, kind and network; not runnable on the development machines):
# provision the kind cluster with the pinned controllers, then run the suites on it. The real
# controllers keep the policies' own clock, and each scenario's budget and action times scale
# with it (45 s at timeScale 0.25 is 3 min there): Flagger's one-minute interval makes its
# scenarios 6-13 min each, so they run E2E_PARALLEL at a time, each in its own namespace.
# Downloads still `UNPINNED` in fixtures/kind/manifests.lock (none could be hashed on the
# machines without network where it was written) get their sha256 recorded on this first run;
# every pinned one is verified. Commit the recorded hashes after reviewing them; E2E_PIN=0
# refuses unpinned downloads instead.
E2E_PARALLEL ?= 4
E2E_PIN ?= 1
e2e: build
	GAUNTLET_PIN_DOWNLOADS=$(E2E_PIN) ./target/debug/gauntlet up --backend kind
	@git diff --quiet -- fixtures/kind/manifests.lock 2>/dev/null || \
	  echo "note: sha256 recorded in fixtures/kind/manifests.lock for downloads that were UNPINNED; review (git diff) and commit"
	./target/debug/gauntlet run --backend kind suites --parallel $(E2E_PARALLEL) --json e2e.json --junit e2e.xml

# The policy's operating characteristic (docs/power.md) on the default grid, 200 runs per
# point: a release build, since the simulation is CPU-bound and a debug build spends about five
# times the CPU. POWER_TARGET another target, POWER_ARGS more flags (e.g. --html power.html).
POWER_TARGET ?= fixtures/apps/argo
POWER_ARGS ?=
power: deps
	$(CARGO) build --release -p gauntlet
	./target/release/gauntlet power $(POWER_TARGET) $(POWER_ARGS)

chaos: deps
	$(CARGO) test -p gauntlet --test suites -- --ignored

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
