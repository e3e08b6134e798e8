"""`imagekit manifests`: what an environment's cluster runs, rendered from one place and pinned by the
digests `current` names there: a RayCluster (GCS fault tolerance on the environment's Redis), a
RayService serving the Ray image's model server, the RayJob of the stored-model check, the Zero
to JupyterHub `singleuser` values with a profile for the notebook image and RAY_ADDRESS, and the
values of KubeRay's ray-cluster Helm chart (the RayCluster for teams that install it with Helm; the
chart joins `repository:tag`, so the tag carries the digest). The README's snippets are these
documents rendered for EXAMPLE."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from imagekit import files, gitops, inventory
from imagekit.config import Config
from imagekit.errors import PreconditionError
from imagekit.inventory import MOVING_TAG

API = "ray.io/v1"
FILES = ("raycluster.yaml", "rayservice.yaml", "rayjob-verify-stored.yaml", "jupyterhub-values.yaml",
         "values-ray-cluster.yaml")


@dataclass(frozen=True)
class Pinned:
    """One environment's images as its manifests name them."""
    env: str
    project: str
    namespace: str
    redis: str  # host:port
    redis_secret: str
    s3_endpoint: str  # S3 as the cluster's pods reach it
    ray: str  # host/project/repository@sha256:...
    ray_tag: str  # its version tag
    ray_version: str
    ray_id: str  # its config digest: the image id the stored-model check keys its outcomes by
    notebook: str  # host/project/repository (without tag)
    notebook_tag: str  # its version tag
    notebook_digest: str


EXAMPLE = Pinned(env="prod", project="mlops-prod", namespace="mlops-prod", redis="redis.mlops-prod.svc:6379",
                 redis_secret="ray-redis", s3_endpoint="http://minio.mlops-prod.svc:9000",
                 ray="harbor.example.org/mlops-prod/ray@sha256:<digest>", ray_tag="2.41.0-py311-sunat-v15",
                 ray_version="2.41.0",
                 ray_id="sha256:<its config digest>",
                 notebook="harbor.example.org/mlops-prod/scipy-notebook", notebook_tag="python-3.11-sunat-v15",
                 notebook_digest="sha256:<digest>")


def pinned(cfg: Config, env_name: str) -> Pinned:
    """The environment's `current` digests (gitops.pins), the Ray image's version and id from its config."""
    env, pins = cfg.environment(env_name), gitops.pins(cfg, env_name)
    ray, notebook = (pins.get(cfg.image(name).repository) for name in (cfg.verify.server, cfg.verify.trainer))
    if ray is None or notebook is None:
        missing = cfg.verify.server if ray is None else cfg.verify.trainer
        raise PreconditionError(f"{env.name} runs no {missing} image yet (nothing under {MOVING_TAG})",
                                hint=f"promote into it first (imagekit promote --all --to {env.name})")
    reg = inventory.registry_for(cfg, env)
    manifest = reg.manifest(ray.path, ray.digest)
    versions = inventory.packages(inventory.labels(reg, ray.path, manifest))
    namespace = env.k8s_namespace
    return Pinned(env=env.name, project=env.project, namespace=namespace,
                  redis=env.redis or f"redis.{namespace}.svc:6379", redis_secret=env.redis_secret,
                  s3_endpoint=cfg.verify.cluster_s3_endpoint or f"http://minio.{namespace}.svc:9000",
                  ray=ray.ref, ray_tag=ray.tag or MOVING_TAG, ray_version=versions.get("ray", ""), ray_id=manifest.data.get("config", {}).get("digest", ""),
                  notebook=notebook.repository, notebook_tag=notebook.tag or MOVING_TAG, notebook_digest=notebook.digest)


def _pod(container: str, image: str, *, ports: tuple[int, ...] = (), env: list[dict] | None = None,
         secret: str = "") -> dict:
    c: dict = {"name": container, "image": image}
    if ports:
        c["ports"] = [{"containerPort": p} for p in ports]
    if secret:
        c["envFrom"] = [{"secretRef": {"name": secret}}]
    if env:
        c["env"] = env
    return {"spec": {"containers": [c]}}


