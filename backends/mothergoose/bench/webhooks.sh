#!/usr/bin/env bash
# Webhook acknowledgement latency and throughput of `mothergoose serve` (release build) on
# this machine: wrk sends Job Hooks, each with its own delivery id, the X-Gitlab-Token and a
# valid Standard Webhooks signature (pre-computed, then replayed from a Lua table so wrk
# itself spends nothing on HMAC). MotherGoose runs with --no-workers: what is measured is
# the acknowledgement path — check the token in constant time, verify the signature, bound
# the body, queue the delivery (SQLite, group commit) and answer 202.
#
#   bash backends/mothergoose/bench/webhooks.sh [SECONDS] [CONNECTIONS] [REQUESTS_PER_SECOND]
# Without a rate wrk sends as fast as MotherGoose answers (throughput); with one, each
# connection waits CONNECTIONS/RATE seconds between requests (latency at that load).
#   BIN_DIR=target/release bash …   # binaries already built (`cargo build --release --workspace --bins`)
set -euo pipefail
cd "$(dirname "$0")/../../.."
secs=${1:-20}; conns=${2:-16}; rate=${3:-0}
if [ -z "${BIN_DIR:-}" ]; then
  cargo build -q --release --locked --workspace --bins
  BIN_DIR=target/release
fi
bin=$(cd "$BIN_DIR" && pwd)
d=$(mktemp -d); trap 'kill $mg 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$d"' EXIT
export GOSLING_STATE_KEY_FILE="$d/key" GOSLING_CONFIG="$d/gosling.toml"; : >"$GOSLING_CONFIG"
token=bench-webhook-secret
signing=whsec_$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')
"$bin/gosling" init --path "$d/nest" >/dev/null
rm "$d/nest/Jobs/example.fly"
"$bin/gosling" --nest "$d/nest" deploy -q --webhook-secret "$token" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/mothergoose" serve --state "sqlite://$d/nest/.gosling/state.db" --listen "127.0.0.1:$port" \
  --no-workers --reconcile-interval 0s --signing-secret "$signing" >"$d/mg.log" 2>&1 &
mg=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
# Enough distinct signed deliveries for the run (wrk cycles through them; ids repeat only
# beyond 300,000 requests, and then are acknowledged as duplicates). One request a line,
# CR LF written as `|`; the Lua script reads them once per wrk thread.
python3 - "$d/requests.txt" "$token" "$signing" <<'PY'
import base64, hashlib, hmac, json, sys, time
out, token, signing = sys.argv[1], sys.argv[2], sys.argv[3]
key = base64.b64decode(signing[len("whsec_"):])
ts = str(int(time.time()))
n = 300_000
with open(out, "w") as f:
    for i in range(n):
        body = json.dumps({"object_kind": "build", "build_id": 10_000_000 + i, "build_name": "test",
            "build_stage": "test", "build_status": "pending", "project_id": 1, "pipeline_id": 1,
            "ref": "main", "tag": False, "sha": "2293ada6b400935a1378653304eaf6221e0fdb8f",
            "project": {"id": 1, "name": "p", "path_with_namespace": "g/p", "web_url": "http://gitlab.local/g/p"},
            "repository": {"name": "p", "homepage": "http://gitlab.local/g/p"}, "runner": None}, separators=(",", ":"))
        wid = "msg_%032x" % i
        sig = base64.b64encode(hmac.new(key, f"{wid}.{ts}.{body}".encode(), hashlib.sha256).digest()).decode()
        req = ("POST /webhooks/gitlab HTTP/1.1\r\nHost: mg\r\nContent-Type: application/json\r\n"
               f"X-Gitlab-Event: Job Hook\r\nX-Gitlab-Token: {token}\r\nwebhook-id: {wid}\r\n"
               f"webhook-timestamp: {ts}\r\nwebhook-signature: v1,{sig}\r\nContent-Length: {len(body)}\r\n\r\n{body}")
        f.write(req.replace("\r\n", "|") + "\n")
PY
cat >"$d/requests.lua" <<LUA
local r, i = {}, 0
local threads = {}
function setup(t) t:set("offset", #threads) table.insert(threads, t) end
function init()
  for line in io.lines("$d/requests.txt") do r[#r + 1] = line:gsub("|", "\r\n") end
  i = offset * 150000
end
function request() i = i % #r + 1 return r[i] end
LUA
if [ "$rate" != 0 ]; then
  echo "function delay() return $(python3 -c "print(round($conns * 1000 / $rate))") end" >>"$d/requests.lua"
fi
if [ "$rate" = 0 ]; then what="as fast as answered"; else what="at most $rate req/s"; fi
echo "mothergoose serve (release, --no-workers), wrk -t2 -c$conns -d${secs}s, signed Job Hooks $what:"
wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$d/requests.lua" "http://127.0.0.1:$port/webhooks/gitlab" | sed -n '1,20p'
echo "queued: $(sqlite3 "$d/nest/.gosling/queue.db" 'select count(*) from messages' 2>/dev/null || echo '?') deliveries"
