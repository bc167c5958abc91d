#!/usr/bin/env bash
# deploy/kubernetes renders offline (kubectl kustomize) and every object is
# valid against the Kubernetes API schema (deploy/kubernetes/check, through
# npm's kubernetes-models); the ConfigMap's aggregator.toml is a config the
# aggregator accepts.
#   tests/kubernetes_manifests_test.sh BUILD_DIR SOURCE_DIR CACHE_DIR
set -euo pipefail
BUILD=$1 SOURCE=$2 CACHE=$3
for tool in kubectl node npm; do
  command -v $tool >/dev/null || { echo "FAIL: $tool is missing (scripts/install_deps.sh installs it)"; exit 1; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
check=$SOURCE/deploy/kubernetes/check
# The checker's packages, installed once per lock file.
lock=$(sha256sum "$check/package-lock.json" | cut -c1-16)
modules=$CACHE/kubernetes-check-$lock
if [[ ! -d $modules/node_modules ]]; then
  mkdir -p "$modules"
  cp "$check/package.json" "$check/package-lock.json" "$modules/"
  (cd "$modules" && npm ci --no-audit --no-fund --loglevel=error) || { echo "FAIL: npm ci of the checker"; exit 1; }
fi
cp "$check/validate.mjs" "$modules/"
for kustomization in "$SOURCE"/deploy/kubernetes/*/kustomization.yaml; do
  dir=$(dirname "$kustomization")
  name=$(basename "$dir")
  [[ $name == check ]] && continue
  kubectl kustomize "$dir" > "$WORK/$name.yaml" 2> "$WORK/kustomize.log" ||
    { cat "$WORK/kustomize.log"; echo "FAIL: $name does not render"; exit 1; }
  echo -n "$name: "
  node "$modules/validate.mjs" "$WORK/$name.yaml"
  # Each config a ConfigMap carries is one the aggregator accepts.
  python3 - "$WORK/$name.yaml" "$WORK" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for i, m in enumerate(re.finditer(r"aggregator\.toml: \|\n((?:    .*\n|\n)+)", text)):
    body = "\n".join(line[4:] for line in m.group(1).splitlines())
    open(f"{sys.argv[2]}/config-{i}.toml", "w").write(body + "\n")
PY
  for config in "$WORK"/config-*.toml; do
    "$BUILD/tools/tinyfed" aggregator check-config --config "$config" >/dev/null ||
      { echo "FAIL: $name's aggregator.toml"; exit 1; }
  done
  echo "$name: its aggregator.toml is valid"
  rm -f "$WORK"/config-*.toml
done
echo "PASS"
