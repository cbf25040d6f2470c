#!/usr/bin/env bash
# Issue 5's evaluation of the spaces other than NB201 on their real ground truth (docs/reproduction.md,
# "Other spaces"). Every run is a resumable `lswag bench`; rerunning skips what its store holds.
#   bash benchmarks/evaluate_spaces.sh cifar|tnb|autoformer   (N=100, WORKERS=1, OUT=runs/eval by default;
#   TASKS="autoencoder jigsaw" limits tnb to those tasks, SPACES="nb301 darts" limits a part to those spaces)
# The proxies are the zoo less the ones costing 1.5 floors or more each (grasp, te_ntk_cond, zen) and the
# ensembles' own components (az_*, te_linear_regions, tcet): on 2 CPU cores the whole zoo costs 14 floors.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100}; WORKERS=${WORKERS:-1}; OUT=${OUT:-runs/eval}; B=../shared/benchmarks; I=../shared/images
P=${PROXIES:-l_swag,zico,swap,reg_swap,nwot,synflow,params,flops,grad_norm,snip,fisher,plain,l2_norm,jacov,epe_nas}
mkdir -p "$OUT"
# bench SPACE ARGS...: one resumable run, skipped when SPACES is set and leaves SPACE out.
bench() {
  [[ -z "${SPACES:-}" || " $SPACES " == *" $1 "* ]] || return 0
  lswag bench --space "$1" --n "$N" --proxies "$P" --seed 0 --workers "$WORKERS" "${@:2}"
}

case "${1:?cifar, tnb or autoformer}" in
cifar)
  # NB101: Suite-Zero's 500 rows are 301 distinct cells (the others prune to one of them); seeds averaged.
  bench nb101 --truth $B/nasbench101/nb101_suite0_partial_11proxies.csv --dataset cifar10 \
    --arch-column naslib_encoding --duplicates mean --metric val_accuracy \
    --data npz:$I/cifar10_sample.npz --batch-size 64 --store "$OUT/nb101.sqlite" --out "$OUT/nb101"
  # NB301 as NAS-Bench-301 trained it: C=32, 8 cells, no auxiliary head.
  bench nb301 --truth $B/nasbench301/nb301_suite0_partial_13proxies.csv --dataset cifar10 \
    --arch-column genotype --metric val_accuracy \
    --data npz:$I/cifar10_sample.npz --batch-size 64 --store "$OUT/nb301.sqlite" --out "$OUT/nb301"
  # SWAP's 1000 DARTS cells (their own unpublished reduced recipe): scored at C=16, 8 cells.
  bench darts --truth $B/darts_cifar10_swap/DARTS_archs_CIFAR10.csv --column-names genotype,valid_acc \
    --arch-column genotype --metric valid_acc --build C=16 --build layers=8 \
    --data npz:$I/cifar10_sample.npz --batch-size 64 --store "$OUT/darts.sqlite" --out "$OUT/darts" ;;
tnb)
  # TransNAS-Bench-101 at batch 32 of ImageNet images at 64x64 (the benchmark's 256x256 costs 16x more on a
  # CPU); targets made from the images (lswag.spaces.tnb101.task_batch). Tab. 3's tasks first.
  for task in ${TASKS:-autoencoder jigsaw normal class_scene class_object room_layout segmentsemantic}; do
    for kind in micro macro; do
      bench tnb101_$kind --truth $B/transnasbench101_$kind/tnb101_${kind}_groundtruth_wide.csv \
        --metric $task --build task=$task --data npz:$I/imagenet_sample_224.npz --batch-size 32 --image-size 64 \
        --store "$OUT/tnb101_$kind.sqlite" --out "$OUT/tnb101_${kind}_$task"
    done
  done ;;
autoformer)
  python benchmarks/autoformer_bias.py --n "$N" --proxies "$P" --workers "$WORKERS" --batch-size "${BATCH:-16}" --store "$OUT/autoformer_s.sqlite" --out "$OUT/autoformer_s" ;;
*) echo "unknown part $1; choose cifar, tnb or autoformer" >&2; exit 2 ;;
esac
