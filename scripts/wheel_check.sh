#!/usr/bin/env bash
# The installed tool must read what the checkout reads. Build a wheel, install it (not editable) into a
# fresh virtual environment outside the checkout, and run --help, cap list, init and one capability there.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip >/dev/null
"$work/venv/bin/pip" wheel -q --no-deps -w "$work/dist" "$here" >/dev/null
"$work/venv/bin/pip" install -q "$work"/dist/spine_comms-*.whl >/dev/null
tool="$work/venv/bin/spine-comms"
cd "$work"  # nothing of the checkout on the path
"$tool" --help >/dev/null
listing=$("$tool" cap list)
grep -q "communications.stack.status" <<<"$listing"
"$tool" init "$work/root" --domain example.org --mail-host mail.example.org >/dev/null
"$tool" contracts.check --root "$work/root" --json >"$work/check.json"
"$work/venv/bin/python" - "$work/check.json" <<'PY'
import json, sys
envelope = json.load(open(sys.argv[1]))
assert envelope["status"] == "ok", envelope["status"]
assert envelope["data"]["contracts"]["communications.stack.contract.yaml"]["valid"] is True
PY
echo "wheel check: the installed wheel runs --help, cap list, init and contracts.check"
