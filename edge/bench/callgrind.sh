#!/bin/bash
# callgrind.sh counts the user-space instructions per request of
# pgswitch-edge and of HAProxy under valgrind's callgrind, for HTTP/1.1,
# HTTPS (HTTP/1.1 over TLS) and HTTP/2 keep-alive: a figure that, unlike
# CPU time, does not move with what else the machine runs (the kernel's
# share is not in it; count syscalls with perf for that, see RESULTS.md).
#
#   bench/callgrind.sh [requests]      (from edge/; default 4000)
#
# Environment: LEAN_HTTP2=false serves HTTP/2 with net/http's server
# instead of the lean loop (lean_http2, the default); MODES="HTTP/2" measures only the scenarios named (default
# all three); PROXIES="pgswitch-edge" only that proxy.
#
# Each proxy runs under callgrind with one loopback backend (bench/compare's),
# h2load sends 1,000 requests over 10 connections to warm up, the counters
# are zeroed, h2load sends the measured requests (HTTP/2: 10 streams per
# connection), and the total is divided by them. Go runs with
# GODEBUG=asyncpreemptoff=1 (callgrind fails on the preemption signal). Needs
# valgrind, haproxy, h2load, curl, openssl.
set -euo pipefail
n=${1:-4000}
lean=${LEAN_HTTP2:-true}
modes=${MODES:-HTTP/1.1 HTTPS HTTP/2}
proxies=${PROXIES:-pgswitch-edge haproxy}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/edge" ./cmd/pgswitch-edge
go build -o "$dir/compare" ./bench/compare
mkdir "$dir/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench.test \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
cat "$dir/cert.pem" "$dir/key.pem" > "$dir/certs/bench.pem"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
be=127.0.0.1:$(port) plain=127.0.0.1:$(port) tls=127.0.0.1:$(port)
"$dir/compare" -serve-backend "$be" &
cat > "$dir/edge.yaml" <<YAML
access_log: {path: "off"}
log: {level: warn}
defaults:
  timeouts: {connect: 5s, client: 60s, server: 60s, http_request: 60s, http_keep_alive: 60s}
  check: {inter: 60s}
listens:
  bench:
    binds:
      - "$plain"
      - addr: "$tls"
        tls: {cert_dir: "$dir/certs", alpn: [h2, http/1.1]}
    lean_http2: $lean
    servers: [{name: be, addr: "$be"}]
YAML
cat > "$dir/haproxy.cfg" <<CFG
global
    maxconn 9000
defaults
    mode http
    option forwardfor
    option httpchk GET /health
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 60s
    timeout http-keep-alive 60s
frontend bench
    bind $plain
    bind $tls ssl crt $dir/certs/bench.pem alpn h2,http/1.1
    default_backend be
backend be
    server be $be check inter 60s
CFG

measure() { # name mode command...
	local name=$1 mode=$2; shift 2
	local out="$dir/$name-${mode//\//}.out"
	GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$dir/valgrind.log" 2>&1 &
	local pid=$!
	for _ in $(seq 200); do curl -sk -o /dev/null "https://$tls/" && break; sleep 0.2; done
	local load
	case $mode in
	HTTP/1.1) load=(h2load --h1 -c 10 "http://$plain/") ;;
	HTTPS) load=(h2load --h1 -c 10 "https://$tls/") ;;
	HTTP/2) load=(h2load -c 10 -m 10 "https://$tls/") ;;
	esac
	"${load[@]}" -n 1000 >/dev/null
	callgrind_control -z "$pid" >/dev/null 2>&1
	local ok
	ok=$("${load[@]}" -n "$n" | sed -n 's/.* \([0-9]*\) succeeded.*/\1/p')
	callgrind_control -d "$pid" >/dev/null 2>&1
	kill "$pid"; wait "$pid" 2>/dev/null || true
	if [ "$ok" != "$n" ]; then echo "$name $mode: only $ok of $n requests succeeded" >&2; exit 1; fi
	local total
	total=$(callgrind_annotate "$(ls -S "$out".* | head -1)" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
	printf '| %s | %s | %d |\n' "$mode" "$name" $((total / n))
}

echo "| scenario | proxy | user-space instructions per request |"
echo "|---|---|---:|"
for mode in $modes; do
	case " $proxies " in *" pgswitch-edge "*) measure pgswitch-edge "$mode" "$dir/edge" serve --config "$dir/edge.yaml" ;; esac
	case " $proxies " in *" haproxy "*) measure haproxy "$mode" haproxy -db -f "$dir/haproxy.cfg" ;; esac
done
