#!/usr/bin/env bash
# The test command (npm test): installs what it needs, builds, runs every suite with
# node's test runner. Suites that need root (the lab) are skipped, with a reason, without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# A lab a killed test run left behind is removed before and after the run.
test_lab_down() {
  node dist/cli/cli.js lab down --name vct --dir /var/lib/vcstor/test-lab >/dev/null 2>&1 || true
  node dist/cli/cli.js lab down --name vmt --dir /var/lib/vcstor/vm-lab-test >/dev/null 2>&1 || true
}
if [ "$(id -u)" -eq 0 ]; then test_lab_down; trap test_lab_down EXIT; fi

mapfile -t suites < <(find dist/test -name '*.test.js' | sort)
node --test --test-concurrency=1 "${suites[@]}"
