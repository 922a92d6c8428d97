#!/usr/bin/env bash
# `make run`: runs the host on the example config until Ctrl-C, then
# verifies the audit trail it wrote with the log's public key.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
chmod 700 var
if [ ! -s var/worker.token ]; then
	umask 077
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > var/worker.token
fi
echo "vramward: running on examples/config.hcl; press Ctrl-C to stop" >&2
echo "vramward: the audit log's public key is var/state/audit.pub (written at the first start; keep a copy off the node)" >&2
set +e
./bin/vramward run -config examples/config.hcl
code=$?
set -e
echo "vramward: exited with $code; verifying the trail" >&2
./bin/vramward audit verify -key var/state/audit.pub var/audit/audit.log*
exit "$code"
