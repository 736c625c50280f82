#!/usr/bin/env bash
# The GPU campaign: the longest runs of experiments/gpu_campaign_runs.txt as
# parallel processes on one GPU (KERAS_BACKEND=jax), stopped cleanly on a time
# budget (train.py keeps its finished epochs in backup/: resumable), then
# summarised for docs/RESULTS.md. The logic is stn_keras.campaign's.
#
# 1. Here, on the machine with the data (needs pip's index for the wheels;
#    PYTHON: the interpreter with the Keras whose version travels):
#      STN_DATA_DIR=/work/shared/data PYTHON=.venv/bin/python experiments/gpu_campaign.sh pack
#    writes .gpu_data/mnist/ (the four IDX files, 11.6 MB), .gpu_data/runs/
#    (runs of runs/gpu_campaign/ that have a backup, to be resumed) and the
#    keras, namex and optree wheels for Python 3.12 in .whl/ (the GPU image
#    has JAX but no Keras); both folders are ignored by git.
# 2. On the device, the tool's `run` with carry [".whl", ".gpu_data"] and
#    timeout_s 600:
#      bash experiments/gpu_campaign.sh run
#    trains for CAMPAIGN_TRAIN_SECONDS (500: the 600 s a command may run, less
#    the install, the stop, the archives and CAMPAIGN_EVALUATE_SECONDS (40) of
#    evaluate.py on the test split) and writes to $OUT: summary.md (also
#    printed), summary.json, campaign.log and runs-N.tar.gz (the run
#    directories: config.json, history.csv, model.keras, backup/, train.log,
#    evaluation/).
# 3. Here again, with the folder the files came back to:
#      experiments/gpu_campaign.sh unpack FILES_AT
#    puts the runs into runs/gpu_campaign/; the next `pack` carries the
#    unfinished ones back to be resumed.
#
# Settings (environment): PYTHON (python3), CAMPAIGN_RUNS (the run list),
# CAMPAIGN_TRAIN_SECONDS, CAMPAIGN_EVALUATE_SECONDS, CAMPAIGN_PARALLEL (the most
# runs at once; default all), CAMPAIGN_TRAIN_ARGUMENTS (train.py flags added
# to every fresh run, e.g. "--epochs 1"), CAMPAIGN_DATA (.gpu_data),
# CAMPAIGN_LOCAL_RUNS (runs/gpu_campaign), CAMPAIGN_INSTALL_WHEELS (1: install
# .whl/ first; 0 where Keras is installed, as on the CPU here).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DATA=${CAMPAIGN_DATA:-.gpu_data}
case $DATA in /*) ;; *) DATA="$PWD/$DATA" ;; esac
LOCAL_RUNS=${CAMPAIGN_LOCAL_RUNS:-runs/gpu_campaign}
WHEEL_PACKAGES="keras namex optree"
export KERAS_BACKEND=${KERAS_BACKEND:-jax}

case "${1:-}" in
pack)
  : "${STN_DATA_DIR:?set STN_DATA_DIR to the folder holding mnist/}"
  mkdir -p .whl
  for package in $WHEEL_PACKAGES; do
    # The versions tested here; one of each, as two stop the install there.
    version=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('$package'))")
    find .whl -name "$package-*.whl" ! -name "$package-$version-*.whl" -delete
    if ! ls .whl/"$package-$version"-*.whl >/dev/null 2>&1; then
      "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$package==$version"
    fi
  done
  "$PYTHON" -m stn_keras.campaign pack --data-dir "$STN_DATA_DIR" --destination "$DATA" \
    --runs-dir "$LOCAL_RUNS"
  du -sch .whl "$DATA"
  ;;
run)
  : "${OUT:?set OUT to the folder for the summaries and archives}"
  if [ "${CAMPAIGN_INSTALL_WHEELS:-1}" = 1 ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
  fi
  # The campaign's own process imports Keras too: no JAX preallocation there either.
  export STN_DATA_DIR="$DATA" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
  if command -v nvidia-smi >/dev/null; then nvidia-smi -L || true; fi
  # exec: a SIGTERM to this script reaches the campaign, which stops its runs.
  exec "$PYTHON" -m stn_keras.campaign run --runs "${CAMPAIGN_RUNS:-experiments/gpu_campaign_runs.txt}" \
    --runs-dir "$DATA/runs" --out "$OUT" --train-seconds "${CAMPAIGN_TRAIN_SECONDS:-500}" \
    --evaluate-seconds "${CAMPAIGN_EVALUATE_SECONDS:-40}" ${CAMPAIGN_PARALLEL:+--parallel "$CAMPAIGN_PARALLEL"} \
    --train-arguments "${CAMPAIGN_TRAIN_ARGUMENTS:-}"
  ;;
unpack)
  : "${2:?usage: experiments/gpu_campaign.sh unpack FOLDER_WITH_runs-N.tar.gz}"
  "$PYTHON" -m stn_keras.campaign unpack "$2" --runs-dir "$LOCAL_RUNS"
  ;;
*)
  echo "usage: experiments/gpu_campaign.sh pack|run|unpack FOLDER (see its header)" >&2
  exit 2
  ;;
esac
