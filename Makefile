# The two commands a new machine needs (both idempotent):
#   make quickstart   install what is missing, build, and run the main job on the embedded default
#   make test         install what is missing, build, and run every test plus lints
SHELL := /bin/bash
ENV := source .omnirl.env

.PHONY: setup quickstart test build release bench-validate clean

setup:
	@scripts/setup.sh

build: setup
	@$(ENV) && cargo build --workspace

release: setup
	@$(ENV) && cargo build --release -p trainer --bin omnirl

# Main job on the embedded default: `omnirl train` validates the quickstart recipe, then runs
# SFT on expert trajectories, TAURA RL and the held-out evaluation, and prints the figures.
quickstart: release
	@python3 scripts/make_quickstart_data.py --out data/quickstart
	@$(ENV) && ./target/release/omnirl train recipes/quickstart.yaml

test: setup
	@$(ENV) && cargo fmt --all --check
	@$(ENV) && cargo build --workspace --all-targets
	@$(ENV) && cargo test --workspace
	@$(ENV) && cargo clippy --workspace --all-targets -- -D warnings

bench-validate: release
	@scripts/bench_validate.sh

clean:
	cargo clean
