#!/usr/bin/env bash
# Installs the Debian packages the project builds and tests with, when they are missing.
set -euo pipefail
needed=()
for package in rabbitmq-server librabbitmq-dev libmimalloc-dev pkg-config "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || needed+=("$package")
done
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${needed[*]} (run as root, or install them first)" >&2
    exit 1
fi
echo "installing ${needed[*]}" >&2
apt-get update -qq
# The system's own rabbitmq-server service is not needed: our nodes are started by hand.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${needed[@]}" > /dev/null
