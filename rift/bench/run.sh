#!/usr/bin/env bash
# Rift load benchmark, side by side with nginx serving the same files.
#
#   bash rift/bench/run.sh            # 10 s per scenario
#   BENCH_DURATION=5s bash rift/bench/run.sh
#   RIFT_BIN=/path/to/rift bash rift/bench/run.sh   # an already built binary (e.g. an older
#                                                   # commit's, for a before/after table)
#
# Needs: cargo, nginx (Debian package `nginx`), wrk (Debian package `wrk`), curl, python3,
# openssl (a throwaway certificate for the HTTPS rows: Rift and nginx both TLS 1.3 only).
# Everything listens on 127.0.0.1 only; every run is bounded by BENCH_DURATION.
#
# Rift is driven through the plain `/cache/{key}` endpoint with a bearer token (so every
# request is authenticated); nginx serves the same files as static files without auth (and,
# for small GETs, a second time with its open-file cache). Rift keeps small objects that are
# read in memory (--memory-cache-size, 64 MiB by default); nginx reads them from the page
# cache with open + sendfile.
# PUTs go to Rift with its default settings (fsync of the file and its directory before the
# upload is acknowledged), to a second Rift with --fsync false, and to nginx's WebDAV PUT
# (temp file + rename, no fsync). Like for like is the --fsync false row against nginx: both
# write through the page cache without fsync; Rift also computes the MD5 ETag of every body.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RIFT_DIR="$(cd "$HERE/.." && pwd)"
DURATION="${BENCH_DURATION:-10s}"
THREADS="${BENCH_THREADS:-2}"
SMALL_CONNS="${BENCH_SMALL_CONNECTIONS:-64}"
LARGE_CONNS="${BENCH_LARGE_CONNECTIONS:-4}"
TOKEN="glrt-bench-token"

for tool in cargo nginx wrk curl python3 openssl; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' is required (apt-get install -y nginx wrk curl)" >&2; exit 1; }
done

if [ -z "${RIFT_BIN:-}" ]; then
  echo "== building rift (release)" >&2
  cargo build --release --quiet --manifest-path "$RIFT_DIR/Cargo.toml"
  # Works both as a standalone workspace and as a member of the root workspace.
  TARGET_DIR="$(cargo metadata --format-version 1 --no-deps --manifest-path "$RIFT_DIR/Cargo.toml" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
  RIFT_BIN="$TARGET_DIR/release/rift"
fi
echo "== rift binary: $RIFT_BIN" >&2

WORK="$(mktemp -d /tmp/rift-bench.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
RIFT_PORT="$(free_port)"
RIFT_NOSYNC_PORT="$(free_port)"
NGINX_PORT="$(free_port)"
NGINX_OFC_PORT="$(free_port)"
RIFT_TLS_PORT="$(free_port)"
NGINX_TLS_PORT="$(free_port)"

mkdir -p "$WORK/www/bench" "$WORK/www/put" "$WORK/data" "$WORK/data-nosync" "$WORK/data-tls" "$WORK/nginx"
head -c 4096 /dev/urandom > "$WORK/www/bench/small.bin"
head -c $((64 * 1024 * 1024)) /dev/urandom > "$WORK/www/bench/large.bin"
chmod -R a+rX "$WORK/www"
chmod 777 "$WORK/www/put"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

cat > "$WORK/auth.toml" <<EOF
tokens = ["$TOKEN"]
EOF

echo "== starting rift on 127.0.0.1:$RIFT_PORT" >&2
RIFT_LOG=warn "$RIFT_BIN" --listen "127.0.0.1:$RIFT_PORT" --data-dir "$WORK/data" \
  --auth-file "$WORK/auth.toml" --max-cache-size 8GiB >"$WORK/rift.log" 2>&1 &
