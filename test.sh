#!/usr/bin/env bash
# One command: set up (venv + pinned packages + Debian's chromium for the browser test and
# postgresql for the multi-machine study tests) and run the whole test suite on two pytest
# processes (pytest-xdist: most slow tests wait on trainers, servers and browsers, so two fit on
# two cores). Extra arguments go to pytest; `./test.sh -n 0` runs in one process.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null \
    || echo "warning: could not install ${missing[*]}; the tests that need them will skip"
fi
exec .venv/bin/python -m pytest -q -n 2 --dist worksteal "$@"
