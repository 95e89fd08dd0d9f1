#!/usr/bin/env bash
# Inside a VM (as root): start dockerd, run the kernel-facing areas against it and against an embedded
# refengine, and write the reports under $REPORTS (default /vagrant/reports/vagrant/<cgroup mode>).
# Usage: [TARGETS="dockerd refengine"] run-suite.sh [pytest paths...]   (default: conformance/cgroups conformance/isolation)
set -euo pipefail
REPO=${REPO:-/vagrant}
VENV=${VENV:-/opt/conformance}
mode=$([ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && echo cgroup2 || echo cgroup1)
REPORTS=${REPORTS:-$REPO/reports/vagrant/$mode}
paths=("$@")
((${#paths[@]})) || paths=(conformance/cgroups conformance/isolation)
# which daemons: $TARGETS, else conformance.targets=a,b on the kernel command line (vagrant/qemu/run
# passes $VM_TARGETS there), else both
targets=${TARGETS:-$(sed -n 's/.*conformance.targets=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')}
targets=" ${targets:-dockerd refengine} "
mkdir -p "$REPORTS"
cd "$REPO"
echo "kernel $(uname -r), $mode; targets:$targets"
rc=0

if [[ $targets == *" dockerd "* ]]; then
  ping_dockerd() { curl -sf --max-time 2 --unix-socket /var/run/docker.sock http://d/_ping >/dev/null 2>&1; }
  if ! ping_dockerd; then
    dockerd >"$REPORTS/dockerd.log" 2>&1 &
    for _ in $(seq 60); do ping_dockerd && break; sleep 1; done
  fi
  ping_dockerd || { echo "dockerd did not start"; tail -30 "$REPORTS/dockerd.log"; exit 1; }
  # -p no:cacheprovider: the repository may be mounted read-only
  "$VENV/bin/pytest" "${paths[@]}" -p no:cacheprovider -q --target unix:///var/run/docker.sock \
    --report-dir "$REPORTS" --report-name dockerd --junitxml "$REPORTS/dockerd.xml" || rc=1
fi
if [[ $targets == *" refengine "* ]]; then
  "$VENV/bin/pytest" "${paths[@]}" -p no:cacheprovider -q \
    --report-dir "$REPORTS" --report-name refengine --junitxml "$REPORTS/refengine.xml" || rc=1
fi
reports=()
for t in dockerd refengine; do [[ $targets == *" $t "* ]] && reports+=("$REPORTS/$t.json"); done
"$VENV/bin/conformance" report "${reports[@]}" -o "$REPORTS/matrix.html" || true
echo "reports in $REPORTS (exit $rc)"
exit $rc
