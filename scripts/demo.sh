#!/usr/bin/env bash
# `make demo`: the whole pipeline on the bundled example, on this machine's CPU.
#   1. a tiny random Llama base model (examples/local/tiny-model), made once, its tokenizer
#      learned from the example's data;
#   2. `mtm run examples/local/model.yaml`: prepare -> stage 1 -> stage 2 -> baselines ->
#      evaluate -> export -> report, in workspace/ (a rerun resumes; `--fresh` starts over).
set -euo pipefail
cd "$(dirname "$0")/.."
MTM=.venv/bin/mtm
MODEL=examples/local/tiny-model
if [[ ! -f "$MODEL/config.json" ]]; then
  corpus=()
  for f in examples/local/data/*/train.jsonl; do corpus+=(--corpus "$f"); done
  "$MTM" tiny-model "$MODEL" --hidden 128 --vocab-size 1024 "${corpus[@]}"
fi
start=$(date +%s)
"$MTM" run examples/local/model.yaml --workspace workspace/support-assistant-local "$@"
echo "make demo: finished in $(( $(date +%s) - start ))s; open workspace/support-assistant-local/report/report.md"
