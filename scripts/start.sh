#!/usr/bin/env bash
# The main job (npm start): the lab comes up, the paper's seven-method comparison runs in
# it at small sizes (plans/lab-small.yaml), the report is written, the lab goes down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
vcstor() { node dist/cli/cli.js "$@"; }
trap 'vcstor lab down >/dev/null' EXIT
# Links as the paper's (1 Gbit/s) unless the caller gives --rate: unshaped veth pairs
# run at memory speed, faster than any disk behind them.
rate=(--rate 1gbit)
for arg in "$@"; do [[ $arg == --rate || $arg == --rate=* ]] && rate=(); done
vcstor lab up "${rate[@]}" "$@"
vcstor lab check
vcstor run plans/lab-small.yaml
