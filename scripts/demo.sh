#!/usr/bin/env bash
# `make demo`: the whole product on one box.
#   synthetic forum → local SLURM cluster (or submitit's local executor) → MLflow server →
#   sweep of tiny reward models → fits, trend classes, spike flags, figures, report.
# Re-running reuses what is done: the data, the server, and every finished cell (sweep resume).
# Knobs (env): DEMO_SWEEP (sweeps/demo.yaml), DEMO_OUT (out/demo), DEMO_PAIRS (synthetic pairs),
#              DEMO_DATA (data/demo), DEMO_PORT (MLflow port, default 5077), DEMO_EXECUTOR (auto|slurm|local),
#              DEMO_STORE (MLflow SQLite file, ./mlflow.db), DEMO_ARTIFACTS (./mlartifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
SWEEP=${DEMO_SWEEP:-sweeps/demo.yaml}
OUT=${DEMO_OUT:-out/demo}
DATA=${DEMO_DATA:-data/demo}
PAIRS=${DEMO_PAIRS:-8192}
PORT=${DEMO_PORT:-5077}
EXECUTOR=${DEMO_EXECUTOR:-auto}
STORE=${DEMO_STORE:-$PWD/mlflow.db}
ARTIFACTS=${DEMO_ARTIFACTS:-$PWD/mlartifacts}
mkdir -p "$OUT"
t0=$(date +%s)
step() { printf '\n\033[1m== %s\033[0m (%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

step "1/6 synthetic forum ($PAIRS pairs) in $DATA"
SYNTH_ARGS="--pairs $PAIRS --seed 0 $(${BIN}/python -c 'import dataclasses as d; from worldpm_scaling.data.synth import SynthConfig as C; print(",".join(f"{f.name}={str(f.default).replace(chr(32), str())}" for f in d.fields(C) if f.name not in ("pairs", "seed")))')"
if [ -f "$DATA/train.parquet" ] && [ -f "$DATA/tokenizer.json" ] && [ "$(cat "$DATA/.demo-synth-args" 2>/dev/null)" = "$SYNTH_ARGS" ]; then
  echo "reusing $DATA (same generator settings)"
else
  [ -e "$DATA" ] && echo "regenerating $DATA: it was written with other generator settings"
  "$BIN/wps" data synth --pairs "$PAIRS" --seed 0 --out "$DATA" --force
  echo "$SYNTH_ARGS" > "$DATA/.demo-synth-args"
fi

step "2/6 scheduler"
CLUSTER=slurm/local.yaml
if [ "$EXECUTOR" != local ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if env_line=$(bash slurm/local-cluster/start.sh 2>"$OUT/slurm-start.log"); then
      eval "$env_line"
      CLUSTER=slurm/local-cluster.yaml
      echo "local SLURM cluster up (SLURM_CONF=$SLURM_CONF)"
    else
      echo "SLURM could not be started (see $OUT/slurm-start.log): using submitit's local executor"
      [ "$EXECUTOR" = slurm ] && { echo "DEMO_EXECUTOR=slurm: refusing to fall back to local" >&2; exit 1; }
    fi
  else
    echo "not root or no apt: cannot start a SLURM cluster here; using submitit's local executor"
    [ "$EXECUTOR" = slurm ] && { echo "DEMO_EXECUTOR=slurm: refusing to fall back to local" >&2; exit 1; }
  fi
fi
SCHEDULER=$([ "$CLUSTER" = slurm/local-cluster.yaml ] && echo slurm || echo local)
echo "$SCHEDULER" > "$OUT/executor"   # which scheduler ran the cells (tests/e2e checks it)

step "3/6 MLflow server on 127.0.0.1:$PORT"
URI="http://127.0.0.1:$PORT"
if curl -sf "$URI/health" >/dev/null 2>&1; then
  echo "reusing the server at $URI"
else
  mkdir -p "$ARTIFACTS"
  setsid nohup "$BIN/mlflow" server --backend-store-uri "sqlite:///$STORE" \
    --default-artifact-root "$ARTIFACTS" --host 127.0.0.1 --port "$PORT" --workers 2 \
    >"$OUT/mlflow-server.log" 2>&1 < /dev/null &
  echo $! > "$OUT/mlflow-server.pid"
  for _ in $(seq 1 60); do curl -sf "$URI/health" >/dev/null 2>&1 && break; sleep 1; done
  curl -sf "$URI/health" >/dev/null || { echo "mlflow server did not start: $OUT/mlflow-server.log"; exit 1; }
fi
export MLFLOW_TRACKING_URI="$URI"

step "4/6 plan"
"$BIN/wps" plan "$SWEEP" --cluster "$CLUSTER"

step "5/6 launch and wait"
"$BIN/wps" launch "$SWEEP" --cluster "$CLUSTER" --wait

step "6/6 analyse"
NAME=$("$BIN/python" -c "import sys; from worldpm_scaling.config import load_sweep; print(load_sweep(sys.argv[1]).name)" "$SWEEP")
"$BIN/wps" analyze "$SWEEP" --out "$OUT" --tracking-uri "$URI" | tee "$OUT/headline.txt"

EXP=$("$BIN/python" -c "import mlflow,sys; e=mlflow.MlflowClient(sys.argv[1]).get_experiment_by_name(sys.argv[2]); print(e.experiment_id if e else '')" "$URI" "$NAME")
step "done in $(( $(date +%s) - t0 )) s"
echo "report:   $OUT/report.md"
echo "figures:  $(ls "$OUT"/figures/*.pdf 2>/dev/null | tr '\n' ' ')"
echo "MLflow:   $URI/#/experiments/$EXP/runs   (server keeps running; stop: kill \$(cat $OUT/mlflow-server.pid))"
