#!/usr/bin/env bash
# The model strategies practitioners compare, on Fashion-MNIST, each measured
# int8 on the 10,000 test images, over several seeds: the NIID-Bench cnn, that
# cnn with 30% of its channels pruned then fine-tuned, and a small mlp student
# (32, 16) distilled from the cnn against the same mlp trained from scratch.
# Everything trains on 54,000 training images; pruning scores channels on the
# other 6,000 (the validation part, never the test split). Prints a table of
# medians and ranges (`make demo-models`; about 4 minutes a seed).
#   scripts/model_strategies.sh PATH/TO/tinyfed OUT_DIR [SEEDS]
set -euo pipefail
tinyfed=$1
out=$2
seeds=${3:-1 2 3}
mkdir -p "$out"
fm=/usr/share/datasets/fashion-mnist
names="T-shirt,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Boot"
train=(--data "$fm/train-images-idx3-ubyte.gz" --labels "$fm/train-labels-idx1-ubyte.gz" --label-names "$names"
  --holdout 0.1 --split-seed 1)
test=(--data "$fm/t10k-images-idx3-ubyte.gz" --labels "$fm/t10k-labels-idx1-ubyte.gz" --label-names "$names")

for seed in $seeds; do
  d="$out/seed-$seed"
  mkdir -p "$d"
  echo "== seed $seed: cnn, pruned cnn, distilled and scratch mlp"
  "$tinyfed" backbone train --arch cnn --epochs 12 --lr 0.02 --seed "$seed" "${train[@]}" --out "$d/cnn.bundle" |
    tail -n 1
  "$tinyfed" backbone prune --model "$d/cnn.bundle" --channels 30% --epochs 3 --lr 0.005 --seed "$seed" \
    "${train[@]}" --out "$d/cnn-pruned.bundle" | grep -E "^MACs"
  # Temperature 1 and soft weight 0.5 came out best on the validation part
  # (seed 1: 88.90% against 88.68% from scratch; temperatures 1.5 to 4 and
  # soft weights 0.7 to 1 all below scratch), and the hard-case fine-tune
  # lowered it (87.47% against 87.82% at temperature 4), so it is off here.
  "$tinyfed" backbone distill --teacher "$d/cnn.bundle" --arch mlp --hidden 32,16 --epochs 12 --lr 0.02 \
    --temperature 1 --soft-weight 0.5 --hard-case-epochs 0 \
    --seed "$seed" "${train[@]}" --out "$d/mlp-distilled.bundle" | grep -E "^teacher"
  "$tinyfed" backbone train --arch mlp --hidden 32,16 --epochs 12 --lr 0.02 --seed "$seed" "${train[@]}" \
    --out "$d/mlp-scratch.bundle" | tail -n 1
  for m in cnn cnn-pruned mlp-distilled mlp-scratch; do
    "$tinyfed" model quantize --model "$d/$m.bundle" --out "$d/$m.int8.bundle" "${train[@]}" \
      --calibration-samples 2000 --seed "$seed" >/dev/null
    "$tinyfed" model inspect --model "$d/$m.int8.bundle" --json >"$d/$m.inspect.json"
  done
  "$tinyfed" model eval --json "${test[@]}" --model "$d/cnn.int8.bundle" --model "$d/cnn-pruned.int8.bundle" \
    --model "$d/mlp-distilled.int8.bundle" --model "$d/mlp-scratch.int8.bundle" >"$d/eval.json"
done

# shellcheck disable=SC2086
python3 "$(dirname "$0")/strategies_table.py" "$out" $seeds
