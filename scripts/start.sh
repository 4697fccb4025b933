#!/usr/bin/env bash
# The main job (npm start). Until the campaign lands (issue 6) it brings the lab up,
# asks every agent for its info and health, and takes the lab down again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
vcstor() { node dist/coordinator/cli.js "$@"; }
trap 'vcstor lab down >/dev/null' EXIT
vcstor lab up "$@"
vcstor lab check
vcstor lab status