PIDS+=($!)
# A second instance without fsync, to show what the durability costs on PUT.
RIFT_LOG=warn "$RIFT_BIN" --listen "127.0.0.1:$RIFT_NOSYNC_PORT" --data-dir "$WORK/data-nosync" \
  --auth-file "$WORK/auth.toml" --max-cache-size 8GiB --fsync false >"$WORK/rift-nosync.log" 2>&1 &
PIDS+=($!)

# The same as the first instance, over HTTPS.
RIFT_LOG=warn "$RIFT_BIN" --listen "127.0.0.1:$RIFT_TLS_PORT" --data-dir "$WORK/data-tls" \
  --auth-file "$WORK/auth.toml" --max-cache-size 8GiB --tls-cert "$WORK/cert.pem" \
  --tls-key "$WORK/key.pem" >"$WORK/rift-tls.log" 2>&1 &
PIDS+=($!)

cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
    location /put/ {
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 0;
      client_body_buffer_size 1m;
    }
  }
  # The same files with nginx's open-file cache (descriptors and metadata kept open between
  # requests), its fastest static setting: a second reference for small GETs.
  server {
    listen 127.0.0.1:$NGINX_OFC_PORT;
    root $WORK/www;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
  }
  server {
    listen 127.0.0.1:$NGINX_TLS_PORT ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.3;
    root $WORK/www;
  }
}
EOF
echo "== starting nginx on 127.0.0.1:$NGINX_PORT" >&2
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=($!)

wait_up() {
  for _ in $(seq 1 100); do
    if curl -fsS --cacert "$WORK/cert.pem" -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench: $1 did not come up" >&2
  cat "$WORK/rift.log" "$WORK/rift-tls.log" "$WORK/nginx/error.log" >&2 || true
  exit 1
}
wait_up "http://127.0.0.1:$RIFT_PORT/health"
wait_up "http://127.0.0.1:$RIFT_NOSYNC_PORT/health"
wait_up "http://127.0.0.1:$NGINX_PORT/bench/small.bin"
wait_up "http://127.0.0.1:$NGINX_OFC_PORT/bench/small.bin"
wait_up "https://127.0.0.1:$RIFT_TLS_PORT/health"
wait_up "https://127.0.0.1:$NGINX_TLS_PORT/bench/small.bin"

# The same files in Rift.
for f in small large; do
  curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" \
    --data-binary "@$WORK/www/bench/$f.bin" "http://127.0.0.1:$RIFT_PORT/cache/bench/$f.bin"
  curl -fsS --cacert "$WORK/cert.pem" -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" \
    --data-binary "@$WORK/www/bench/$f.bin" "https://127.0.0.1:$RIFT_TLS_PORT/cache/bench/$f.bin"
done
curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$RIFT_PORT/cache/bench/large.bin" | cmp - "$WORK/www/bench/large.bin"

cat > "$WORK/put_small.lua" <<EOF
local body = string.rep("x", 4096)
local n = 0
local tag = tostring(math.random(1, 1000000000))
wrk.headers["Authorization"] = "Bearer $TOKEN"
request = function()
  n = n + 1
  return wrk.format("PUT", wrk.path .. tag .. "-" .. n, nil, body)
end
EOF
cat > "$WORK/put_large.lua" <<EOF
local f = assert(io.open("$WORK/www/bench/large.bin", "rb"))
wrk.method = "PUT"
wrk.body = f:read("*a")
f:close()
wrk.headers["Authorization"] = "Bearer $TOKEN"
EOF

