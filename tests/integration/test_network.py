"""What a run's containers reach, as the README says it: an ordinary bridge network of the run's own
(labelled with the run, not internal), so a container has a default route through the network's
gateway (whatever the engine's host routes to), its peers by name, and the engine's host as
host.docker.internal. Read from inside a container (its routes and hosts), with no traffic sent."""
import ipaddress

from imagekit import containers, forward, services

ROUTES = "python3 -c \"print(open('/proc/net/route').read())\""


def _gateway(routes: str) -> str:
    """The default route's gateway in /proc/net/route (little-endian hex), '' without one."""
    for line in routes.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return str(ipaddress.IPv4Address(bytes.fromhex(fields[2])[::-1]))
    return ""


def test_the_run_network_is_an_ordinary_bridge_of_the_run_with_a_default_route(engine, base_image, run):
    a = run.start(services.Idle(base_image, alias="a"))
    b = run.start(services.Idle(base_image, alias="b"))
    net = engine.client.networks.get(run.network.id).attrs
    assert net["Driver"] == "bridge" and not net["Internal"], net
    assert net["Labels"][containers.RUN_LABEL] == containers.run_id()
    code, routes = a.sh(ROUTES)
    assert code == 0, routes
    gateway = net["IPAM"]["Config"][0]["Gateway"]
    assert _gateway(routes) == gateway, routes  # out through the run network's gateway: what the host routes to
    code, peer = a.sh("getent hosts b")
    b_ip = engine.client.containers.get(b.c.id).attrs["NetworkSettings"]["Networks"][run.network.name]["IPAddress"]
    assert code == 0 and peer.split()[0] == b_ip, peer
    code, host = a.sh(f"getent hosts {forward.HOST_ALIAS}")
    assert code == 0 and host.split()[0], host


def test_a_container_without_a_network_has_no_route_at_all(engine, base_image, run):
    c = run.start(services.Idle(base_image, network_mode="none"))
    code, routes = c.sh(ROUTES)
    assert code == 0 and _gateway(routes) == "", routes
