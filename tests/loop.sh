#!/usr/bin/env bash
# The whole loop on one machine, on the embedded defaults (README's main job):
#   gosling init → add egg → deploy → MotherGoose and UglyFox on the embedded store with the
#   local provider → a GitLab job event from the GitLab stand-in → a `gosling runner` process
#   with the fake gitlab-runner takes and runs the job → the job finishes → the single-job
#   runner is ended → `gosling status` shows the runner, its history and the audit trail.
# No cloud account, no GitLab: everything runs under a fresh temporary folder and is stopped
# at the end (or on failure). Exits 0 when the loop completed.
#
#   bash tests/loop.sh            # builds the binaries (debug) first
#   LOOP_KEEP=1 bash tests/loop.sh  # keep the folder (logs, state) for a look afterwards
#   LOOP_BIN_DIR=target/debug bash tests/loop.sh  # binaries already built (CI, after the tests)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
say() { printf '    %s\n' "$*"; }

if [ -z "${LOOP_BIN_DIR:-}" ]; then
  step "Building gosling, mothergoose, uglyfox and the stand-ins (GitLab, gitlab-runner)"
  cargo build -q --locked -p gosling -p mothergoose -p uglyfox -p gosling-standins --bins
  LOOP_BIN_DIR=target/debug
fi
bin=$(cd "$LOOP_BIN_DIR" && pwd)
started=$(date +%s)

