#!/usr/bin/env bash
# End-to-end test of the tinyfed command: every subcommand's --help, a
# train/quantize/eval/inspect run on real data, and bad input that must fail
# with a message naming what was wrong (and write nothing).
#   tools/cli_test.sh PATH/TO/tinyfed DATA_DIR
set -uo pipefail
tinyfed=$1
data=$2/breast_cancer.csv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
pass=0

ok() { pass=$((pass + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# Reads all of its input before matching: under pipefail, `cmd | grep -q` fails
# whenever grep exits at the first match while cmd is still writing (SIGPIPE).
prints() { local all; all=$(cat); grep -q -- "$1" <<<"$all"; }

# expect_error "what" "message fragment" command...
expect_error() {
  local what=$1 fragment=$2
  shift 2
  local out
  if out=$("$@" 2>&1); then fail "$what: succeeded"; return; fi
  if [[ "$out" != *"$fragment"* ]]; then fail "$what: error lacks '$fragment': $out"; return; fi
  ok
}

for cmd in "" "backbone" "backbone train" "backbone prune" "backbone distill" "model" "model quantize" "model eval" "model inspect" \
           "privacy" "privacy epsilon" "privacy noise" "privacy plan" "client status" "keys generate" "root new" "model verify" \
           "enroll" "device revoke" "device list" "rollout promote" "rollout rollback" "rollout list"; do
  # shellcheck disable=SC2086
  if $tinyfed $cmd --help >/dev/null; then ok; else fail "tinyfed $cmd --help"; fi
done

common=(--data "$data" --holdout 0.2 --split-seed 3)
$tinyfed backbone train --arch mlp --epochs 15 --batch-size 16 "${common[@]}" --out "$work/f.bundle" >/dev/null \
  && ok || fail "backbone train"
$tinyfed model quantize --model "$work/f.bundle" "${common[@]}" --out "$work/q.bundle" >/dev/null \
  && ok || fail "model quantize"
$tinyfed model quantize --model "$work/f.bundle" "${common[@]}" --method qat --qat-epochs 1 --out "$work/qat.bundle" >/dev/null \
  && ok || fail "model quantize --method qat"
json=$($tinyfed model eval --model "$work/f.bundle" --model "$work/q.bundle" "${common[@]}" --json)
python3 - "$json" <<'PY' && ok || fail "model eval --json"
import json, sys
models = json.loads(sys.argv[1])
assert [m["precision"] for m in models] == ["float32", "int8"], models
for m in models:
    assert m["samples"] == 113 and m["accuracy"] > 0.9, m
    assert m["classes"][0]["name"] == "malignant"
    assert sum(map(sum, m["confusion"])) == 113
assert models[1]["peak_arena_bytes"] > 0 and models[1]["model_bytes"] < models[0]["model_bytes"]
PY
inspect=$($tinyfed model inspect --model "$work/q.bundle" --json)
python3 - "$inspect" <<'PY' && ok || fail "model inspect --json"
import json, sys
m = json.loads(sys.argv[1])
assert m["precision"] == "int8" and m["architecture"] == "mlp"
assert [l["kind"] for l in m["layers"]] == ["FullyConnected", "FullyConnected"]
assert m["total_macs"] == 30 * 64 + 64 * 32 and m["peak_arena_bytes"] > 0
PY
$tinyfed model eval --model "$work/q.bundle" "${common[@]}" --positive-class malignant | prints "sensitivity" \
  && ok || fail "model eval --positive-class"

# Smaller before quantizing: 30% of the first hidden layer's 64 units go
# (the 32-wide embedding stays), and a 16-8 student learns from the mlp.
$tinyfed backbone prune --model "$work/f.bundle" --channels 30% --epochs 2 "${common[@]}" --out "$work/p.bundle" \
  | prints "MACs 3968 -> 2790 (29.7% fewer)" && ok || fail "backbone prune"
$tinyfed model inspect --model "$work/p.bundle" --json | python3 -c '
import json, sys
m = json.load(sys.stdin)
assert [l["output"][2] for l in m["layers"]] == [45, 32], m["layers"]' && ok || fail "a pruned bundle is smaller"
$tinyfed backbone distill --teacher "$work/f.bundle" --arch mlp --hidden 16,8 --epochs 5 "${common[@]}" \
  --out "$work/s.bundle" | prints "hard cases" && ok || fail "backbone distill"
expect_error "prune by a share past 100%" "give a share between 0 and 1, or 0% and 100%" \
  $tinyfed backbone prune --model "$work/f.bundle" --channels 130% "${common[@]}" --out "$work/x"
expect_error "prune an int8 bundle" "needs a float32 bundle" \
  $tinyfed backbone prune --model "$work/q.bundle" "${common[@]}" --out "$work/x"
expect_error "distill with a cold temperature" "temperature 0.5 (1 to 100)" \
  $tinyfed backbone distill --teacher "$work/f.bundle" --temperature 0.5 "${common[@]}" --out "$work/x"
[[ ! -e "$work/x" ]] && ok || fail "a refused prune or distill wrote a file"

printf 'state_dir = "state"\ninitial_model = "m"\npublishing_key = "k"\nroots_dir = "r"\n' >"$work/agg.toml"
expect_error "promote without a canary" "no model is in canary" $tinyfed rollout promote --config "$work/agg.toml"

expect_error "unknown architecture" "arch" $tinyfed backbone train --arch rnn --data "$data" --out "$work/x"
expect_error "missing dataset" "no dataset file at /nonexistent.csv" \
  $tinyfed backbone train --arch mlp --data /nonexistent.csv --out "$work/x"
expect_error "IDX without labels" "needs --labels" $tinyfed backbone train --arch mlp --data "$work/f.bundle" --out "$work/x"
expect_error "cnn on tabular data" "at least 4x4" $tinyfed backbone train --arch cnn --data "$data" --out "$work/x"
expect_error "holdout out of range" "holdout" $tinyfed backbone train --arch mlp --data "$data" --holdout 1.5 --out "$work/x"
expect_error "bad hidden sizes" "--hidden: 'x' is not an integer" \
  $tinyfed backbone train --arch mlp --data "$data" --hidden 8,x --out "$work/x"
expect_error "learning rate" "training options out of range" \
  $tinyfed backbone train --arch mlp --data "$data" --lr -1 --out "$work/x"
[[ ! -e "$work/x" ]] && ok || fail "a failed command left a file behind"
expect_error "quantize an int8 bundle" "needs a float32 bundle" \
  $tinyfed model quantize --model "$work/q.bundle" --data "$data" --out "$work/y"
head -c 100 "$work/q.bundle" >"$work/truncated.bundle"
expect_error "truncated bundle" "truncated" $tinyfed model inspect --model "$work/truncated.bundle"
printf 'not a bundle at all, just text that is long enough for a header....' >"$work/text.bundle"
expect_error "not a bundle" "bad magic" $tinyfed model eval --model "$work/text.bundle" --data "$data"
expect_error "wrong data for the model" "has samples of 784 values" \
  $tinyfed model eval --model "$work/q.bundle" --data /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
  --labels /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
expect_error "unknown positive class" "--positive-class cancer is not a class" \
  $tinyfed model eval --model "$work/q.bundle" --data "$data" --positive-class cancer

# Labels: integer codes that are not 0..K-1 are classes named by themselves, said in the log; mixed kinds
# are refused naming the line.
printf 'x,y\n1,0\n2,1\n3,-1\n' > "$work/neg.csv"
$tinyfed client add-samples --data-dir "$work/gw-labels" --csv "$work/neg.csv" 2>&1 \
  | prints "the labels are the codes -1, 0, 1" && ok || fail "label codes are named in the log"
printf 'x,y\n1,0\n2,1\n3,sick\n' > "$work/mixed.csv"
expect_error "mixed labels" "mixed.csv line 4: label 'sick' is text but line 2's label '0' is a class id" \
  $tinyfed client add-samples --data-dir "$work/gw-labels" --csv "$work/mixed.csv"
# A clinic's export: R's quoting and row names, NA cells, a mistyped column.
printf '"","age","bmi","y"\n"1",40,NA,"a"\n"2",50,31,"b"\n"3",60,29,"a"\n' > "$work/r.csv"
expect_error "missing values are counted" "1 of 3 rows have missing values (1 cells" \
  $tinyfed backbone train --arch mlp --data "$work/r.csv" --out "$work/x"
$tinyfed backbone train --arch mlp --data "$work/r.csv" --missing mean --epochs 1 --out "$work/r.bundle" 2>&1 \
  | prints "R's write.csv row names" && ok || fail "R's row names and --missing mean"
expect_error "mistyped label column" "no label column 'Y' (did you mean 'y'?); the 4 columns are" \
  $tinyfed backbone train --arch mlp --data "$work/r.csv" --label-column Y --out "$work/x"
# A small .gz that expands past what a gateway has, under a 1 GiB address-space limit: a clear error, no abort.
# (AddressSanitizer reserves terabytes of address space, and reads the file ten times slower: its build
# checks the cap alone.)
python3 -c 'import gzip, sys; f = gzip.open(sys.argv[1], "wb", 9); [f.write(b"1,0\n" * (1 << 18)) for _ in range(1024)]; f.close()' \
  "$work/bomb.csv.gz"
memory_limit="ulimit -v 1048576"
if [[ $(ldd "$tinyfed" 2>/dev/null) == *libasan* ]]; then
  memory_limit=":"
else
  out=$( ($memory_limit; $tinyfed client add-samples --data-dir "$work/gw-bomb" --csv "$work/bomb.csv.gz") 2>&1 )
  rc=$?
  [[ $rc -eq 1 && $out == "tinyfed: error: "* ]] && ok || fail "gzip bomb: exit $rc: $out"
fi
out=$( ($memory_limit; $tinyfed client add-samples --data-dir "$work/gw-bomb" --csv "$work/bomb.csv.gz" \
  --max-input-mb 8) 2>&1 )
[[ $? -eq 1 && $out == *"holds more than 8388608 bytes"* ]] && ok || fail "gzip bomb with --max-input-mb: $out"
expect_error "a directory as a dataset" "is not a regular file" \
  $tinyfed client add-samples --data-dir "$work/gw-dir" --csv "$work"

eps=$($tinyfed privacy epsilon --accountant rdp --sampling-rate 0.0025 --noise-multiplier 1.3 --steps 6000 \
  --delta 1e-5 --json)
pld=$($tinyfed privacy epsilon --sampling-rate 0.0025 --noise-multiplier 1.3 --steps 6000 --delta 1e-5 --json)
python3 - "$eps" "$pld" <<'PY' && ok || fail "privacy epsilon --json: $eps / $pld"
import json, sys
r, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert set(r) == {"epsilon", "accountant", "order"} and r["accountant"] == "rdp", r
assert abs(r["epsilon"] / 0.7242234026109595 - 1) < 1e-6 and r["order"] == 19, r
assert p["accountant"] == "pld" and 0 < p["epsilon"] < r["epsilon"], (p, r)
PY
$tinyfed privacy noise --sampling-rate 0.01 --steps 1000 --delta 1e-5 --epsilon 2 | prints "noise multiplier" \
  && ok || fail "privacy noise"
plan=$(TINYFED_DATA_DIR=$2 $tinyfed privacy plan --json \
  --scenario "$(dirname "$0")/../sim/scenarios/clinics-breast-cancer.toml")
python3 - "$plan" <<'PY' && ok || fail "privacy plan --json: $plan"
import json, sys
p = json.loads(sys.argv[1])
assert p["unit"] == "patient" and p["accountant"] == "pld", p
assert 7.5 < p["epsilon"] <= 8.0 and p["steps_per_round"] == 10, p
assert 0 < p["round_noise"] < p["step_noise_median"] <= p["step_noise_smallest"], p
PY
# A gateway's own ledger after three patient-level rounds: what `client
# status` reports is what the accountant gives for the charges it lists.
TINYFED_DATA_DIR=$2 $tinyfed sim --scenario "$(dirname "$0")/../sim/scenarios/clinics-breast-cancer.toml" \
  --rounds 3 --work "$work/sim-work" --out "$work/sim-out" >/dev/null 2>&1 || fail "sim for client status"
status=$($tinyfed client status --data-dir "$work/sim-work/clinic-0000" --json)
rounds=$(python3 -c "import json,sys; print(len(json.loads(sys.argv[1])['charged_rounds']))" "$status")
z=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['charged_rounds'][0]['parameters']['noise_multiplier'])" "$status")
again=$($tinyfed privacy epsilon --sampling-rate 0.5 --noise-multiplier "$z" --steps $((rounds * 10)) --delta 1e-5 --json)
python3 - "$status" "$again" <<'PY' && ok || fail "client status: $status / $again"
import json, sys
s, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
p = s["patient"]
assert p["rounds"] >= 1 and p["accountant"] == "pld" and p["dp_sgd_steps"] == 10 * p["rounds"], s
assert abs(p["epsilon"] - a["epsilon"]) < 1e-9 and p["epsilon"] <= 8.0, (p, a)
assert s["clinic"]["bounded"] is False and s["clinic"]["epsilon"] is None, s
PY
expect_error "client status without a ledger" "no privacy ledger" \
  $tinyfed client status --data-dir "$work/no-such-gateway"
z=$($tinyfed privacy noise --sampling-rate 0.05 --steps 1000 --delta 1e-5 --epsilon 8 | awk '{print $3}')
eps=$($tinyfed privacy epsilon --sampling-rate 0.05 --noise-multiplier "$z" --steps 1000 --delta 1e-5 --json)
python3 -c "import json,sys; e=json.loads(sys.argv[1])['epsilon']; assert 7.9 < e <= 8, e" "$eps" && ok \
  || fail "the printed noise multiplier $z overspends: $eps"
expect_error "an unknown accountant" "--accountant" \
  $tinyfed privacy epsilon --accountant moments --sampling-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1e-5
expect_error "z outside the PLD's range" "noise multiplier must be in [0.05, 1e4], got 0" \
  $tinyfed privacy epsilon --sampling-rate 0.1 --noise-multiplier 0 --steps 10 --delta 1e-5
expect_error "q outside (0,1]" "sampling rate must be in (0, 1], got 1.5" \
  $tinyfed privacy epsilon --sampling-rate 1.5 --noise-multiplier 1 --steps 10 --delta 1e-5
expect_error "z <= 0" "noise multiplier must be positive and finite, got 0" \
  $tinyfed privacy epsilon --accountant rdp --sampling-rate 0.1 --noise-multiplier 0 --steps 10 --delta 1e-5
expect_error "delta outside (0,1)" "delta must be in (0, 1), got 1" \
  $tinyfed privacy epsilon --sampling-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1
expect_error "noise without epsilon" "--epsilon is required" \
  $tinyfed privacy noise --sampling-rate 0.1 --steps 10 --delta 1e-5

for k in r1 r2 r3 pub1 pub2; do $tinyfed keys generate --secret "$work/$k.key" --public "$work/$k.pub" >/dev/null; done \
  && ok || fail "keys generate"
[[ $(stat -c %a "$work/r1.key") == 600 ]] && ok || fail "secret key file is not 0600"
expect_error "key overwrite" "refusing to overwrite" $tinyfed keys generate --secret "$work/r1.key" --public "$work/x.pub"
roots=(--roots "$work/roots" --root-key "$work/r1.key" --root-key "$work/r2.key" --root-key "$work/r3.key")
expect_error "root without federation" "1.root needs --federation" \
  $tinyfed root new "${roots[@]}" --threshold 2 --publishing-key "$work/pub1.pub"
expect_error "threshold above keys" "threshold 4 is not in 1..3" \
  $tinyfed root new "${roots[@]}" --threshold 4 --federation cli/test --publishing-key "$work/pub1.pub"
$tinyfed root new "${roots[@]}" --threshold 2 --federation cli/test --publishing-key "$work/pub1.pub" \
  | prints "wrote .*/1.root" \
  && ok || fail "root new v1"
# Rotating the publishing key takes a threshold (2) of the current root keys.
expect_error "rotation below threshold" "1 valid signature(s) of the 2 required" \
  $tinyfed root new --roots "$work/roots" --root-key "$work/r1.key" --publishing-key "$work/pub2.pub"
$tinyfed root new --roots "$work/roots" --root-key "$work/r1.key" --sign-with "$work/r2.key" \
  --publishing-key "$work/pub2.pub" | prints "wrote .*/2.root" && ok || fail "root new v2 (rotation)"
[[ ! -e "$work/roots/3.root" ]] && ok || fail "a refused root was written"
# Threshold 2 of 3 with one root key held elsewhere (public half only).
$tinyfed root new --roots "$work/roots" --root-key "$work/r1.key" --root-key "$work/r2.key" \
  --root-public-key "$work/r3.pub" --threshold 2 --publishing-key "$work/pub1.pub" | prints "wrote .*/3.root" \
  && ok || fail "root new v3 with a public-only root key"

# The simulator with one process per clinic: `tinyfed aggregator` and eight
# `tinyfed client run`, three rounds on Breast Cancer Wisconsin.
# Relative --out and --work (their paths used to be taken twice).
scenarios=$(cd "$(dirname "$0")/../sim/scenarios" && pwd)
tinyfed_abs=$(realpath "$tinyfed")
data_abs=$(cd "$(dirname "$data")" && pwd)
(cd "$work" && TINYFED_DATA_DIR=$data_abs $tinyfed_abs sim --scenario "$scenarios/clinics-breast-cancer.toml" \
  --transport processes --rounds 3 --out sim --work simwork > "$work/sim.log" 2>&1) \
  && ok || { cat "$work/sim.log"; fail "sim processes"; }
# Its published models verify as a gateway would verify them.
sim_root="$work/simwork/trust/roots/1.root"
$tinyfed model verify --model "$work/simwork/aggregator/models/model-v4.signed" --root "$sim_root" \
  --out "$work/v4.bundle" | prints "verified model v4 (release 4)" && ok || fail "model verify"
expect_error "model verify: foreign root" "0 valid signature(s) of the 1 required" \
  $tinyfed model verify --model "$work/simwork/aggregator/models/model-v4.signed" --root "$work/roots/1.root"
cp "$work/simwork/aggregator/models/model-v4.signed" "$work/tampered.signed"
printf '\x00' | dd of="$work/tampered.signed" bs=1 seek=200 conv=notrunc 2>/dev/null
expect_error "tampered signed bundle" "not the signed" $tinyfed model verify --model "$work/tampered.signed" --root "$sim_root"
grep -q "Rounds completed 3 of 3" "$work/sim/summary.md" && ok || fail "sim processes: 3 rounds"
grep -q '"transport": "processes"' "$work/sim/report.json" && ok || fail "sim processes: report"
printf '[data]\npath = "x.csv"\n[rounds]\nmax_rounds = 2\n[clinics]\ncount = 4\ncolor = 1\n' > "$work/bad.toml"
expect_error "sim bad scenario" "bad.toml:7: clinics.color: unknown key" $tinyfed sim --scenario "$work/bad.toml" --out "$work/x"

# An ONNX model exported elsewhere: imported to a float bundle, then quantized and inspected like any.
onnx="$(dirname "$0")/../model_import/testdata/niid_cnn.onnx"
$tinyfed model import --onnx "$onnx" --embedding embedding --labels 0,1,2,3,4,5,6,7,8,9 --mean 72.9 --stddev 90 \
  --out "$work/onnx.bundle" | prints "embedding of 84, 10 classes" && ok || fail "model import"
fm=/usr/share/datasets/fashion-mnist
$tinyfed model quantize --model "$work/onnx.bundle" --data $fm/t10k-images-idx3-ubyte.gz \
  --labels $fm/t10k-labels-idx1-ubyte.gz --calibration-samples 200 --out "$work/onnx.int8.bundle" >/dev/null \
  && $tinyfed model inspect --model "$work/onnx.int8.bundle" | prints "onnx:pytorch opset 13, int8" \
  && ok || fail "an imported model quantizes"
$tinyfed model import --onnx "$(dirname "$0")/../model_import/testdata/niid_cnn_int8.onnx" --embedding embedding \
  --labels a,b --out "$work/onnx-q.bundle" | prints "int8: 6 ops, embedding of 84, 2 classes); quantized as the file says" \
  && ok || fail "import of a QDQ model"
expect_error "import with a wrong embedding" "no node output is named 'feature' (--embedding)" \
  $tinyfed model import --onnx "$onnx" --embedding feature --labels a,b --out "$work/x.bundle"
[[ ! -e "$work/x.bundle" ]] && ok || fail "a failed import wrote a bundle"
expect_error "import of a non-ONNX file" "is not an ONNX model" \
  $tinyfed model import --onnx "$data" --embedding e --labels a,b --out "$work/x.bundle"

echo "$pass passed, $failures failed"
[[ $failures -eq 0 ]]
