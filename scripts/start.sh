#!/usr/bin/env bash
# The main job (npm start): the lab comes up, the paper's seven-method comparison runs in
# it at small sizes (plans/lab-small.yaml), the report is written, the lab goes down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
vcstor() { node dist/coordinator/cli.js "$@"; }
trap 'vcstor lab down >/dev/null' EXIT
vcstor lab up "$@"
vcstor lab check
vcstor run plans/lab-small.yaml
