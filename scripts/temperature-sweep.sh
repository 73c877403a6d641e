#!/usr/bin/env bash
# Sample quality at matched diversity: the same passages and masks (Brown, 100 passages, half
# masked) sampled at several temperatures by MARIA and the baselines that use the right context
# (plus AR only), one `maria eval` per temperature, two at a time. Gen-ppl rewards sharp sampling,
# so a method is only better if it wins at the same distinct-2 / surprisal, not just at T = 1.
# Environment: TEMPS, RATE (mask rate, default 0.5), OUT, BIN. Resumable: rerun the script and
# every eval continues from its checkpoint. Ends with `maria frontier`, which writes
# $OUT/frontier.md and one plot.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-dist/cli/main.js}
OUT=${OUT:-reports/brown-temperature-n100}
TEMPS=${TEMPS:-"0.7 0.85 1 1.15 1.3"}
RATE=${RATE:-0.5}
run() {
  node "$BIN" eval --data brown --n 100 --length 128 --mask-rates "$RATE" --methods maria,mlm-l2r,mdlm-M,ar \
    --samples 4 --temperature "$1" --bundle models/default --scorer models/scorer --no-throughput \
    --out "$OUT/t$1" --threads 1 --no-progress --resume
}
set -- $TEMPS
while [ $# -gt 0 ]; do
  run "$1" & a=$!
  if [ $# -gt 1 ]; then run "$2" & b=$!; wait $b; shift; fi
  wait $a
  shift
done
dirs=()
for t in $TEMPS; do dirs+=("$OUT/t$t"); done
node "$BIN" frontier "${dirs[@]}" --out "$OUT"
