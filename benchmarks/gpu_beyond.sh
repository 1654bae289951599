#!/usr/bin/env bash
# Issue #25's measurements in one call on one GPU machine (an H200 with 16 cores was used; ~9 minutes):
#   - the chest X-ray (64 px) and AdrenalMNIST3D (32^3, ACS) tables of every strategy at lr 1e-3 and 1e-2, 3 seeds;
#   - the record attempts: chest X-rays, AdrenalMNIST3D and BreastMNIST configurations, with an ensemble of each
#     configuration's seeds.
# Four jobs share the GPU (each a `medtl compare` with its own worker processes); at DEADLINE seconds what is still
# training is stopped, and every finished run (its metrics, predictions and history, not its weights) and every log
# is packed into the one file $OUT/results.tgz (the device tool brings back at most 8 files). Every command is a plain
# `medtl compare` / `medtl ensemble`: any one of them reproduces a row on its own. As recorded on 2026-12-04 the 3D
# table left LoRA out (it refused volumes then); its rows were trained afterwards on a CPU with the same command.
#
# Data travels in .carry/ (ignored by git): the chest X-rays resized once to 64 px by benchmarks/resize_manifest.py
# (the same pixels medtl trains on at --image-size 64), adrenalmnist3d.npz and breastmnist.npz; the pip packages that
# the machine lacks travel as wheels in .whl/. Locally: PY=.venv/bin/python OUT=runs/gpu-out bash benchmarks/gpu_beyond.sh
set -u
cd "$(dirname "$0")/.."
start=$(date +%s)
OUT=${OUT:-runs/gpu-out}; R=${R:-runs/gpu}; DEADLINE=${DEADLINE:-500}; PY=${PY:-python3}
S3=${S3:-0,1,2}; S5=${S5:-0,1,2,3,4}; E2D=${E2D:-15}; E3D=${E3D:-30}; CXR=${CXR:-.carry/kermany64/manifest.csv}
ROOT=${ROOT:-.carry}; ADR=${ADR:-"--data adrenalmnist3d --data-root $ROOT"}; JOBS=${JOBS:-"cxr_table adr_table cxr_records breast_records"}
WHEELS=${WHEELS:-.whl}; W1=${W1:-6}; W2=${W2:-3}; W3=${W3:-2}  # worker processes per job
LOGS=$R/logs
mkdir -p "$OUT" "$LOGS"
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
# CUDA MPS lets the runs' small kernels from many processes share the GPU at once; it is kept only if a CUDA process
# starts under it (MPS=0 skips it)
if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p /tmp/mps-pipe /tmp/mps-log
  if nvidia-cuda-mps-control -d && timeout 45 $PY -c "import torch; torch.ones(1, device='cuda'); print('MPS on')"; then :
  else echo quit | nvidia-cuda-mps-control; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; echo "MPS off"; fi
fi
M="$PY -m medtl"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$PY -c "import torch, timm, peft, numpy, sklearn; print('torch', torch.__version__, 'timm', timm.__version__, 'peft', \
peft.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())" || exit 1

STRATS=truncated,full,surgical,auto-rgn,bitfit,ssf,lora,head2toe,linear
X="--data $CXR --group-by patient --image-size 64 --epochs $E2D --patience 5 --warmup-epochs 1 --no-plots --threads 1"
A="$ADR --image-size 32 --volume acs --epochs $E3D --patience 10 --warmup-epochs 1 \
--no-plots --threads 1"
B="--data breastmnist --data-root $ROOT --image-size 64 --epochs $E2D --patience 5 --no-plots --threads 1"

