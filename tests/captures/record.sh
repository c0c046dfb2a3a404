#!/usr/bin/env bash
# Records the replay corpus from real traffic between two network namespaces joined by a veth
# pair (ARP and neighbour discovery on, so they appear too). Needs root, iproute2, tcpdump,
# iputils-ping and python3. The captures are committed; CI only replays them.
#
#   sudo tests/captures/record.sh            # rewrites tests/captures/*.pcap
#   cargo run -- replay tests/captures/X.pcap > tests/captures/X.expected   # then the goldens
set -euo pipefail
cd "$(dirname "$0")"
A=l3rec-a-$$ B=l3rec-b-$$
cleanup() { ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
ip link add rec0 netns "$A" type veth peer name rec0 netns "$B"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; ip -n "$ns" link set rec0 up; done
ip -n "$A" addr add 10.98.0.1/24 dev rec0; ip -n "$B" addr add 10.98.0.2/24 dev rec0
ip -n "$A" addr add fd00:98::1/64 dev rec0 nodad; ip -n "$B" addr add fd00:98::2/64 dev rec0 nodad
sleep 1

# Records what $2.. sends, as seen on A's rec0, into $1.pcap.
record() {
  local name=$1; shift
  ip netns exec "$A" tcpdump -q -U -i rec0 -w "$name.pcap" 2>/dev/null & local dump=$!
  sleep 1
  "$@"
  sleep 1
  kill "$dump"; wait "$dump" 2>/dev/null || true
}
inA() { ip netns exec "$A" "$@"; }
inB() { ip netns exec "$B" "$@"; }

tcp() {  # a TCP connection carrying 20 kB each way
  inB python3 -c 'import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(("10.98.0.2",7001));s.listen();c,_=s.accept();d=b""
while len(d)<20000: d+=c.recv(65536)
c.sendall(d);c.close()' & local srv=$!
  sleep 0.5
  inA python3 -c 'import socket;c=socket.create_connection(("10.98.0.2",7001));c.sendall(b"x"*20000);d=b""
while len(d)<20000: d+=c.recv(65536)'
  wait "$srv"
}
udp() {  # UDP over IPv4 and IPv6, with DSCP CS6 and every ECN value on IPv4
  inA python3 -c 'import socket
for tos in (0,1,2,3,0xc0,0xc3,0xb8):
  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.setsockopt(socket.IPPROTO_IP,socket.IP_TOS,tos);s.sendto(b"udp4",("10.98.0.2",7002))
s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_TCLASS,0xc1);s.sendto(b"udp6",("fd00:98::2",7002))'
}
icmp() { inA ping -c 2 -i 0.2 10.98.0.2 >/dev/null; inA ping -6 -c 2 -i 0.2 fd00:98::2 >/dev/null; }
options() { inA ping -R -c 2 -i 0.2 10.98.0.2 >/dev/null; }  # IPv4 record-route option
fragments() { inA ping -c 1 -s 3000 10.98.0.2 >/dev/null; inA ping -6 -c 1 -s 3000 fd00:98::2 >/dev/null; }
neighbours() {  # ARP and ND from empty caches, MLD reports (hop-by-hop extension header)
  inA ip neigh flush dev rec0; inB ip neigh flush dev rec0
  inA ping -c 1 10.98.0.2 >/dev/null; inA ping -6 -c 1 fd00:98::2 >/dev/null
  inA python3 -c 'import socket,struct;s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_JOIN_GROUP,socket.inet_pton(socket.AF_INET6,"ff02::1:3")+struct.pack("I",socket.if_nametoindex("rec0")))
import time;time.sleep(0.5)'
}

record tcp tcp
record udp udp
record icmp icmp
record ipv4-options options
record fragments fragments
record neighbours neighbours
ls -l ./*.pcap
