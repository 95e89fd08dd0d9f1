#!/usr/bin/env bash
# Provision a Debian 12 machine to run the conformance suite on its own kernel: the packages .ci/run
# installs (and apparmor: dockerd refuses to start containers where the kernel has AppArmor but
# apparmor_parser is missing), plus a venv with the project (editable, from the repository at $REPO, default /vagrant).
# Used by the Vagrantfile (a VM with network) and by vagrant/qemu/build-image (in a chroot, before boot).
set -euo pipefail
REPO=${REPO:-/vagrant}
VENV=${VENV:-/opt/conformance}
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  docker.io busybox-static golang-github-docker-docker-dev curl nftables iptables procps util-linux \
  iproute2 apparmor ca-certificates python3 python3-venv python3-dev gcc libseccomp2 kmod xz-utils >/dev/null

python3 -m venv "$VENV"
# build tools first, then no isolated build step: that step ignores pip's configuration (a proxy's CA, say)
"$VENV/bin/pip" install -q --disable-pip-version-check 'setuptools>=68' wheel
"$VENV/bin/pip" install -q --disable-pip-version-check --no-build-isolation -e "$REPO[test]"
echo "provisioned: $("$VENV/bin/python" --version), docker.io $(dpkg-query -W -f '${Version}' docker.io)"
