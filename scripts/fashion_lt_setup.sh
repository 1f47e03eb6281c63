# Sourced by the Fashion-LT study scripts (from the repository root): the tool, the benchmark
# and the 2-epoch backbone their recorded tables use (88.1% held-out; the demo pretrains 3
# epochs), each made when missing. Sets TOOL, RUNS (default runs), DATA and BACKBONE.
TOOL=build/cprfl
RUNS=${RUNS:-runs}
DATA="$RUNS/fashion-lt"
BACKBONE="$RUNS/backbone_small_2ep.cprfl"
[ -x "$TOOL" ] || bash scripts/setup.sh
[ -f "$DATA/stats.json" ] || "$TOOL" make-fashion-lt --out "$DATA" > /dev/null
[ -f "$BACKBONE" ] || "$TOOL" pretrain-backbone --epochs 2 --out "$BACKBONE"
