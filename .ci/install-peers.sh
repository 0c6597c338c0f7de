#!/usr/bin/env bash
# Install the real BGP daemons that the interop tests (tests/interop/) peer
# fastbgp against.  Idempotent and non-interactive: safe to run on every CI
# run, on a fresh machine or on one where everything is already installed.
#
# The tests start each daemon themselves inside throw-away network namespaces
# (fastbgp/testing/lab.py), so the distribution's own system services must never
# be running: a bird/bgpd listening on the host's port 179 would be pointless
# at best and could collide with test expectations at worst.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PKGS=(
    bird2      # bird, birdc
    gobgpd     # gobgpd, gobgp
    frr        # /usr/lib/frr/{zebra,bgpd}, vtysh
    exabgp     # exabgp (python3, pulled from Debian so it matches the distro)
    openbgpd   # /usr/sbin/bgpd (openbgpd flavour), bgpctl
    bgpdump    # reading MRT dumps in tests
    iproute2   # ip netns / ip link (veth, bridge)
    procps     # sysctl (per-namespace IPv6 DAD settings), ps for debugging
    iputils-ping  # lab connectivity checks (Host.ping)
    stayrtr    # RPKI-to-Router cache serving a local JSON file (RPKI tests)
    pmacct     # pmbmpd, a BMP collector (BMP tests)
    tshark     # Wireshark's dissectors: second opinion on BMP captures
)

# Daemons that Debian's maintainer scripts (or a reboot, where systemd runs)
# could have started as system services.  Matched by the full path of the
# running executable, never by a short name, so nothing else is touched.
# (exabgp is absent on purpose: it runs under python3, so its exe is the
# interpreter, and its Debian unit needs a config we never write.)
DAEMON_EXES=(
    /usr/sbin/bird
    /usr/sbin/gobgpd
    /usr/lib/frr/watchfrr
    /usr/lib/frr/zebra
    /usr/lib/frr/bgpd
    /usr/lib/frr/staticd
    /usr/lib/frr/mgmtd
    /usr/sbin/bgpd
    /usr/bin/stayrtr
    /usr/sbin/pmacctd
    /usr/sbin/nfacctd
    /usr/sbin/sfacctd
    /usr/sbin/pmbmpd
    /usr/sbin/pmbgpd
)

missing() {
    local p
    for p in "${PKGS[@]}"; do
        # dpkg-query prints "install ok installed" only for fully configured
        # packages; anything else (absent, half-configured) means reinstall.
        if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
            return 0
        fi
    done
    return 1
}

# Stop any of those daemons that a postinst (or a boot) left running in the
# host's own network namespace.  Ones inside another namespace belong to a
# test lab that may be running right now and are left alone.
stop_system_daemons() {
    local pid exe want
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
        [ -n "$exe" ] || continue
        for want in "${DAEMON_EXES[@]}"; do
            if [ "$exe" = "$want" ]; then
                if [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$(readlink /proc/1/ns/net)" ]; then
                    echo "install-peers: stopping system service $exe (pid $pid)" >&2
                    kill "$pid" 2>/dev/null || true
                fi
            fi
        done
    done
}

if missing; then
    # Prevent maintainer scripts from starting services during install
    # (invoke-rc.d honours exit 101 = "action forbidden").  Some images (e.g.
    # Docker-derived ones) already ship such a file: leave theirs untouched.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# temporary, from fastbgp .ci/install-peers.sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    cleanup_policy() {
        if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    }
    trap cleanup_policy EXIT

    apt-get update -q
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${PKGS[@]}"

    cleanup_policy
    trap - EXIT
fi

# Where systemd is actually PID 1, also disable the units so a reboot doesn't
# bring them back.  In containers systemctl may exist without systemd running;
# then these calls fail harmlessly.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for unit in bird bird2 gobgpd frr exabgp openbgpd bgpd; do
        systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
    done
fi

stop_system_daemons

for b in ping sysctl bird birdc gobgpd gobgp /usr/lib/frr/bgpd /usr/lib/frr/zebra vtysh exabgp bgpctl bgpdump ip stayrtr pmbmpd tshark; do
    command -v "$b" >/dev/null 2>&1 || { echo "install-peers: $b missing after install" >&2; exit 1; }
done
echo "install-peers: all BGP peer daemons installed"
