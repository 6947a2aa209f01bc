# Sourced by scripts/gpu-round.sh and scripts/gpu-predictors.sh: how a run comes back from a lent
# GPU machine (the device tool returns only what lies under $OUT, a few files at most).

# tar_back NAME "FILES" RUN...: $OUT/NAME.tar holding, for each RUN, those of FILES that
# runs/gpu/RUN has (in that order) and then runs/gpu/RUN.log
tar_back() {
    local name=$1 want=$2 files="" r f
    shift 2
    for r in "$@"; do
        for f in $want; do [ -e "runs/gpu/$r/$f" ] && files="$files $r/$f"; done
        files="$files $r.log"
    done
    tar -cf "$OUT/$name.tar" -C runs/gpu $files
}
