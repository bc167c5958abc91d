#!/usr/bin/env bash
# Train each default backbone on real data, quantize it to int8 and compare
# float with int8; then the model strategies table (pruning, distillation)
# over three seeds (`make demo-models`, about 15 minutes).
#   scripts/demo_models.sh PATH/TO/tinyfed
set -euo pipefail
tinyfed=${1:-build/tools/tinyfed}
root=$(cd "$(dirname "$0")/.." && pwd)
data=$("$root/scripts/fetch_data.sh")
out="$root/.cache/demo"
mkdir -p "$out"
fm=/usr/share/datasets/fashion-mnist
fm_names="T-shirt,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Boot"

echo "== Fashion-MNIST: cnn trained on the 60,000 training images, evaluated on the 10,000 test images"
"$tinyfed" backbone train --arch cnn --epochs 12 --lr 0.02 --seed 1 --name fmnist-cnn \
  --data "$fm/train-images-idx3-ubyte.gz" --labels "$fm/train-labels-idx1-ubyte.gz" \
  --label-names "$fm_names" --out "$out/fmnist-cnn.float.bundle"
"$tinyfed" model quantize --model "$out/fmnist-cnn.float.bundle" --out "$out/fmnist-cnn.int8.bundle" \
  --data "$fm/train-images-idx3-ubyte.gz" --labels "$fm/train-labels-idx1-ubyte.gz" \
  --label-names "$fm_names" --calibration-samples 2000
fm_table=$("$tinyfed" model eval --model "$out/fmnist-cnn.float.bundle" --model "$out/fmnist-cnn.int8.bundle" \
  --data "$fm/t10k-images-idx3-ubyte.gz" --labels "$fm/t10k-labels-idx1-ubyte.gz" \
  --label-names "$fm_names" | sed -n '/^model /,$p')

echo "== Breast Cancer Wisconsin: mlp on a stratified 80/20 split"
bc="$data/breast_cancer.csv"
"$tinyfed" backbone train --arch mlp --epochs 20 --lr 0.01 --batch-size 16 --seed 1 --name breast-cancer-mlp \
  --data "$bc" --holdout 0.2 --split-seed 1 --out "$out/breast-cancer-mlp.float.bundle" | tail -n 2
"$tinyfed" model quantize --model "$out/breast-cancer-mlp.float.bundle" --out "$out/breast-cancer-mlp.int8.bundle" \
  --data "$bc" --holdout 0.2 --split-seed 1
bc_table=$("$tinyfed" model eval --model "$out/breast-cancer-mlp.float.bundle" \
  --model "$out/breast-cancer-mlp.int8.bundle" --data "$bc" --holdout 0.2 --split-seed 1 \
  --positive-class malignant | sed -n '/^model /,$p')

echo
echo "Fashion-MNIST test set (10,000 images)"
echo "$fm_table"
echo
echo "Breast Cancer Wisconsin, held-out stratified 20%"
echo "$bc_table"
"$root/scripts/model_strategies.sh" "$tinyfed" "$out/strategies" "1 2 3"

echo
echo "bundles in $out; inspect one with: $tinyfed model inspect --model $out/fmnist-cnn.int8.bundle"