# Runs wrk and prints "req/s MB/s p99_ms".
run_wrk() {
  local out
  out="$(wrk --latency -t "$THREADS" -d "$DURATION" --timeout 30s "$@")"
  echo "$out" >>"$WORK/wrk.log"
  if echo "$out" | grep -q "Non-2xx"; then
    echo "bench: non-2xx answers in: wrk $*" >&2
    echo "$out" >&2
    exit 1
  fi
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def num(unit_value):
    m = re.match(r"([\d.]+)(\w+)", unit_value)
    v, u = float(m.group(1)), m.group(2)
    return v, u
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
v, u = num(re.search(r"Transfer/sec:\s+(\S+)", out).group(1))
mb = v * {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[u]
v, u = num(re.search(r"99%\s+(\S+)", out).group(1))
p99 = v * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]
# Large transfers complete a few requests per second: keep two decimals.
print(f"{rps:.0f} {mb:.1f} {p99:.2f}" if rps >= 100 else f"{rps:.2f} {mb:.1f} {p99:.2f}")
PY
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
R_URL="http://127.0.0.1:$RIFT_PORT"
RN_URL="http://127.0.0.1:$RIFT_NOSYNC_PORT"
N_URL="http://127.0.0.1:$NGINX_PORT"
AUTH=(-H "Authorization: Bearer $TOKEN")

echo "== small GET (4 KiB), $SMALL_CONNS connections, $DURATION" >&2
read -r rs_rps rs_mb rs_p99 < <(run_wrk -c "$SMALL_CONNS" "${AUTH[@]}" "$R_URL/cache/bench/small.bin")
read -r ns_rps ns_mb ns_p99 < <(run_wrk -c "$SMALL_CONNS" "$N_URL/bench/small.bin")
read -r os_rps os_mb os_p99 < <(run_wrk -c "$SMALL_CONNS" "http://127.0.0.1:$NGINX_OFC_PORT/bench/small.bin")
echo "== large GET (64 MiB), $LARGE_CONNS connections, $DURATION" >&2
read -r rl_rps rl_mb rl_p99 < <(run_wrk -c "$LARGE_CONNS" "${AUTH[@]}" "$R_URL/cache/bench/large.bin")
read -r nl_rps nl_mb nl_p99 < <(run_wrk -c "$LARGE_CONNS" "$N_URL/bench/large.bin")
echo "== HTTPS (TLS 1.3): small and large GET" >&2
RT_URL="https://127.0.0.1:$RIFT_TLS_PORT"
NT_URL="https://127.0.0.1:$NGINX_TLS_PORT"
read -r ts_rps ts_mb ts_p99 < <(run_wrk -c "$SMALL_CONNS" "${AUTH[@]}" "$RT_URL/cache/bench/small.bin")
read -r us_rps us_mb us_p99 < <(run_wrk -c "$SMALL_CONNS" "$NT_URL/bench/small.bin")
read -r tl_rps tl_mb tl_p99 < <(run_wrk -c "$LARGE_CONNS" "${AUTH[@]}" "$RT_URL/cache/bench/large.bin")
read -r ul_rps ul_mb ul_p99 < <(run_wrk -c "$LARGE_CONNS" "$NT_URL/bench/large.bin")
echo "== small PUT (4 KiB, new key each), $SMALL_CONNS connections, $DURATION" >&2
read -r rp_rps rp_mb rp_p99 < <(run_wrk -c "$SMALL_CONNS" -s "$WORK/put_small.lua" "$R_URL/cache/bench/put/")
read -r xp_rps xp_mb xp_p99 < <(run_wrk -c "$SMALL_CONNS" -s "$WORK/put_small.lua" "$RN_URL/cache/bench/put/")
read -r np_rps np_mb np_p99 < <(run_wrk -c "$SMALL_CONNS" -s "$WORK/put_small.lua" "$N_URL/put/")
echo "== large PUT (64 MiB, one key), $LARGE_CONNS connections, $DURATION" >&2
read -r rq_rps rq_mb rq_p99 < <(run_wrk -c "$LARGE_CONNS" -s "$WORK/put_large.lua" "$R_URL/cache/bench/put-large")
read -r xq_rps xq_mb xq_p99 < <(run_wrk -c "$LARGE_CONNS" -s "$WORK/put_large.lua" "$RN_URL/cache/bench/put-large")
read -r nq_rps nq_mb nq_p99 < <(run_wrk -c "$LARGE_CONNS" -s "$WORK/put_large.lua" "$N_URL/put/large")

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }
# wrk's Transfer/sec counts response bytes only: for PUTs, derive MB/s from req/s x body size.
small_mb() { python3 -c "import sys; print(f'{float(sys.argv[1])*4096/2**20:.1f}')" "$1"; }
large_mb() { python3 -c "import sys; print(f'{float(sys.argv[1])*64:.1f}')" "$1"; }
rp_mb=$(small_mb "$rp_rps"); xp_mb=$(small_mb "$xp_rps"); np_mb=$(small_mb "$np_rps")
rq_mb=$(large_mb "$rq_rps"); xq_mb=$(large_mb "$xq_rps"); nq_mb=$(large_mb "$nq_rps")

