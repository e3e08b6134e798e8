"""moto's S3 server, as `moto_server` starts it (the same arguments), with moto's list of its own
services read once: moto 5.2.5 lists its package folder (some 180 stat calls) on every request to
route it, about a third of the server's time per request (bench/s3_bench.py: 1.2x the requests a
second with one client, 1.37x with eight). ``fast_routing()`` alone: for a WSGI front of its own (the
MinIO contract's)."""
import sys


def fast_routing() -> None:
    from moto import backends

    services = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: services


if __name__ == "__main__":
    fast_routing()
    from moto.server import main

    main(sys.argv[1:])
