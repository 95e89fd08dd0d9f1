#!/usr/bin/env bash
# Inside a VM (as root): start dockerd, run the kernel-facing areas against it and against an embedded
# refengine, and write the reports under $REPORTS (default /vagrant/reports/vagrant/<cgroup mode>).
# Usage: run-suite.sh [pytest paths...]   (default: conformance/cgroups conformance/isolation)
set -euo pipefail
REPO=${REPO:-/vagrant}
VENV=${VENV:-/opt/conformance}
mode=$([ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && echo cgroup2 || echo cgroup1)
REPORTS=${REPORTS:-$REPO/reports/vagrant/$mode}
paths=("$@")
((${#paths[@]})) || paths=(conformance/cgroups conformance/isolation)
mkdir -p "$REPORTS"
cd "$REPO"

ping_dockerd() { curl -sf --max-time 2 --unix-socket /var/run/docker.sock http://d/_ping >/dev/null 2>&1; }
if ! ping_dockerd; then
  dockerd >"$REPORTS/dockerd.log" 2>&1 &
  for _ in $(seq 60); do ping_dockerd && break; sleep 1; done
fi
ping_dockerd || { echo "dockerd did not start"; tail -30 "$REPORTS/dockerd.log"; exit 1; }

echo "kernel $(uname -r), $mode"
rc=0
# -p no:cacheprovider: the repository may be mounted read-only
"$VENV/bin/pytest" "${paths[@]}" -p no:cacheprovider -q --target unix:///var/run/docker.sock \
  --report-dir "$REPORTS" --report-name dockerd --junitxml "$REPORTS/dockerd.xml" || rc=1
"$VENV/bin/pytest" "${paths[@]}" -p no:cacheprovider -q \
  --report-dir "$REPORTS" --report-name refengine --junitxml "$REPORTS/refengine.xml" || rc=1
"$VENV/bin/conformance" report "$REPORTS/dockerd.json" "$REPORTS/refengine.json" -o "$REPORTS/matrix.html" || true
echo "reports in $REPORTS (exit $rc)"
exit $rc
