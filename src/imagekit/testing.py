"""Helpers for imagekit's own tests and benchmarks: small wheels and projects, a registry process
of one's own (TLS and auth optional), and small images made by hand in a registry."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import textwrap
import time
import zipfile
from pathlib import Path

from imagekit import digests
from imagekit.oci import OCI_MANIFEST, Manifest


def make_wheel(folder: Path, name: str, version: str, *, requires: tuple[str, ...] = (),
               requires_python: str | None = None) -> Path:
    """Write a minimal pure-Python wheel (METADATA, WHEEL, RECORD and one module)."""
    dist = f"{name.replace('-', '_')}-{version}"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
            *(f"Requires-Dist: {r}" for r in requires)]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    files = {f"{name.replace('-', '_')}/__init__.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": "\n".join(meta) + "\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), text)
    return wheel


def write_project(root: Path, toml: str | None = None, requirements: dict[str, str] | None = None) -> Path:
    """A project folder with imagekit.toml (defaults: base -> ray, notebook) and requirements.in files."""
    toml = toml if toml is not None else textwrap.dedent("""
        [[environments]]
        name = "desa"
        project = "mlops-desa"
        [[environments]]
        name = "prod"
        project = "mlops-prod"
        [[images]]
        name = "base"
        [[images]]
        name = "ray"
        parent = "base"
        [[images]]
        name = "notebook"
        parent = "base"
        """)
    root.mkdir(parents=True, exist_ok=True)
    (root / "imagekit.toml").write_text(toml)
    for name, text in (requirements or {"base": "", "ray": "", "notebook": ""}).items():
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        (root / "images" / name / "requirements.in").write_text(text)
    return root / "imagekit.toml"


class RegistryProcess:
    """A docker-registry (CNCF Distribution) of the test's own: own port, own storage, stoppable."""

    def __init__(self, root: Path, *, tls: tuple[Path, Path] | None = None, htpasswd: Path | None = None) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.root = root
        lines = ["version: 0.1", "log: {level: error}",
                 f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}",
                 f'http: {{addr: "{self.host}"' + (f", tls: {{certificate: {tls[0]}, key: {tls[1]}}}" if tls else "")
                 + "}"]
        if htpasswd:
            lines.append(f"auth: {{htpasswd: {{realm: imagekit-test, path: {htpasswd}}}}}")
        self.config = root / "registry.yml"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n")
        self.scheme = "https" if tls else "http"
        self.proc = None

    def start(self) -> "RegistryProcess":
        import socket
        import subprocess
        import time

        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "registry.log", "ab"))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"registry on {self.host} did not start: {(self.root / 'registry.log').read_text()}")

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key, cert, key = (folder / n for n in ("ca.pem", "ca.key", "cert.pem", "key.pem"))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=imagekit test CA",
        "-keyout", str(ca_key), "-out", str(ca))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
        "-out", str(folder / "cert.csr"))
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", str(folder / "cert.csr"), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(folder / "ext.cnf"), "-out", str(cert))
    return ca, cert, key


def make_htpasswd(path: Path, user: str, password: str) -> Path:
    """An htpasswd file with a bcrypt hash, the only kind docker-registry accepts (cost 4: the registry
    checks it on every request, and a test makes thousands)."""
    import bcrypt

    path.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    return path


