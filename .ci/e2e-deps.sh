#!/bin/sh
# Packages the end-to-end suites (tests/integration/{bridge,podman,cri}.rs) need on Debian 12.
# Idempotent: apt-get install does nothing for packages already installed.
# (Run `apt-get update` first on a fresh image.)
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get install -y containernetworking-plugins iproute2 iputils-ping podman runc busybox-static catatonit conmon containerd iptables
