#!/bin/sh
# Parley's training entry point with the arguments a command-backend template passes, in this
# order (empty strings for what a stage does not use):
#
#   entry.sh STAGE TRAIN_PATH VALIDATION_PATH BASE_PATH REWARD_MODEL_PATH OUTPUT_DIR \
#            HYPERPARAMETERS_JSON EVENTS_PATH REPORT_URL
#
# The job reports to REPORT_URL with the token in PARLEY_RUN_TOKEN. With ACCELERATE_CONFIG set
# it runs under `accelerate launch --config_file $ACCELERATE_CONFIG` (several GPUs, DeepSpeed);
# PARLEY_PYTHON names the interpreter (default: python). slurm.sbatch and the Kubernetes Job
# call this; so does a template that runs a job on this very machine:
#
#   PARLEY_TRAINING_COMMAND='sh /srv/parley/app/deploy/training/entry.sh {stage} {train_path}
#     {validation_path} {base_path} {reward_model_path} {output_dir} {hyperparameters_json}
#     {events_path} {report_url}'
set -eu
if [ "$#" -ne 9 ]; then
  echo "entry.sh: expected 9 arguments, got $#" >&2
  exit 2
fi
stage=$1 train=$2 validation=$3 base=$4 reward=$5 output=$6 hyperparameters=$7 events=$8 report=$9
cd "$(dirname "$0")/../.."
set -- --stage "$stage" --train "$train" --base "$base" --output "$output" \
  --hyperparameters "$hyperparameters" --events "$events"
if [ -n "$validation" ]; then set -- "$@" --validation "$validation"; fi
if [ -n "$reward" ]; then set -- "$@" --reward-model "$reward"; fi
if [ -n "$report" ]; then set -- "$@" --report-url "$report"; fi
python=${PARLEY_PYTHON:-python}
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${ACCELERATE_CONFIG:-}" ]; then
  exec "$python" -m accelerate.commands.launch --config_file "$ACCELERATE_CONFIG" \
    -m trainer_bridge.training.entry "$@"
fi
exec "$python" -m trainer_bridge.training.entry "$@"
