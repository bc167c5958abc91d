#!/usr/bin/env bash
# deploy/systemd's units pass `systemd-analyze verify` without a word (an
# unknown or misspelt key is only a warning there, so any output fails),
# with ExecStart pointed at the built binary, and their exposure score
# (`systemd-analyze security --offline`) stays at most 2.0 ("OK").
#   tests/systemd_units_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$1 SOURCE=$2
command -v systemd-analyze >/dev/null || { echo "FAIL: systemd-analyze is missing"; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for unit in "$SOURCE"/deploy/systemd/*.service; do
  name=$(basename "$unit")
  sed "s|/usr/bin/tinyfed|$BUILD/tools/tinyfed|" "$unit" > "$WORK/$name"
  if ! out=$(systemd-analyze verify "$WORK/$name" 2>&1) || [[ -n $out ]]; then
    echo "$out"
    echo "FAIL: $name does not verify"
    exit 1
  fi
  score=$(systemd-analyze security --offline=yes "$WORK/$name" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
  [[ -n $score ]] || { echo "FAIL: no exposure score for $name"; exit 1; }
  python3 -c "import sys; sys.exit(0 if float('$score') <= 2.0 else 1)" ||
    { echo "FAIL: $name exposure $score (over 2.0)"; exit 1; }
  echo "$name: verifies; exposure $score"
done
echo "PASS"
