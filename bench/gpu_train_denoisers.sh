#!/usr/bin/env bash
# Train the two shipped denoisers on from their shipped weights (--init with a warm-up) on a lent GPU, side by
# side, for TRAIN_S seconds, and bring back their checkpoints (what the 2026-11-26 leases did from training
# states, which are no longer kept in the repository; the model cards' commands record each run).
#   TRAIN_S=530 OUT=/some/dir bash bench/gpu_train_denoisers.sh      # REDCORE_DATA: train400 and test/Set12
#   (BACKEND=cpu runs the same on the CPU, to try the script without a GPU)
# Each denoiser runs a chain of phases, "LR:STEPS:WARMUP" (STEPS beyond the checkpoint's step; the last phase's
# STEPS may be empty: until TRAIN_S), so a lease can end a warm-restart cycle with a decayed step size:
#   PHASES25="7e-6:600:50 2e-6::0" PHASES50="2e-5:400:100 7e-6:400:0 2e-6::0"
# An empty PHASES50 (or PHASES25) leaves that denoiser out, so the other has the GPU to itself; CKPT25 / CKPT50
# resume a training state instead (e.g. a CPU run's, carried in a git-excluded folder); without one, the first
# phase starts from the shipped weights (INIT25 / INIT50, default the shipped denoisers) with its warm-up, and
# the phases after it resume; PARITY=0 leaves the parity tests out.
# Writes 8 files to $OUT (d25.log, d25-checkpoint.npz, d25-best.npz where validation improved, the same for d50,
# gpu.txt, parity.log), refreshed every 30 s, so a call cut short still returns the latest.  Then, here:
#   mkdir -p runs/g25 && cp OUT/d25-checkpoint.npz runs/g25/checkpoint.npz && cp OUT/d25-best.npz runs/g25/best.npz
#   python tools/ship_model.py runs/g25/checkpoint.npz --best --ensemble --name red20-denoise-sigma25 ...
# The device tool carries at most 64 MiB of working tree: carry the data and any training state in a
# git-excluded folder.
set -u
TRAIN_S=${TRAIN_S:-530}
OUT=${OUT:?set OUT to the folder that comes back}
PHASES25=${PHASES25-2e-5::100}
PHASES50=${PHASES50-1e-5::100}
CKPT25=${CKPT25:-}
CKPT50=${CKPT50:-}
INIT25=${INIT25:-red20-denoise-sigma25}
INIT50=${INIT50:-red20-denoise-sigma50}
t0=$(date +%s)
# Without `pip install -e .` (it needs the network): the two links setup.py's package_dir makes.
python3 -c "import redcore.kernels" 2>/dev/null || { ln -sfn ../kernels/cpu redcore/kernels; ln -sfn ../kernels/cuda redcore/cuda_kernels; }
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
# Parity first: TF32 stays off there (tests/conftest.py pins CUPY_TF32=0), on only for the trainings below.
if [ "${PARITY:-1}" != 0 ]; then
  timeout 150 python3 -m pytest -q tests/test_backend_parity.py tests/test_cuda_kernels.py -rs > "$OUT/parity.log" 2>&1
  echo "parity rc $? at $(( $(date +%s) - t0 )) s" >> "$OUT/parity.log"
fi
R=${RUNS:-/tmp/runs}
common="--task denoise --depth 20 --filters 64 --backend ${BACKEND:-cuda} --batch 128 --val-every 100 --ckpt-every 100
        --no-progress --threads 6"
checkpoint_step() {  # the training step a checkpoint was saved at (its header's state)
  python3 -c "import sys; from redcore.io import load_arrays; print(load_arrays(sys.argv[1])[0]['state']['step'])" "$1"
}
run_phases() {  # LEVEL INIT "LR:STEPS:WARMUP ..." -> one train.py per phase, each resuming the last one's
  local level=$1 init=$2 phase lr n warmup start from  # checkpoint (the first starts from INIT without one)
  for phase in $3; do
    IFS=: read -r lr n warmup <<< "$phase"
    if [ -f "$R/d$level/checkpoint.npz" ]; then
      start=$(checkpoint_step "$R/d$level/checkpoint.npz"); from=--resume
    else
      start=0; from="--init $init"
    fi
    echo "phase lr $lr warmup ${warmup:-0} from step $start ($from) for ${n:-all remaining} steps"
    CUPY_TF32=1 python3 examples/train.py $common $from --level "$level" --lr "$lr" --warmup "${warmup:-0}" \
      --steps $(( ${n:-1000000} + start )) --out "$R/d$level" || return
  done
}
pids=()
for level in 25 50; do
  phases=PHASES$level; checkpoint=CKPT$level; init=INIT$level
  [ -n "${!phases}" ] || continue
  mkdir -p "$R/d$level"
  [ -f "$R/d$level/checkpoint.npz" ] || [ -z "${!checkpoint}" ] || cp "${!checkpoint}" "$R/d$level/checkpoint.npz"
  run_phases "$level" "${!init}" "${!phases}" > "$OUT/d$level.log" 2>&1 &
  pids+=($!)
done
any_running() {
  local pid
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
sync_out() {
  for r in d25 d50; do
    [ -f "$R/$r/checkpoint.npz" ] && cp "$R/$r/checkpoint.npz" "$OUT/$r-checkpoint.npz"
    [ -f "$R/$r/best.npz" ] && cp "$R/$r/best.npz" "$OUT/$r-best.npz"
  done
  return 0
}
n=0
while [ $(( $(date +%s) - t0 )) -lt "$TRAIN_S" ] && any_running; do
  sleep 5; n=$((n + 1))
  [ $((n % 6)) -eq 0 ] && sync_out
  [ $n -eq 24 ] && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >> "$OUT/gpu.txt" 2>&1
done
# A phase's train.py first (its run_phases then returns on the failed status), then the chain itself.
for pid in "${pids[@]}"; do pkill -P "$pid" 2>/dev/null; kill "$pid" 2>/dev/null; done; wait
sync_out
echo "done at $(( $(date +%s) - t0 )) s" >> "$OUT/parity.log"
