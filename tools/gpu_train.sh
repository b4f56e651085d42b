#!/bin/bash
# Train lite0 runs side by side on one GPU in one sitting: build the data in parallel, then train.
#
#   COCO=DIR/annotations.json bash tools/gpu_train.sh [scenes per shard (100)] [shards (12)] [minutes at most (5)]
#
# Data (docs/training.md, "The shipped model"): SHARDS x N synthetic scenes at each edge coverage the
# runs name (same images), with the six simulators' coarse masks; the COCO dataset's patches from
# eight simulators with a 2-px ignore band, counted twice. RUNS lists the runs as
# NAME:EDGE-COVERAGE:INPUT-SIZE:BATCH:LR[:bf16] (default the shipped recipe's twins,
# "a:0.5:64:128:0.01 b:0.7:64:128:0.01"; bf16: `train --bf16`); each starts from INIT (default: the
# shipped weights) and trains on DEVICE (cuda) until DEADLINE seconds after the start (default 545)
# or for the minutes given, whichever is sooner. SEED (600) numbers the scenes: shard k is scene
# seed SEED + k, prediction seed SEED + 100 + k; SHADOWS (0) is their `synth --shadows`. Writes OUT/NAME.pt (refreshed every 30 s),
# OUT/NAME_mid.pt (the weights at half time) and OUT/NAME.log (the checkpoints stay in WORK); with
# BENCH=1 also OUT/bench_cuda.txt (bench/bench_engine.py --cuda, while the data is built).
# WHEELS=DIR: wheels unpacked into /tmp/site first (a machine that cannot reach PyPI).
# tools/crop_dataset.py shrinks a COCO dataset to carry it to such a machine.
set -u
N=${1:-100}; SHARDS=${2:-12}; MAXMIN=${3:-5}
: "${COCO:?set COCO to a COCO annotations.json whose images lie beside it}"
RUNS=${RUNS:-a:0.5:64:128:0.01 b:0.7:64:128:0.01}
DEVICE=${DEVICE:-cuda}; DEADLINE=${DEADLINE:-545}; INIT=${INIT:-bpr_studio/resources/weights/bpr_lite0_64.pt}
W=${WORK:-/tmp/bpr_gpu_work}; O=${OUT:-gpu_out}; mkdir -p "$W" "$O"
T0=$(date +%s); log() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
if [ -n "${WHEELS:-}" ]; then
  python3 -c "import glob, sys, zipfile; [zipfile.ZipFile(w).extractall('/tmp/site') for w in glob.glob(sys.argv[1] + '/*.whl')]" "$WHEELS"
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
# cores from the scheduler (nproc would answer OMP_NUM_THREADS, set below for the data jobs)
CORES=$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")
NRUNS=$(echo $RUNS | wc -w); COVERAGES=$(for r in $RUNS; do echo "$r" | cut -d: -f2; done | sort -u)
WORKERS=$(( CORES > 2 * NRUNS + 1 ? (CORES - NRUNS) / NRUNS : 1 ))
python3 -c "import torch, numpy, cv2, pycocotools; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())" || exit 1
log "$CORES cores, $WORKERS batch workers per run; /dev/shm: $(df -h /dev/shm 2>/dev/null | tail -n 1)"
if [ -n "${BENCH:-}" ]; then
  (python3 bench/bench_engine.py --cuda --threads 2 --repeats 3 > "$O/bench_cuda.txt" 2>&1; echo "rc=$?" >> "$O/bench_cuda.txt") &
fi
cat > "$W/job.sh" <<'JOB'
#!/bin/bash
# job.sh coco NAME SIMULATE-ARGS... | job.sh synth SHARD EDGE-COVERAGE
B="python3 -m bpr_studio"
ex() { $B train --iters 0 --out "$WORK/none.pt" --quiet --device cpu --save-patches "$@"; }
if [ "$1" = coco ]; then
  name=$2; shift 2; D=$(dirname "$COCO")
  $B simulate --annotations "$COCO" --images "$D" --out "$WORK/c_$name.json" "$@" && \
  ex "$WORK/c_$name.npz" --images "$D" --annotations "$COCO" --predictions "$WORK/c_$name.json" --boundary-band 2