def _cluster_spec(p: Pinned, *, workers: int, env: list[dict] | None = None, secret: str = "",
                  group: str = "workers") -> dict:
    return {
        "rayVersion": p.ray_version,
        "headGroupSpec": {"rayStartParams": {"dashboard-host": "0.0.0.0"},
                          "template": _pod("ray-head", p.ray, ports=(6379, 8265, 10001, 8000), env=env, secret=secret)},
        "workerGroupSpecs": [{"groupName": group, "replicas": workers, "minReplicas": workers,
                              "maxReplicas": workers, "rayStartParams": {},
                              "template": _pod("ray-worker", p.ray, env=env, secret=secret)}],
    }


def head_address(p: Pinned) -> str:
    """Ray Client on the RayCluster's head service (KubeRay names it <cluster>-head-svc)."""
    return f"ray://{p.project}-head-svc.{p.namespace}.svc:10001"


def documents(p: Pinned) -> dict[str, dict]:
    meta = {"name": p.project, "namespace": p.namespace}
    s3 = [{"name": "AWS_ENDPOINT_URL", "value": p.s3_endpoint}]
    cluster = {"apiVersion": API, "kind": "RayCluster", "metadata": meta, "spec": {
        "gcsFaultToleranceOptions": {"redisAddress": p.redis, "redisPassword": {
            "valueFrom": {"secretKeyRef": {"name": p.redis_secret, "key": "password"}}}},
        **_cluster_spec(p, workers=2)}}
    serve_config = yaml.safe_dump({"applications": [{"name": "models", "route_prefix": "/",
                                                     "import_path": "model_server:app"}]}, sort_keys=False)
    models = [{"name": "IMAGEKIT_MODELS", "valueFrom": {"configMapKeyRef": {"name": "imagekit-models",
                                                                            "key": "models.json"}}}, *s3]
    service = {"apiVersion": API, "kind": "RayService", "metadata": {**meta, "name": f"{p.project}-models"},
               "spec": {"serveConfigV2": serve_config,
                        "rayClusterConfig": _cluster_spec(p, workers=1, env=models, secret="minio-keys")}}
    job = {"apiVersion": API, "kind": "RayJob", "metadata": {**meta, "name": "verify-stored"}, "spec": {
        "entrypoint": 'python -m stored_check --prefix "" --out /tmp/outcomes.jsonl --image "$CANDIDATE_IMAGE_ID"',
        "shutdownAfterJobFinishes": True,
        "rayClusterSpec": _cluster_spec(p, workers=3, group="checkers", secret="minio-keys", env=[
            *s3, {"name": "CANDIDATE_IMAGE_ID", "value": p.ray_id}])}}
    hub = {"singleuser": {
        "image": {"name": p.notebook, "tag": f"{p.notebook_tag}@{p.notebook_digest}"},
        "profileList": [{"display_name": f"MLOps (verified with the {p.env} Ray cluster)", "default": True,
                         "kubespawner_override": {"image": f"{p.notebook}@{p.notebook_digest}",
                                                  "environment": {"RAY_ADDRESS": head_address(p)}}}]}}
    repository, _, digest = p.ray.partition("@")
    chart = {"image": {"repository": repository, "tag": f"{p.ray_tag}@{digest}", "pullPolicy": "IfNotPresent"},
             "gcsFaultTolerance": {"enabled": True, "redisAddress": p.redis, "redisPassword": {
                 "valueFrom": {"secretKeyRef": {"name": p.redis_secret, "key": "password"}}}},
             "head": {"rayVersion": p.ray_version, "rayStartParams": {"dashboard-host": "0.0.0.0"}},
             "worker": {"groupName": "workers", "replicas": 2, "minReplicas": 2, "maxReplicas": 2}}
    return dict(zip(FILES, (cluster, service, job, hub, chart)))


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # every document spelled out: no &id001 anchors
        return True


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                             style="|" if "\n" in s else None))


def dump(document: dict) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120)


def render(p: Pinned) -> dict[str, str]:
    """File name -> YAML text, each headed by what pinned it."""
    head = f"# imagekit manifests --env {p.env}: pinned by the digests `current` names in {p.project}\n"
    return {name: head + dump(doc) for name, doc in documents(p).items()}


def write(texts: dict[str, str], out: Path) -> list[Path]:
    return [files.write(out / name, text) for name, text in texts.items()]
