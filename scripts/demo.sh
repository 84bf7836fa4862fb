#!/usr/bin/env bash
# `make demo`: the whole product on one box.
#   synthetic forum → local SLURM cluster (or submitit's local executor) → MLflow server →
#   sweep of tiny reward models → fits, trend classes, spike flags, figures, report.
# Re-running reuses what is done: the data, the server, and every finished cell (sweep resume).
# Knobs (env): DEMO_SWEEP (sweeps/demo.yaml), DEMO_OUT (out/demo), DEMO_PAIRS (synthetic pairs),
#              DEMO_DATA (data/demo), DEMO_PORT (MLflow port, default 5077), DEMO_EXECUTOR (auto|slurm|local),
#              DEMO_STORE (MLflow SQLite file, ./mlflow.db), DEMO_ARTIFACTS (./mlartifacts),
#              DEMO_HOST (address the MLflow server listens on, default 127.0.0.1; another one lets jobs on
#              other hosts log live and needs DEMO_AUTH=1, or DEMO_OPEN=1 for an unauthenticated server on
#              purpose), DEMO_AUTH=1 (MLflow basic-auth; the demo's jobs log as the admin, whose password
#              is in <store>-admin.credentials, mode 0600: docs/tracking_security.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
SWEEP=${DEMO_SWEEP:-sweeps/demo.yaml}
OUT=${DEMO_OUT:-out/demo}
DATA=${DEMO_DATA:-data/demo}
PAIRS=${DEMO_PAIRS:-8192}
PORT=${DEMO_PORT:-5077}
HOST=${DEMO_HOST:-127.0.0.1}
AUTH=${DEMO_AUTH:-0}
OPEN=${DEMO_OPEN:-0}
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

step "3/6 MLflow server on $HOST:$PORT$([ "$AUTH" = 1 ] && echo ' (authenticated)')"
URI_HOST=$([ "$HOST" = 0.0.0.0 ] && hostname -f || echo "$HOST")
URI="http://$URI_HOST:$PORT"
if curl -sf "$URI/health" >/dev/null 2>&1; then
  echo "reusing the server at $URI"
else
  # track/server.py starts it (its own session, so it outlives this script): the exposure policy
  # (beyond localhost only with auth or the open flag), --allowed-hosts, the basic-auth files.
  "$BIN/python" - "$STORE" "$ARTIFACTS" "$HOST" "$PORT" "$AUTH" "$OPEN" "$OUT" <<'PY' || exit 1
import sys
from pathlib import Path
from worldpm_scaling.track.server import MlflowServer, ServerConfigError, ServerError
store, art, host, port, auth, open_, out = sys.argv[1:]
try:
    srv = MlflowServer(f"sqlite:///{store}", art, host=host, port=int(port), workers=2, auth=auth == "1",
                       open_network=open_ == "1", log_path=Path(out) / "mlflow-server.log")
    if srv.exposure_warning:
        print(srv.exposure_warning, file=sys.stderr)
    srv.start(wait_s=300)
except ServerConfigError as e:
    sys.exit(f"mlflow server not started: {e} (for make demo: DEMO_AUTH=1 or DEMO_OPEN=1)")
except ServerError as e:
    sys.exit(f"mlflow server did not start: {e}")
(Path(out) / "mlflow-server.pid").write_text(f"{srv.proc.pid}\n")
if srv.auth:
    print(f"authentication on; admin credentials in {srv.admin_credentials} (mode 0600)")
PY
fi
if [ "$AUTH" = 1 ]; then  # the demo's jobs and commands log as the admin (read where they run, never in the sweep's files)
  ADMIN_FILE="${STORE%.db}-admin.credentials"
  export MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD
  MLFLOW_TRACKING_USERNAME=$(sed -n 's/^mlflow_tracking_username *= *//p' "$ADMIN_FILE")
  MLFLOW_TRACKING_PASSWORD=$(sed -n 's/^mlflow_tracking_password *= *//p' "$ADMIN_FILE")
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
# workflowType=machine_learning: MLflow 3.18's UI opens the model-training view (runs, metric charts) for
# this link whatever the browser last chose; without it a fresh browser starts in the GenAI view
echo "MLflow:   $URI/#/experiments/$EXP/runs?workflowType=machine_learning   (server keeps running; stop: kill -- -\$(cat $OUT/mlflow-server.pid))"
