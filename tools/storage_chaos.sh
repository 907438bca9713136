#!/bin/bash
# Two daemons on loopback; Bob's profile on a 40 MB tmpfs that is filled under the
# running node while both send messages and Bob shares a file, then Bob is SIGKILLed
# at a random point, the space is freed and he is restarted (ROUNDS times). Then checks
# that nothing acknowledged was lost or doubled, nothing refused was stored, both
# histories verify with the same heads, SQLite's integrity_check is ok, and no
# temporary file, pack or pin is left. Prints one JSON line. Needs root (mount).
# Decision 0017 has the figures.
#
#   sudo tools/storage_chaos.sh [ROUNDS]      (from the repository root)
set -u
ROUNDS=${1:-10}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
export PYTHONPATH=$REPO SCRAMBLED_EGGS_ICE_LOOPBACK=1
export PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring
W=$(mktemp -d /tmp/storage-chaos.XXXXXX)
mkdir -p "$W/bobfs" "$W/dl-alice" "$W/dl-bob"
mount -t tmpfs -o size=40m tmpfs "$W/bobfs" || exit 1
A=$W/alice B=$W/bobfs/bob
se() { local p=$1; shift; "$PY" -m app --profile "$p" "$@"; }
start() { setsid "$PY" -m app --profile "$1" daemon --listen 127.0.0.1:0 --no-lan "${@:2}" \
  >>"$W/$(basename "$1").out" 2>&1 & echo $! >"$W/$(basename "$1").pid"; }
stop() { [ -f "$W/$1.pid" ] && kill "$(cat "$W/$1.pid")" 2>/dev/null; }
cleanup() {
  stop alice; stop bob; sleep 2
  umount --lazy "$W/bobfs"; rm -rf "$W"
}
trap cleanup EXIT

for p in "$A" "$B"; do
  se "$p" init --name "$(basename "$p")" --no-passphrase >/dev/null 2>&1
  "$PY" - "$p" "$W/dl-$(basename "$p")" <<'PY'
import json, sys
path = sys.argv[1] + "/config.json"
config = json.load(open(path))
config.update(listen="127.0.0.1:0", lan_discovery=False, downloads_folder=sys.argv[2],
              auto_accept_bytes=10**9)
json.dump(config, open(path, "w"))
PY
done
start "$A"; sleep 4
EP=$(se "$A" status --json | "$PY" -c "import json,sys;print(json.load(sys.stdin)['endpoints'][0])")
start "$B" --bootstrap "$EP"; sleep 5
invite() { se "$1" whoami --json | "$PY" -c 'import json,sys;print(json.load(sys.stdin)["invite"])'; }
se "$A" contacts add "$(invite "$B")" >/dev/null
se "$B" contacts add "$(invite "$A")" >/dev/null
sleep 3

: >"$W/a_ok"; : >"$W/b_ok"; : >"$W/b_fail"; : >"$W/s_ok"; : >"$W/s_fail"
( i=0; while [ ! -f "$W/stop" ]; do i=$((i+1))
    se "$A" send bob "A$i" >/dev/null 2>&1 && echo "A$i" >>"$W/a_ok"; sleep 0.2; done ) &
AL=$!
( i=0; while [ ! -f "$W/stop" ]; do i=$((i+1))
    if timeout 20 "$PY" -m app --profile "$B" send alice "B$i" >/dev/null 2>&1
    then echo "B$i" >>"$W/b_ok"; else echo "B$i" >>"$W/b_fail"; fi; sleep 0.3; done ) &
BL=$!
SHARES=()
for r in $(seq 1 "$ROUNDS"); do
  kill -0 "$(cat "$W/bob.pid")" 2>/dev/null || start "$B" --bootstrap "$EP"
  sleep 2
  head -c 3000000 /dev/urandom >"$W/share$r.bin"
  ( if timeout 30 "$PY" -m app --profile "$B" share alice "$W/share$r.bin" >/dev/null 2>&1
    then echo "share$r" >>"$W/s_ok"; else echo "share$r" >>"$W/s_fail"; fi ) &
  SHARES+=($!)
  sleep "0.$((RANDOM % 9))"
  dd if=/dev/zero of="$W/bobfs/filler" bs=64k 2>/dev/null
  sleep "$("$PY" -c 'import random; print(random.uniform(0.2, 3))')"
  kill -9 "$(cat "$W/bob.pid")" 2>/dev/null; wait "$(cat "$W/bob.pid")" 2>/dev/null
  sleep 0.5
  rm -f "$W/bobfs/filler"
done
kill -0 "$(cat "$W/bob.pid")" 2>/dev/null || start "$B" --bootstrap "$EP"
sleep 3
touch "$W/stop"; wait "$AL" "$BL" "${SHARES[@]}"
sleep 25  # the receivers ask again every 10 s

se "$A" messages bob --limit 100000 --json >"$W/am.json"
se "$B" messages alice --limit 100000 --json >"$W/bm.json"
HA=$(se "$A" history verify bob); HB=$(se "$B" history verify alice)
"$PY" - "$W" "$A" "$B" "$HA" "$HB" "$ROUNDS" <<'PY'
import collections, json, os, sqlite3, sys
w, a, b, ha, hb, rounds = sys.argv[1:]
am, bm = json.load(open(f"{w}/am.json")), json.load(open(f"{w}/bm.json"))
lines = lambda name: set(open(f"{w}/{name}").read().split())
def texts(messages, prefix):
    return collections.Counter(m["text"] for m in messages if m["text"].startswith(prefix))
a_at_alice, a_at_bob = texts(am, "A"), texts(bm, "A")
b_at_bob, b_at_alice = texts(bm, "B"), texts(am, "B")
a_ok, b_ok, b_fail = lines("a_ok"), lines("b_ok"), lines("b_fail")
strays = [os.path.join(d, f) for root in (a, b) for d, _, fs in os.walk(root) for f in fs
          if f.endswith((".tmp", ".part", ".init"))]
print(json.dumps({
    "rounds": int(rounds),
    "acked_a_to_b": len(a_ok), "acked_b_to_a": len(b_ok), "refused_b": len(b_fail),
    "shares_ok": len(lines("s_ok")), "shares_refused": len(lines("s_fail")),
    "lost": sorted((a_ok - set(a_at_bob)) | (b_ok - set(b_at_alice))),
    "doubled": sorted(t for c in (a_at_bob, b_at_alice) for t, n in c.items() if n > 1),
    "refused_but_stored": sorted(b_fail & (set(b_at_bob) | set(b_at_alice))),
    "histories_equal": ha.split("Head: ")[-1] == hb.split("Head: ")[-1],
    "integrity": [sqlite3.connect(f"{p}/eggs.db").execute("PRAGMA integrity_check")
                  .fetchone()[0] for p in (a, b)],
    "strays": strays,
    # every share that went through was received by now: its blocks are deleted
    "packs_left": sorted(os.listdir(f"{b}/blocks/packs")),
    "pins_left": sorted(os.listdir(f"{b}/blocks/pins")),
}))
PY
