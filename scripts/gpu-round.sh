#!/usr/bin/env bash
# One training round on a lent GPU machine (torch + CUDA; no ASE, pymatgen or network there).
# It needs the training pack (`dosmatgen pack`) and the ASE wheel (for the predictor's neighbour
# lists) carried along: run it through the device tool with carry = data/cache/train-pack.npz, .whl
#
#   generator: three warm-started fine-tunes side by side on the one GPU, to measure the
#              conditioning-DOS augmentation (aug vs plain) and a lower labelled share;
#   predictor: three architectures × three seeds (the seeds make an ensemble).
#
# Results come back under $OUT as tar files of slim states (EMA weights), logs and configs.
# Knobs: GEN_MINUTES (7), PRED_EPOCHS (150), PRED_MINUTES (6), OUT (a folder).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-round-out}
mkdir -p "$OUT" runs/gpu
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
PACK=data/cache/train-pack.npz
GEN_MINUTES=${GEN_MINUTES:-7}
PRED_EPOCHS=${PRED_EPOCHS:-150}
PRED_MINUTES=${PRED_MINUTES:-6}
DMG="python3 -m dosmatgen_core.cli"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

gen() {  # name, extra flags (a repeated flag: the last one wins)
    local name=$1; shift
    $DMG train --run-dir runs/gpu/$name --pack $PACK --init-from assets/denoiser.pt \
        --labelled-share 0.15 --epochs 10000 --max-minutes "$GEN_MINUTES" --threads 1 "$@" \
        > runs/gpu/$name.log 2>&1 &
}
gen aug --dos-shift 0.15 --dos-scale 0.1
gen plain
gen share08 --dos-shift 0.15 --dos-scale 0.1 --labelled-share 0.08

pred() {  # name, seed, extra flags
    local name=$1 seed=$2; shift 2
    $DMG train-predictor --run-dir runs/gpu/p-$name-$seed --pack $PACK --device "${PRED_DEVICE:-cuda}" \
        --epochs "$PRED_EPOCHS" --max-minutes "$PRED_MINUTES" --threads 1 --seed "$seed" "$@" \
        > runs/gpu/p-$name-$seed.log 2>&1 &
}
for s in 0 1 2; do
    pred base $s
    pred drop $s --dropout 0.1 --weight-decay 1e-2
    pred wide $s --hidden 192 --dropout 0.1 --weight-decay 1e-2
done
wait
tail -n 3 runs/gpu/*.log

# slim states: EMA weights and what export needs (no optimiser, no raw weights)
python3 - <<'EOF'
import glob, torch
for f in glob.glob("runs/gpu/*/last.pt"):
    st = torch.load(f, map_location="cpu", weights_only=True)
    keep = {k: v for k, v in st.items() if k not in ("model", "opt")}
    torch.save(keep, f.replace("last.pt", "slim.pt"))
EOF
for name in aug plain share08; do
    tar -cf "$OUT/gen-$name.tar" -C runs/gpu $name/slim.pt $name/log.csv $name/config.json $name.log
done
for name in base drop wide; do
    tar -cf "$OUT/pred-$name.tar" -C runs/gpu $(cd runs/gpu && ls -d p-$name-*/slim.pt p-$name-*/log.csv p-$name-*/heldout.json p-$name-*.log 2>/dev/null)
done
ls -la "$OUT"