cxr_table() {  # 9 strategies x 2 rates x 3 seeds
  for lr in 1e-3 1e-2; do
    $M compare $X --strategies $STRATS --cuts blocks.3 --seeds $S3 --lr $lr --workers $W1 --out $R/cxr64-lr$lr
  done
}
adr_table() {
  for lr in 1e-3 1e-2; do
    $M compare $A --strategies $STRATS --cuts blocks.3 --seeds $S3 --lr $lr --workers $W2 --out $R/adr32-lr$lr
  done
  $M compare $A --strategies truncated --cuts blocks.2 --seeds $S3 --workers $W2 --out $R/adr-rec-b2
  $M compare $A --strategies truncated --cuts blocks.3 --seeds $S3 --lr 3e-3 --workers $W2 --out $R/adr-rec-lr3e-3
  $M compare ${A/acs/i3d} --strategies truncated --cuts blocks.3 --seeds $S3 --workers $W2 --out $R/adr-rec-i3d
  $M compare ${A/image-size 32/image-size 64} --strategies truncated --cuts blocks.3 --seeds $S3 --workers $W2 \
    --out $R/adr-rec-64
}
cxr_records() {
  $M compare $X --strategies truncated --cuts blocks.3 --seeds $S3 --lr 3e-3 --workers $W2 --out $R/cxr-rec-lr3e-3
  $M compare $X --strategies truncated --cuts blocks.3 --seeds $S3 --lr 3e-3 --label-smoothing 0.1 --workers $W2 \
    --out $R/cxr-rec-ls
  $M compare ${X/image-size 64/image-size 128} --strategies truncated --cuts blocks.3 --seeds $S3 --lr 3e-3 \
    --workers $W2 --out $R/cxr-rec-up128
  $M compare $X --strategies truncated --cuts blocks.4 --seeds $S3 --lr 3e-3 --workers $W2 --out $R/cxr-rec-b4
  $M compare $X --strategies transfusion --cuts blocks.3 --seeds $S3 --workers $W2 --out $R/cxr-rec-transfusion
  $M compare ${X/image-size 64/image-size 128} --strategies full --seeds $S3 --workers $W2 --out $R/cxr-rec-full-up128
  $M compare ${X/epochs $E2D --patience 5/epochs $((2 * E2D)) --patience 10} --strategies truncated --cuts blocks.3 \
    --seeds $S3 --lr 3e-3 --workers $W2 --out $R/cxr-rec-long
}
breast_records() {  # 5 seeds each, from the 28 px images
  $M compare $B --strategies truncated --cuts blocks.3 --seeds $S5 --lr 1e-2 --workers $W3 --out $R/br-rec-ttl
  $M compare ${B/image-size 64/image-size 128} --strategies truncated --cuts blocks.3 --seeds $S5 --lr 1e-2 \
    --workers $W3 --out $R/br-rec-up128
  $M compare $B --strategies truncated --cuts blocks.4 --seeds $S5 --lr 1e-2 --workers $W3 --out $R/br-rec-b4
  $M compare $B --strategies lora --cuts blocks.3 --seeds $S5 --lr 1e-2 --workers $W3 --out $R/br-rec-lora
  $M compare $B --strategies truncated --cuts blocks.3 --seeds $S5 --lr 3e-3 --workers $W3 --out $R/br-rec-lr3e-3
}

for job in $JOBS; do
  bash -c "$(declare -f $job); M='$M' X='$X' A='$A' B='$B' R='$R' S3='$S3' S5='$S5' E2D='$E2D' W1=$W1 W2=$W2 \
W3=$W3 STRATS='$STRATS' $job" > "$LOGS/$job.log" 2>&1 &
  echo "$job: pid $!"
done
while [ $(( $(date +%s) - start )) -lt "$DEADLINE" ] && [ -n "$(jobs -r)" ]; do sleep 5; done
if [ -n "$(jobs -r)" ]; then echo "deadline: stopping $(jobs -r | wc -l) job(s)"; kill $(jobs -p); pkill -TERM -f "medtl compare"; sleep 3
  pkill -KILL -f "medtl compare"; pkill -KILL -f "multiprocessing.spawn"; fi
wait
echo "training done at $(( $(date +%s) - start )) s"

for grid in "$R"/*-rec-*; do  # an ensemble of each record configuration's finished seeds
  members=$(ls -d "$grid"/runs/*/ 2>/dev/null | while read -r d; do [ -f "$d/metrics.json" ] && echo "$d"; done)
  [ "$(echo "$members" | grep -c .)" -ge 2 ] && $M ensemble $members --out "$R/ens-$(basename "$grid")" \
    --threads 1 --no-report > "$LOGS/ensemble-$(basename "$grid").log" 2>&1 &
done
wait
echo "ensembles done at $(( $(date +%s) - start )) s"
tar czf "$OUT/results.tgz" --exclude='*.safetensors' --exclude='checkpoint*' --exclude='*.pt' --exclude='report.html' "$R"
ls -la "$OUT"