d=$(mktemp -d "${TMPDIR:-/tmp}/gosling-loop.XXXXXX")
pids=()
cleanup() {
  local code=$?
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # Runner processes are their own sessions (they outlive a MotherGoose restart): stop any
  # left by a failed run.
  pkill -TERM -f "$d/" 2>/dev/null || true
  if [ "$code" -ne 0 ]; then
    echo "The loop failed (exit $code). Logs:" >&2
    for f in "$d"/*.log; do echo "--- $f" >&2; tail -n 30 "$f" >&2; done
  fi
  if [ -z "${LOOP_KEEP:-}" ]; then rm -rf "$d"; else echo "Kept $d"; fi
  exit "$code"
}
trap cleanup EXIT INT TERM
exec 3>&1 # progress lines from inside wait_for (which silences its command)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local limit=$1; shift
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out after ${limit}s waiting for: $*" >&2
  return 1
}

# Everything this run writes stays in $d: the state key, gosling's settings, the Nest.
export GOSLING_STATE_KEY_FILE="$d/state.key" GOSLING_CONFIG="$d/gosling.toml"
: >"$GOSLING_CONFIG"
nest="$d/nest"
state="sqlite://$nest/.gosling/state.db"
gitlab_token="glpat-loop-$(date +%s%N)"

step "Starting the GitLab stand-in (Jobs, runners and version APIs; signed job hooks)"
"$bin/gitlab-standin" --listen 127.0.0.1:0 --token "$gitlab_token" >"$d/gitlab.url" 2>"$d/gitlab.log" &
pids+=($!)
wait_for 10 test -s "$d/gitlab.url"
gitlab=$(head -n1 "$d/gitlab.url")
say "GitLab at $gitlab (project 1)"
mg_port=$(free_port)
mg="http://127.0.0.1:$mg_port"

step "gosling init, add egg, secret set, deploy"
"$bin/gosling" init --path "$nest" >/dev/null
# The Nest's examples point at gitlab.com and keep a warm runner; this loop has one egg of
# its own and no warm pool, so that the one runner seen is the job's.
rm "$nest/Eggs/example.fly" "$nest/Jobs/example.fly"
sed -i 's/min_count = 1/min_count = 0/' "$nest/UF/uglyfox.fly"
"$bin/gosling" --nest "$nest" add egg demo --type serverless --provider aws \
  --project-id 1 --gitlab-url "$gitlab" --tags docker --token-secret vault://gitlab/token \
  --no-input -q >/dev/null
say "Eggs/demo.fly: a serverless egg for project 1, jobs tagged docker"
printf %s "$gitlab_token" | "$bin/gosling" --nest "$nest" secret set vault://gitlab/token -q >/dev/null
say "the GitLab token stored, sealed, in the state store"
"$bin/gosling" --nest "$nest" deploy -q --gitlab-token "$gitlab_token" \
  --webhook-url "$mg/webhooks/gitlab"
say "deployed; the project hook at GitLab points at $mg/webhooks/gitlab"

step "Starting MotherGoose (local provider: runners are \`gosling runner\` processes) and UglyFox"
# What each runner process inherits: the fake gitlab-runner as its agent, which takes jobs
# from the stand-in like the real one, polling every 200 ms.
export GOSLING_AGENT_PATH="$bin/fake-gitlab-runner" FAKE_GITLAB_RUNNER_VERSION=17.5.0 \
  FAKE_GITLAB_RUNNER_POLL_MS=200 FAKE_GITLAB_RUNNER_EVENTS_DIR="$d" GOSLING_LOG=info
"$bin/mothergoose" serve --state "$state" --listen "127.0.0.1:$mg_port" \
  --heartbeat-interval 2s --reconcile-interval 5s >"$d/mothergoose.log" 2>&1 &
pids+=($!)
wait_for 20 curl -fsS "$mg/health"
say "MotherGoose at $mg"
"$bin/uglyfox" run --state "$state" --metrics-interval 2s --cron-every 2s >"$d/uglyfox.log" 2>&1 &
pids+=($!)
say "UglyFox passes running"

step "A developer pushes: GitLab creates a pending job tagged docker and sends its Job Hook"
job=$(curl -fsS -X POST "$gitlab/-/jobs" -H 'content-type: application/json' \
  -d '{"project_id":1,"name":"build","tags":["docker"],"duration_s":2}')
job_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$job")
say "job $job_id pending"

status_json() { "$bin/gosling" --nest "$nest" status --output json 2>/dev/null; }
# Prints field $1 of the first runner (python expression over `r`), or nothing.
runner_field() {
  status_json | python3 -c "
import json, sys
rs = json.load(sys.stdin)['fleet']['runners']
r = rs[0] if rs else None
print(($1) if r else '')" 2>/dev/null
}
job_status() {
  curl -fsS "$gitlab/-/state" | python3 -c "
import json, sys
print(next(j['status'] for j in json.load(sys.stdin)['jobs'] if j['id'] == $job_id))"
}
seen=""
follow() { # prints each new (runner state, job status) pair; succeeds when $1 holds
  local rstate jstate
  rstate=$(runner_field "r['state']" || true)
  jstate=$(job_status || true)
  if [ "$rstate/$jstate" != "$seen" ]; then
    seen="$rstate/$jstate"
    say "runner ${rstate:-(none yet)}, job $jstate   (+$(( $(date +%s) - started ))s)" >&3
  fi
  eval "$1"
}
wait_for 40 follow '[ "$jstate" = success ]'
step "The job succeeded; MotherGoose ends the single-job runner"
wait_for 30 follow '[ "$rstate" = terminated ]'
runner=$(runner_field "r['id']")
say "runner $runner terminated"
if pgrep -f -- "--runner-id $runner" >/dev/null || pgrep -f "runner-id=$runner" >/dev/null; then
  echo "runner $runner still has a process" >&2; exit 1
fi
say "its process is gone; the agent's log: $(grep -c . "$d/events.log" 2>/dev/null || echo 0) events"

step "gosling status"
"$bin/gosling" --nest "$nest" status

step "Stopping UglyFox, MotherGoose and the GitLab stand-in"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
if pgrep -f "$d/" >/dev/null; then echo "processes left behind: $(pgrep -af "$d/")" >&2; exit 1; fi
say "nothing left running; the loop took $(( $(date +%s) - started ))s after the build"
