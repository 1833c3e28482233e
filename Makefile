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

# Main job on the embedded default. `omnirl train recipes/quickstart.yaml` runs end to end but
# does not learn yet (README, "Status of the quickstart"), so until it does the main job is the
# dry run of the quickstart recipe: every data line, video and the model config checked, the plan
# printed.
quickstart: release
	@python3 scripts/make_quickstart_data.py --out data/quickstart
	@$(ENV) && ./target/release/omnirl validate recipes/quickstart.yaml

test: setup
	@$(ENV) && cargo fmt --all --check
	@$(ENV) && cargo build --workspace --all-targets
	@$(ENV) && cargo test --workspace
	@$(ENV) && cargo clippy --workspace --all-targets -- -D warnings

bench-validate: release
	@scripts/bench_validate.sh

clean:
	cargo clean
