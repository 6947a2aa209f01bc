#!/usr/bin/env bash
# Site-DOS predictor variants side by side on a lent GPU machine (torch + CUDA; no CHGNet, pymatgen
# or network there): does more capacity or longer training bring the predictor nearer the 0.10
# states/eV goal on generated candidates? Three seeds of each variant, so that each is judged as the
# ensemble it would ship as.
#
# It needs a pack with CHGNet's atom features (`dosmatgen pack --chgnet-features`) and the ASE wheel:
# run it through the device tool with carry = the pack's folder, .whl
#
# What comes back under $OUT: one tar per variant with each seed's run (EMA weights only, in float16:
# inference-exact to ~1e-3; config, log, held-out scores). Back here:
#   tar -xf NAME.tar -C runs/gpu-pred && dosmatgen export-predictor --run-dir runs/gpu-pred/NAME-0 ...
# then `python -m benchmarks.predictor_check --predictor ...` on the candidates none of them saw.
# Knobs: MINUTES (7, per run), PACK, OUT, VARIANTS (names below).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-pred-out}
PACK=${PACK:-runs/gpu-pred/pack.npz}
MINUTES=${MINUTES:-7}
source "$(dirname "${BASH_SOURCE[0]}")/tar-back.sh" || exit 1
mkdir -p "$OUT" runs/gpu
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

# name -> flags; "base" is the shipped recipe (assets/predictor.card.json)
declare -A FLAGS=(
    [base]="--hidden 128 --layers 3 --epochs 40"
    [wide]="--hidden 256 --layers 4 --epochs 40"
    [wide-long]="--hidden 256 --layers 4 --epochs 120 --lr 1e-3"
    [long]="--hidden 128 --layers 3 --epochs 120 --lr 1e-3"
)
VARIANTS=${VARIANTS:-base wide wide-long long}
for v in $VARIANTS; do
    for s in 0 1 2; do
        python3 -m dosmatgen_core.cli train-predictor --run-dir runs/gpu/$v-$s --pack "$PACK" --device cuda \
            --threads 1 --seed $s --chgnet --dropout 0.1 --max-minutes "$MINUTES" ${FLAGS[$v]} \
            > runs/gpu/$v-$s.log 2>&1 &
    done
done
(sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader) &
wait
for f in runs/gpu/*.log; do echo "$f: $(grep -c '^epoch' "$f") logged epochs; $(tail -n 1 "$f")"; done

# the EMA weights alone, in float16: what export-predictor reads (the optimiser state stays behind)
python3 - <<'EOF'
import glob, torch
for p in glob.glob("runs/gpu/*/last.pt"):
    st = torch.load(p, map_location="cpu", weights_only=True)
    keep = {k: st[k] for k in ("epoch", "config", "label_shards") if k in st}
    keep["ema"] = {k: v.half() if v.is_floating_point() else v for k, v in st["ema"].items()}
    torch.save(keep, p)
EOF
for v in $VARIANTS; do
    tar_back "$v" "last.pt log.csv heldout.json" "$v-0" "$v-1" "$v-2"
done
ls -la "$OUT"