def make_keys(folder: Path, name: str = "imagekit") -> tuple[Path, Path]:
    """An ECDSA P-256 key pair as the README makes it: (<name>.key PKCS#8 PEM, <name>.pub PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    key, pub = folder / f"{name}.key", folder / f"{name}.pub"
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    pub.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pub


def sign_pair(key: Path, pair: dict[str, tuple[str, str]], *, passed: bool = True,
              scenarios: tuple[str, ...] = ("iris",)) -> dict:
    """The envelope verify-compat would sign for ``pair`` (name -> (repo, digest)) with ``key``,
    for a run of ``scenarios``."""
    from imagekit import attest

    return attest.sign(attest.statement(pair, passed=passed, lock="0" * 64, python="3.11.2", s3_server="test",
                                        scenarios={n: {"passed": passed} for n in scenarios}),
                       attest.load_private(str(key)))


def record_verified(reg, key: Path, pair: dict[str, tuple[str, str]], *, passed: bool = True,
                    scenarios: tuple[str, ...] = ("iris",)) -> dict:
    """A signed attestation that ``pair`` passed verify-compat together (a run of ``scenarios``),
    attached to each of its digests as verify-compat attaches it. Returns the envelope."""
    from imagekit.verify import record

    envelope = sign_pair(key, pair, passed=passed, scenarios=scenarios)
    for repo, digest in pair.values():
        record.write(reg, repo, digest, envelope)
    return envelope


def seed_image(reg, repo: str, tag: str, layers: int, *, verified: Path | None = None, extra: bytes = b"",
               name: str = "ray", labels: dict[str, str] | None = None) -> str:
    """A small image made by hand in the registry: ``layers`` random blobs (and ``extra`` as one
    more), a config, a manifest; ``verified``: a signing key, to attach a passing attestation for it
    alone as image ``name``. Returns its digest."""
    blobs = [os.urandom(4096) for _ in range(layers)] + ([extra] if extra else [])
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Labels": labels or {}}}).encode()
    descs = []
    for data, media in [(config, "application/vnd.oci.image.config.v1+json"),
                        *((b, "application/vnd.oci.image.layer.v1.tar") for b in blobs)]:
        digest = digests.oci(data)
        reg.upload_blob(repo, digest, data)
        descs.append({"mediaType": media, "digest": digest, "size": len(data)})
    manifest = Manifest.of({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descs[0], "layers": descs[1:]})
    reg.put_manifest(repo, tag, manifest)
    if verified:
        record_verified(reg, verified, {name: (repo, manifest.digest)})
    return manifest.digest


REDIS_DEBS = ("redis-server", "redis-tools", "libjemalloc2", "liblzf1", "libatomic1")
POSTGRES_DEBS = ("postgresql-15", "postgresql-client-15", "libpq5", "libicu72", "libxml2", "libxslt1.1",
                 "libldap-2.5-0", "libsasl2-2", "libsasl2-modules-db", "libgssapi-krb5-2", "libkrb5-3",
                 "libk5crypto3", "libkrb5support0", "libkeyutils1", "libedit2", "libbsd0", "libmd0",
                 "libffi8", "libtinfo6", "locales")
PG = "/usr/lib/postgresql/15/bin"


def debs_image(engine, os_ref: str, folder: Path, tag: str, debs: tuple[str, ...], steps: str,
               files: dict[str, str] | None = None) -> str:
    """A test image of Debian packages (downloaded on the host with apt, as the OS image's packages
    come from Debian too) unpacked onto the OS image, then ``steps``; built once per engine."""
    import shutil
    import subprocess

    if engine.image(tag):
        return tag
    where, root = folder / "debs", folder / "root"
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-q", *sorted(set(debs))], cwd=where, check=True, capture_output=True)
    for deb in where.glob("*.deb"):  # unpacked here: the OS image has no dpkg-deb
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
    for top in ("bin", "sbin", "lib"):  # merged /usr: those are symlinks in the OS image
        if (root / top).is_dir():
            shutil.copytree(root / top, root / "usr" / top, dirs_exist_ok=True, symlinks=True)
            shutil.rmtree(root / top)
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    (folder / "Dockerfile").write_text(f"ARG PARENT\nFROM ${{PARENT}}\nCOPY root/ /\n{steps}")
    engine.build(folder, tags=[tag], buildargs={"PARENT": os_ref}, labels={})
    return tag


def redis_image(engine, os_ref: str, folder: Path) -> str:
    """A Redis test image: Debian's redis-server."""
    return debs_image(engine, os_ref, folder, "imagekit-test/redis:bookworm", REDIS_DEBS,
                      "RUN redis-server --version\n"
                      'CMD ["redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "yes"]\n')


def postgres_image(engine, os_ref: str, folder: Path) -> str:
    """A PostgreSQL test image: Debian's postgresql-15, a cluster initialised for the user postgres
    (password auth over TCP: POSTGRES_PASSWORD at run time sets it), listening on 5432."""
    return debs_image(engine, os_ref, folder, "imagekit-test/postgres:bookworm", POSTGRES_DEBS, (
        "RUN ldconfig && useradd --system --home-dir /var/lib/postgresql postgres && "
        "mkdir -p /var/lib/postgresql/data /run/postgresql && chown -R postgres /var/lib/postgresql /run/postgresql\n"
        "USER postgres\n"
        f"RUN {PG}/initdb -D /var/lib/postgresql/data -U postgres --auth-local=trust --auth-host=scram-sha-256 && "
        "echo \"host all all 0.0.0.0/0 scram-sha-256\" >> /var/lib/postgresql/data/pg_hba.conf\n"
        "COPY --chmod=755 start.sh /usr/local/bin/start-postgres\n"
        'CMD ["/usr/local/bin/start-postgres"]\n'), files={"start.sh": (
        "#!/bin/sh\nset -e\n"
        f"{PG}/pg_ctl -D /var/lib/postgresql/data -o '-c listen_addresses=localhost' -w start >/dev/null\n"
        f"{PG}/psql -q -U postgres -c \"ALTER USER postgres PASSWORD '$POSTGRES_PASSWORD'\"\n"
        f"{PG}/pg_ctl -D /var/lib/postgresql/data -m fast -w stop >/dev/null\n"
        f"exec {PG}/postgres -D /var/lib/postgresql/data -c listen_addresses='*' -c jit=off\n")})


