#!/usr/bin/env bash
# Issue 30: L-SWAG and the zoo on ViT-Bench-101's 100 trained AutoFormer-Ti subnets (docs/reproduction.md,
# "Vision Transformers with trained ground truth"). Every run is a resumable `lswag bench`; a rerun reads
# its store, so the other accuracy columns cost nothing once a batch is scored.
#   bash benchmarks/vitbench101.sh batch|zoo|fisher   (WORKERS=1, OUT=runs/vit by default)
#   batch:   l_swag and the cheap proxies at batch 16, 32 and 64, against every accuracy column
#   zoo:     every proxy (ensembles' components included) at BATCH (default 32), every accuracy column
#   fisher:  fisher with NAS-Bench-Suite-Zero's per-token reduction (fisher.reduction=suite_zero) at BATCH
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${WORKERS:-1}; OUT=${OUT:-runs/vit}; BATCH=${BATCH:-32}
T=../shared/benchmarks/vitbench101_autoformer/vitbench101_autoformer_ti.csv; I=../shared/images
METRICS="c100_kd_acc c100_base_acc flower_kd_acc flower_base_acc chaoyang_kd_acc chaoyang_base_acc imagenet_super_acc"
CHEAP=l_swag,zico,nwot,swap,synflow,params,flops
mkdir -p "$OUT"
bench() {  # bench BATCH PROXIES STORE-NAME [OPTIONS...]: one resumable run per accuracy column (the first computes)
  for metric in $METRICS; do
    lswag bench --space vitbench101-autoformer --truth $T --metric "$metric" --n 100 --seed 0 \
      --data npz:$I/cifar100_sample.npz --batch-size "$1" --proxies "$2" --workers "$WORKERS" --device cpu \
      --store "$OUT/$3.sqlite" --out "$OUT/$3_b$1_$metric${4:+_variant}" "${@:4}"
  done
}
case "${1:?batch, zoo or fisher}" in
batch) for b in ${BATCHES:-16 32 64}; do bench "$b" "$CHEAP" "cheap"; done ;;
zoo) bench "$BATCH" all "zoo" ;;
fisher) bench "$BATCH" fisher "zoo" --option fisher.reduction=suite_zero ;;
*) echo "unknown part $1; choose batch, zoo or fisher" >&2; exit 2 ;;
esac
