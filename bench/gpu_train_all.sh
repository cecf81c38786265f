#!/usr/bin/env bash
# Train one network per task over all its levels (a "blind" network: the paper's single model for several
# levels) on a lent GPU, for TRAIN_S seconds in all, and bring back what it trained, refreshed as it goes.
#   TRAIN_S=600 OUT=/some/dir bash bench/gpu_train_all.sh         # REDCORE_DATA: train400 and test/<sets>
#   TASKS="sr jpeg" DEPTH=30 FILTERS=128 BATCH=64 ... ; BACKEND=cpu tries it without a GPU
# Each task gets TRAIN_S / (number of tasks) seconds (examples/train.py --seconds stops it at a step boundary,
# validated and checkpointed).  A task whose run folder ($RUNS/<task>) holds a checkpoint resumes it; else it
# starts from INIT_<task> (a shipped model's name or a weight file of the same network) with a warm-up, or
# from scratch.  Validation: the central crops of the task's paper set (Set12, Set5 or classic5), each at every
# level the card is scored at (--val-levels each), so best.npz is the best on the mean the card reports.
# Writes to $OUT, per task: <task>.log, <task>-best.npz, <task>-checkpoint.npz, <task>-curves.png,
# <task>-summary.json; then, here: tools/ship_model.py <run>/checkpoint.npz --best --name ... ships one.
# PROBE_S=60 first trains each task's network with 64 and with 128 filters for PROBE_S seconds each and writes
# <task>-probe.txt (the validation PSNR each reached in the same GPU time), to choose the width by measurement.
set -u
TRAIN_S=${TRAIN_S:-600}
OUT=${OUT:?set OUT to the folder that comes back}
TASKS=${TASKS:-denoise sr jpeg deblur inpaint}
DEPTH=${DEPTH:-30}; FILTERS=${FILTERS:-64}; BATCH=${BATCH:-64}; LR=${LR:-1e-4}; WARMUP=${WARMUP:-100}
BACKEND=${BACKEND:-cuda}
R=${RUNS:-/tmp/runs-all}
DATA=${REDCORE_DATA:-../shared/data}
declare -A LEVELS=([denoise]="0-75" [sr]="2,3,4" [jpeg]="10-40" [deblur]="disk,gaussian,motion"
                   [inpaint]="text10,text20,scratches")
declare -A VAL_SET=([denoise]=Set12 [sr]=Set5 [jpeg]=classic5 [deblur]=Set12 [inpaint]=Set12)
# Without `pip install -e .` (it needs the network): the two links setup.py's package_dir makes.
python3 -c "import redcore.kernels" 2>/dev/null || { ln -sfn ../kernels/cpu redcore/kernels; ln -sfn ../kernels/cuda redcore/cuda_kernels; }
export PYTHONUNBUFFERED=1
[ "$BACKEND" = cuda ] && export CUPY_TF32=1          # TF32 convolutions, as PyTorch's cuDNN default
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
train() {  # TASK FILTERS SECONDS RUN_FOLDER [more train.py arguments]
  local task=$1 filters=$2 seconds=$3 run=$4; shift 4
  python3 examples/train.py --task "$task" --level "${LEVELS[$task]}" --depth "$DEPTH" --filters "$filters" \
    --backend "$BACKEND" --batch "$BATCH" --lr "$LR" --steps 100000000 --seconds "$seconds" \
    --val "$DATA/test/${VAL_SET[$task]}" --val-levels each --val-every 200 --ckpt-every 200 --no-progress \
    --out "$run" "$@"
}
if [ -n "${PROBE_S:-}" ]; then
  for task in $TASKS; do
    for filters in 64 128; do
      train "$task" "$filters" "$PROBE_S" "$R/probe-$task-$filters" >> "$OUT/$task.log" 2>&1
      python3 - "$R/probe-$task-$filters/summary.json" "$filters" "$PROBE_S" >> "$OUT/$task-probe.txt" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]} filters: validation {s['val_psnr']:.2f} dB after {sys.argv[3]} s ({s['steps']} steps; "
      f"corrupted input {s['noisy_psnr']:.2f} dB)")
PY
    done
  done
fi
count=$(wc -w <<< "$TASKS")
per_task=$(( TRAIN_S / count ))
for task in $TASKS; do
  run="$R/$task"; mkdir -p "$run"
  if [ -f "$run/checkpoint.npz" ]; then
    from=(--resume)
  else
    init_var="INIT_$task"
    from=(${!init_var:+--init "${!init_var}" --warmup "$WARMUP"})
  fi
  echo "== $task ${LEVELS[$task]}: ${per_task} s, ${from[*]:-from scratch}" >> "$OUT/$task.log"
  train "$task" "$FILTERS" "$per_task" "$run" "${from[@]}" >> "$OUT/$task.log" 2>&1
  echo "exit $? at $(date +%s)" >> "$OUT/$task.log"
  for f in best.npz checkpoint.npz curves.png summary.json; do
    [ -f "$run/$f" ] && cp "$run/$f" "$OUT/$task-$f"
  done
done