def copy_lake(client, bucket: str, count: int, *, prefix: str = "lake", of: str = "") -> list[str]:
    """A synthetic data lake: ``count`` copies of the models under ``of`` in ``bucket`` (round robin), each
    under ``<prefix>/<scenario>-<n>/<version>/`` with its own sha256 (bytes appended after the pickle's
    end, which unpickling ignores): the meta.json keys written."""
    from concurrent.futures import ThreadPoolExecutor

    metas = [k["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=of)
             for k in page.get("Contents", []) if k["Key"].endswith("/meta.json") and not k["Key"].startswith(prefix)]
    sources = [(json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in metas]
    bodies = [client.get_object(Bucket=s["bucket"], Key=s["key"])["Body"].read() for s in sources]

    def one(n: int) -> str:
        meta, body = sources[n % len(sources)], bodies[n % len(sources)] + f"\n#copy {prefix} {n}".encode()
        folder = f"{prefix}/{meta['scenario']}-{n}/{meta['version']}"
        client.put_object(Bucket=bucket, Key=f"{folder}/model.pkl", Body=body)
        copy = {**meta, "key": f"{folder}/model.pkl", "sha256": hashlib.sha256(body).hexdigest()}
        client.put_object(Bucket=bucket, Key=f"{folder}/meta.json", Body=json.dumps(copy).encode())
        return f"{folder}/meta.json"

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def transplant(source, target, bucket: str, prefix: str) -> None:
    """Copy every object under ``prefix`` of ``bucket`` from one S3 server to another (created there)."""
    if bucket not in {b["Name"] for b in target.list_buckets().get("Buckets", [])}:
        target.create_bucket(Bucket=bucket)
    for page in source.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            target.put_object(Bucket=bucket, Key=o["Key"], Body=source.get_object(Bucket=bucket, Key=o["Key"])[
                "Body"].read())


@contextlib.contextmanager
def ray_cluster(image: str, workers: int = 2, *, name: str = "imagekit-cluster"):
    """A Ray head and ``workers`` workers from ``image`` on a network of their own (KubeRay's
    commands, one CPU each, host.docker.internal mapped), the head's client server published on
    this machine's loopback as a port-forward is: yields (its ray:// address, the containers)."""
    import docker

    client = docker.from_env()
    network = client.networks.create(f"{name}-{os.getpid()}-{time.monotonic_ns() % 10**6}")
    common = {"extra_hosts": {"host.docker.internal": "host-gateway"}, "shm_size": "512m", "detach": True,
              "network": network.name}
    nodes = []
    try:
        nodes.append(client.containers.run(image, ["ray", "start", "--head", "--port=6379", "--num-cpus=1",
                                                   "--ray-client-server-port=10001", "--disable-usage-stats", "--block"],
                                           hostname="head", name=f"{network.name}-head",
                                           ports={"10001/tcp": ("127.0.0.1", None)}, **common))
        for n in range(1, workers + 1):
            nodes.append(client.containers.run(image, ["ray", "start", f"--address={network.name}-head:6379",
                                                       "--num-cpus=1", "--disable-usage-stats", "--block"],
                                               hostname=f"worker-{n}", name=f"{network.name}-worker-{n}", **common))
        count = "import ray; ray.init(address='auto'); print(sum(n['Alive'] for n in ray.nodes()))"
        deadline = time.monotonic() + 120
        while True:
            code, out = nodes[0].exec_run(["python", "-c", count])
            if code == 0 and out.decode().strip().splitlines()[-1] == str(workers + 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {workers + 1}-node Ray cluster did not come up: {out.decode()[-500:]}")
            time.sleep(2)
        nodes[0].reload()
        yield f"ray://127.0.0.1:{nodes[0].ports['10001/tcp'][0]['HostPort']}", nodes
    finally:
        for c in nodes:
            c.remove(force=True)
        network.remove()
