#!/usr/bin/env bash
# One generator training round on a lent GPU machine (torch + CUDA; no ASE, pymatgen or network
# there). It needs the training pack (`dosmatgen pack`) and the ASE wheel carried along: run it
# through the device tool with carry = data/cache/train-pack.npz, .whl
#
#   Five runs side by side on the one GPU, all on the pack's labels: four warm-started from the
#   shipped model (the CPU recipe; twice the labelled share; a third of the learning rate; another
#   seed, to see how far two equal recipes differ) and one from scratch.
#   PRED=1 adds the predictor runs (three seeds of the shipped recipe): they read CHGNet's atom
#   features from the pack, so make it with `dosmatgen pack --chgnet-features`.
#
# What comes back under $OUT, one tar per run (the device returns at most 8 files, 64 MiB): the
# EMA weights of the best epoch by validation loss and by labelled validation loss, in float16
# (4 MB each, inference-exact to ~1e-3), the run's metadata (DOS standardisation, config), logs.
# Back here: `tar -xf NAME.tar -C runs/gpu-X && dosmatgen restore-run runs/gpu-X/NAME`, then export-model.
# Knobs: GEN_MINUTES (8), OUT (a folder), PACK, GEN_EXTRA (flags added to every run, e.g. for a dry run).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-round-out}
mkdir -p "$OUT" runs/gpu
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
PACK=${PACK:-data/cache/train-pack.npz}
GEN_MINUTES=${GEN_MINUTES:-8}
source "$(dirname "${BASH_SOURCE[0]}")/tar-back.sh" || exit 1
DMG="python3 -m dosmatgen_core.cli"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

gen() {  # name, extra flags (a repeated flag: the last one wins)
    local name=$1; shift
    $DMG train --run-dir runs/gpu/$name --pack $PACK --labelled-share 0.15 --dos-shift 0.15 --dos-scale 0.1 \
        --epochs 10000 --max-minutes "$GEN_MINUTES" --threads 1 "$@" ${GEN_EXTRA:-} > runs/gpu/$name.log 2>&1 &
}
WARM="--init-from assets/denoiser.pt --lr 3e-4"
gen warm $WARM
gen share30 $WARM --labelled-share 0.30
gen lr1e-4 $WARM --lr 1e-4
gen seed1 $WARM --seed 1
gen scratch

if [ "${PRED:-0}" = 1 ]; then
    for s in 0 1 2; do
        $DMG train-predictor --run-dir runs/gpu/p-$s --pack $PACK --device cuda --epochs 40 --threads 1 \
            --seed $s --dropout 0.1 --weight-decay 1e-2 --chgnet > runs/gpu/p-$s.log 2>&1 &
    done
fi
(sleep 120; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader) &
wait
tail -n 2 runs/gpu/*.log

for d in runs/gpu/*/; do   # generator runs: float16 best states + metadata (training.halve_run)
    [ -e "$d/best.pt" ] && python3 -c "import sys; from dosmatgen_core.training.denoiser import halve_run; halve_run(sys.argv[1])" "$d"
done
for d in runs/gpu/*/; do
    name=$(basename "$d")
    files="log.csv config.json meta.pt best-half.pt best-labelled-half.pt heldout.json"
    [ -e "$d/heldout.json" ] && files="$files last.pt"   # predictor runs: small states
    tar_back "$name" "$files" "$name"
done
ls -la "$OUT"