cat <<EOF

Rift benchmark ($(nproc) cores, wrk -t $THREADS -d $DURATION, client and servers on one machine;
load average at the start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg))

| scenario | server | req/s | MB/s | p99 latency (ms) | Rift / nginx (req/s) |
|---|---|---:|---:|---:|---:|
| GET 4 KiB, $SMALL_CONNS conns | Rift (bearer auth) | $rs_rps | $rs_mb | $rs_p99 | $(ratio "$rs_rps" "$ns_rps") |
| GET 4 KiB, $SMALL_CONNS conns | nginx (static) | $ns_rps | $ns_mb | $ns_p99 | |
| GET 4 KiB, $SMALL_CONNS conns | nginx (static, open_file_cache) | $os_rps | $os_mb | $os_p99 | Rift / this: $(ratio "$rs_rps" "$os_rps") |
| GET 64 MiB, $LARGE_CONNS conns | Rift (bearer auth) | $rl_rps | $rl_mb | $rl_p99 | $(ratio "$rl_rps" "$nl_rps") |
| GET 64 MiB, $LARGE_CONNS conns | nginx (static) | $nl_rps | $nl_mb | $nl_p99 | |
| HTTPS GET 4 KiB, $SMALL_CONNS conns | Rift (TLS 1.3, bearer auth) | $ts_rps | $ts_mb | $ts_p99 | $(ratio "$ts_rps" "$us_rps") |
| HTTPS GET 4 KiB, $SMALL_CONNS conns | nginx (TLS 1.3, static) | $us_rps | $us_mb | $us_p99 | |
| HTTPS GET 64 MiB, $LARGE_CONNS conns | Rift (TLS 1.3, bearer auth) | $tl_rps | $tl_mb | $tl_p99 | $(ratio "$tl_rps" "$ul_rps") |
| HTTPS GET 64 MiB, $LARGE_CONNS conns | nginx (TLS 1.3, static) | $ul_rps | $ul_mb | $ul_p99 | |
| PUT 4 KiB, $SMALL_CONNS conns | Rift (fsync file + directory, MD5) | $rp_rps | $rp_mb | $rp_p99 | ($(ratio "$rp_rps" "$np_rps"): nginx does not fsync) |
| PUT 4 KiB, $SMALL_CONNS conns | Rift (--fsync false, MD5) | $xp_rps | $xp_mb | $xp_p99 | $(ratio "$xp_rps" "$np_rps") |
| PUT 4 KiB, $SMALL_CONNS conns | nginx (WebDAV PUT, no fsync) | $np_rps | $np_mb | $np_p99 | |
| PUT 64 MiB, $LARGE_CONNS conns | Rift (fsync file + directory, MD5) | $rq_rps | $rq_mb | $rq_p99 | ($(ratio "$rq_rps" "$nq_rps"): nginx does not fsync) |
| PUT 64 MiB, $LARGE_CONNS conns | Rift (--fsync false, MD5) | $xq_rps | $xq_mb | $xq_p99 | $(ratio "$xq_rps" "$nq_rps") |
| PUT 64 MiB, $LARGE_CONNS conns | nginx (WebDAV PUT, no fsync) | $nq_rps | $nq_mb | $nq_p99 | |
EOF
