# The two commands a new machine needs (both idempotent):
#   make quickstart   install what is missing, build, and run the main job on the embedded default
#   make test         install what is missing, build, and run every test plus lints
SHELL := /bin/bash
ENV := source .omnirl.env

# A CI run builds once from cold: incremental caches only cost disk there.
ifdef CI
export CARGO_INCREMENTAL := 0
endif

.PHONY: setup quickstart test build release bench-validate clean

setup:
	@scripts/setup.sh

build: setup
	@$(ENV) && cargo build --workspace

release: setup
	@$(ENV) && cargo build --release -p trainer --bin omnirl

# Main job on the embedded default: SFT then TAURA RL then evaluation of a tiny thinker on the
# generated quickstart data (committed; regenerated only where missing); prints the held-out
# figures before SFT, after SFT and after RL, and writes runs/quickstart[-N]/summary.json.
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
