#!/usr/bin/env bash
# Every C++ file of the project against .clang-format: a file that would
# change is listed with the first lines clang-format would change.
#   tests/format_check.sh SOURCE_DIR
set -uo pipefail
cd "$1" || exit 2
format=$(command -v clang-format-14 || command -v clang-format) || { echo "FAIL: clang-format-14 is missing"; exit 1; }
if [[ -d .git ]]; then
  mapfile -t files < <(git ls-files '*.cc' '*.h')
else
  mapfile -t files < <(find . -path './build*' -prune -o \( -name '*.cc' -o -name '*.h' \) -print | sort)
fi
failed=0
for f in "${files[@]}"; do
  if ! out=$("$format" --dry-run --Werror "$f" 2>&1); then
    echo "FAIL: $f is not formatted (clang-format-14 -i $f):"
    head -6 <<<"$out"
    failed=$((failed + 1))
  fi
done
echo "${#files[@]} files checked, $failed not formatted"
((failed == 0))
