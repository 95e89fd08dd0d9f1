"""The network driver: Linux bridges, veth endpoints, nftables NAT, published ports and embedded DNS.

Modules, bottom up:
- `nsutil`: sockets and small jobs inside another network namespace (fork, setns, pass fds back).
- `netlink`: one worker thread that owns every pyroute2 call (pyroute2's sync API can't run in a loop).
- `bridge`, `veth`: the links, over netlink (pyroute2), never by shelling out to `ip`.
- `nat`: refengine's own nftables table (masquerade, isolation), loaded with `nft -f -`.
- `dockeruser`: tagged ACCEPT rules for our bridges in dockerd's DOCKER-USER chain (coexistence).
- `ports`: the userland proxy for published ports.
- `dns`: the embedded DNS server at 127.0.0.11 in each container on a user-defined network.
- `etcfiles`: /etc/hosts, /etc/resolv.conf and /etc/hostname for a container.
- `driver`: `BridgeDriver`, the engine's `NetworkDriver`, tying the above together.
"""
