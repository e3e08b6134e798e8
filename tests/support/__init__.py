"""What imagekit's tests and benchmarks share (the benchmarks put tests/ on sys.path): small wheels and
projects, a registry process of one's own, keys and attestations, test images of Debian packages
(Dockerfiles in tests/images), synthetic lakes, a Ray cluster."""
from support.cluster import ray_cluster
from support.images import PG, postgres_image, redis_image, remove_built, variant_image, vendor_image
from support.keys import make_keys, record_verified, sign_pair
from support.lakes import copy_lake, transplant
from support.projects import elsewhere, make_wheel, on_vendor_bases, write_project
from support.registry import RegistryFront, RegistryProcess, immutable_tags, make_htpasswd, make_tls, seed_image
from support.servers import free_port, moto_server

__all__ = ["PG", "RegistryFront", "RegistryProcess", "immutable_tags", "copy_lake", "elsewhere", "free_port", "make_htpasswd", "make_keys", "make_tls", "make_wheel", "moto_server", "on_vendor_bases",
           "postgres_image", "ray_cluster", "record_verified", "redis_image", "remove_built", "seed_image", "sign_pair", "transplant",
           "variant_image", "vendor_image", "write_project"]
