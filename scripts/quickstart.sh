#!/usr/bin/env bash
# The main job on the embedded default, for a new user on a fresh Debian 12 machine:
# install the packages, build, convert Fashion-MNIST to images, train MobileNetV2 in float for a
# couple of epochs, fine-tune it with PROM quantization, export the integer model and evaluate it
# with the integer engine. About 15 minutes on a 2-core machine; the full recipes are in README.md.
# Re-running rebuilds nothing and starts the runs afresh under runs/quickstart/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
FLOAT_EPOCHS=${FLOAT_EPOCHS:-2}
QAT_EPOCHS=${QAT_EPOCHS:-1}

./scripts/install_deps.sh
./scripts/build.sh
bin=build/apps

"$bin/prom-data" fashion-mnist --out data/fashion-mnist

out=runs/quickstart
rm -rf "$out"
"$bin/prom-train" --config configs/fashion-mnist/mobilenetv2_fp32.yaml \
  --set run.out_dir=$out --set train.epochs=$FLOAT_EPOCHS
float_ckpt=$out/mobilenetv2_fp32_fmnist/best.safetensors
"$bin/prom-train" --config configs/fashion-mnist/mobilenetv2_prom.yaml \
  --set run.out_dir=$out --set train.epochs=$QAT_EPOCHS \
  --set model.init=$float_ckpt --set train.distill.teacher=$float_ckpt
prom_ckpt=$out/mobilenetv2_prom_fmnist/best.safetensors
"$bin/prom-export" --checkpoint "$prom_ckpt" --out $out/mobilenetv2_prom_fmnist.prom

echo
echo "== Fashion-MNIST test accuracy =="
"$bin/prom-eval" --checkpoint "$float_ckpt" | head -1
"$bin/prom-eval" --checkpoint "$prom_ckpt" | head -1
"$bin/prom-eval" --model $out/mobilenetv2_prom_fmnist.prom --config configs/fashion-mnist/mobilenetv2_prom.yaml | head -1
"$bin/prom-eval" --checkpoint "$prom_ckpt" --model $out/mobilenetv2_prom_fmnist.prom --compare
echo
echo "== Energy and storage of the exported PROM model =="
"$bin/prom-eval" --report energy,storage --model $out/mobilenetv2_prom_fmnist.prom --config configs/fashion-mnist/mobilenetv2_prom.yaml | grep -E "^(energy|storage) ratio"
echo
echo "== Energy against top-1 (honest and paper-like counts, fp16/fp32 baselines) =="
"$bin/prom-eval" --report energy --json --model $out/mobilenetv2_prom_fmnist.prom \
  --config configs/fashion-mnist/mobilenetv2_prom.yaml > $out/mobilenetv2_prom_fmnist/energy.json
/usr/bin/python3 scripts/plot_pareto.py $out/mobilenetv2_fp32_fmnist $out/mobilenetv2_prom_fmnist \
  --out $out/pareto.png --title "quickstart: MobileNetV2 on Fashion-MNIST"