else
  k=$2; ec=$3; S=$WORK/s${ec}_$k
  $B synth --out "$S" --images "$SCENES" --seed $((SEED + k)) --prediction-seed $((SEED + 100 + k)) --edge-coverage "$ec" \
    --shadows "$SHADOWS" || exit 1
  sim() { $B simulate --annotations "$S/annotations.json" --out "$S/$1.json" "${@:2}"; }
  sim p2 --seed 2 --threshold 0.4 && sim p3 --seed 3 --style contour && \
  sim p4 --seed 4 --style quarter --noise 0.1 --threshold 0.4 && \
  sim p5 --seed 5 --box-jitter 0.08 --noise 0.15 --threshold 0.35 && \
  sim wide --seed 7 --style contour --box-jitter 0.2 && sim wider --seed 8 --style contour --box-jitter 0.3 || exit 1
  A="--annotations $S/annotations.json"
  ex "$S/bal.npz" $A --predictions "$S/predictions.json" --predictions "$S/p2.json" --predictions "$S/p3.json" \
     --predictions "$S/p4.json" --predictions "$S/p5.json" && \
  ex "$S/wide.npz" $A --predictions "$S/wide.json" && ex "$S/wider.npz" $A --predictions "$S/wider.json"
fi
JOB
{
  echo "coco p1 --seed 1"; echo "coco p2 --seed 2 --threshold 0.4"; echo "coco p3 --seed 3 --style contour"
  echo "coco p4 --seed 4 --style quarter --noise 0.1 --threshold 0.4"
  echo "coco p5 --seed 5 --box-jitter 0.08 --noise 0.15 --threshold 0.35"
  echo "coco p6 --seed 6 --style contour --box-jitter 0.15"
  echo "coco wide --seed 7 --style contour --box-jitter 0.2"; echo "coco wider --seed 8 --style contour --box-jitter 0.3"
  for k in $(seq 0 $((SHARDS - 1))); do for ec in $COVERAGES; do echo "synth $k $ec"; done; done
} > "$W/jobs.txt"
log "data: $(wc -l < "$W/jobs.txt") jobs on $CORES cores"
WORK=$W SCENES=$N COCO=$COCO SEED=${SEED:-600} SHADOWS=${SHADOWS:-0} OMP_NUM_THREADS=1 xargs -P "$CORES" -L 1 bash -c \
  'bash "$WORK/job.sh" "$@" > "$WORK/log_$(echo "$@" | tr " ." "__").txt" 2>&1 || echo "FAILED: $@ (log in $WORK)"' _ < "$W/jobs.txt"
log "data done: $(ls "$W"/c_*.npz "$W"/s*/*.npz 2>/dev/null | wc -l) patch files, $(du -sh "$W" | cut -f1)"
left=$(( DEADLINE - ($(date +%s) - T0) - 50 ))  # 50 s to load the patches and write the last checkpoint
MIN=$(python3 -c "print(round(max(0.5, min($MAXMIN, $left / 60)), 2))")
log "training for $MIN min on $DEVICE"
CP=$(ls "$W"/c_*.npz | sed 's/^/--patches /' | tr '\n' ' ')
PIDS=""
for run in $RUNS; do
  IFS=: read -r name ec size batch lr bf16 <<< "$run"
  SP=$(ls "$W"/s${ec}_*/*.npz | sed 's/^/--patches /' | tr '\n' ' ')
  python3 -m bpr_studio train $SP $CP $CP --model lite0 --input-size "$size" --batch-size "$batch" --lr "$lr" \
    --iters 1000000 --minutes "$MIN" --seed 21 --init "$INIT" --device "$DEVICE" --workers "$WORKERS" \
    --checkpoint-minutes 0.5 --out "$W/$name.pt" --log "$O/$name.log" --quiet ${bf16:+--bf16} >> "$O/$name.log" 2>&1 &
  PIDS=${PIDS:+$PIDS,}$!
done
# the weights at half time; GPU load and each run's latest rate meanwhile
(sleep "$(python3 -c "print(int($MIN * 30) + 20)")"; for run in $RUNS; do n=${run%%:*}; cp "$W/$n.pt" "$O/${n}_mid.pt"; done) &
MID=$!
i=0
while sleep 5 && ps -p "$PIDS" > /dev/null; do
  [ $(( ++i % 6 )) = 0 ] || continue
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
  for run in $RUNS; do n=${run%%:*}; grep "patches/s" "$O/$n.log" | tail -n 1; cp "$W/$n.pt" "$O/$n.pt" 2> /dev/null; done
done
kill $MID 2> /dev/null; wait
for run in $RUNS; do n=${run%%:*}; cp "$W/$n.pt" "$O/$n.pt"; done
log "done"; for run in $RUNS; do tail -n 3 "$O/${run%%:*}.log"; done
