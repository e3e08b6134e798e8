"""The one OCI distribution client: auth challenges (basic, bearer tokens), manifests, blobs, mounts."""
from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import requests

from imagekit import digests, redact
from imagekit.config import Config
from imagekit.errors import ConfigError, RegistryError
from imagekit.images import Environment
from imagekit.oci import MANIFEST_TYPES, OCI_INDEX, Manifest, artifact, fallback_tag, is_local

TIMEOUT = 30
CHUNK = 8 << 20  # bytes per request when a blob is copied between registries
RETRY_WAITS = (0.1, 0.3, 1.0)  # a read answered 5xx is tried again after these seconds


def scheme_for(host: str, *, insecure: bool = False) -> str:
    """The scheme a registry given without one is reached by: plain http only on loopback (or opted into)."""
    return "http" if is_local(host) or insecure else "https"


@dataclass
class Registry:
    host: str  # host[:port], no scheme
    scheme: str = "https"
    username: str = ""
    password: str = field(default="", repr=False)
    ca_bundle: str = ""
    _session: requests.Session = field(default_factory=requests.Session, repr=False, compare=False)
    _tokens: dict[str, dict[str, str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_config(cls, cfg: Config, env: Environment | None = None) -> "Registry":
        """The registry of ``env`` (default: registry.url); credentials: the environment's own
        (IMAGEKIT_ENV_<NAME>_USERNAME/_PASSWORD), else registry.username/password, else the Docker config's."""
        s = cfg.registry
        url = ((env.registry if env else "") or s.url).rstrip("/")
        scheme, _, host = url.rpartition("://")
        scheme = scheme or scheme_for(host, insecure=s.insecure)
        if scheme == "http" and not (is_local(host) or s.insecure):
            raise ConfigError(f"plain http to {host} is refused", key="registry.url",
                              source=cfg.origins.get("registry.url"),
                              hint="use https, or set registry.insecure = true to opt in explicitly")
        ca = cfg.path(s.ca_bundle) if s.ca_bundle else ""
        if ca and not os.path.isfile(ca):
            raise ConfigError(f"CA bundle not found: {ca}", key="registry.ca_bundle",
                              source=cfg.origins.get("registry.ca_bundle"))
        username, password = s.username, s.password
        if env and cfg.env.get(env.variable_prefix + "USERNAME"):
            username, password = cfg.env[env.variable_prefix + "USERNAME"], cfg.env.get(env.variable_prefix + "PASSWORD", "")
            redact.register(password)
        return cls(host=host, scheme=scheme, username=username, password=password, ca_bundle=str(ca))

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def _call(self, method: str, url: str, **kw) -> requests.Response:
        """One HTTP request; network and TLS failures become RegistryError with what to do."""
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override a session's own verify
            return self._session.request(method, url, timeout=TIMEOUT, verify=self.ca_bundle or True, **kw)
        except requests.exceptions.SSLError as e:
            raise RegistryError(f"TLS to {self.host} failed: {e}",
                                hint="set registry.ca_bundle to the registry's CA certificate") from None
        except requests.exceptions.RequestException as e:
            raise RegistryError(f"registry {self.base} is not reachable ({method} {redact.strip_userinfo(url)}): "
                                f"{type(e).__name__}",
                                hint="run `make dev-up` for the local registry, or check registry.url") from None

    def ping(self) -> str:
        """GET /v2/: reachable (200, or 401 asking for credentials) or RegistryError."""
        r = self._call("GET", f"{self.base}/v2/")
        if r.status_code not in (200, 401):
            raise RegistryError(f"{self.base}/v2/ answered {r.status_code}; not an OCI registry?", status=r.status_code)
        return f"{self.base} answers the OCI distribution API ({'auth required' if r.status_code == 401 else 'open'})"

    def credentials(self) -> tuple[str, str] | None:
        """Explicit settings (IMAGEKIT_REGISTRY_USERNAME/_PASSWORD), else the user's Docker config
        (~/.docker/config.json, credential helpers included). Robot names like robot$p+ci are fine:
        nothing here passes through a shell."""
        if self.username:
            return self.username, self.password
        from docker import auth

        found = auth.resolve_authconfig(auth.load_config(), self.host) or {}
        if found.get("username"):
            return found["username"], found.get("password", "")
        return None

    def _request(self, method: str, url: str, *, scope: str, **kw) -> requests.Response:
        """One HTTP call, answering a 401's Basic or Bearer challenge once (Harbor's token service)."""
        headers = {**kw.pop("headers", {}), **self._tokens.get(scope, {})}
        r = self._call(method, url, headers=headers, **kw)
        for wait in RETRY_WAITS if method in ("GET", "HEAD") else ():  # a reader may race a writer's file
            if r.status_code < 500:
                break
            time.sleep(wait)
            r = self._call(method, url, headers=headers, **kw)
        if r.status_code == 401 and "WWW-Authenticate" in r.headers:
            self._tokens[scope] = self._answer(r.headers["WWW-Authenticate"], scope)
            r = self._call(method, url, headers={**headers, **self._tokens[scope]}, **kw)
        if r.status_code == 401:
            raise RegistryError(f"{self.host} refused the credentials for {scope}", status=401, codes=_codes(r),
                                hint="set IMAGEKIT_REGISTRY_USERNAME and IMAGEKIT_REGISTRY_PASSWORD "
                                     "(or IMAGEKIT_ENV_<NAME>_USERNAME/_PASSWORD for one environment), "
                                     "or `docker login`")
        if r.status_code == 403:
            raise RegistryError(f"{self.host} denied {method} on {scope}: {r.text[:200]}", status=403,
                                codes=_codes(r), hint="the account lacks permission on that project")
        return r

    def _answer(self, challenge: str, scope: str) -> dict[str, str]:
        scheme, _, params = challenge.partition(" ")
        creds = self.credentials()
        if scheme.lower() == "basic":
            if not creds:
                raise RegistryError(f"{self.host} asks for credentials",
                                    hint="set IMAGEKIT_REGISTRY_USERNAME/_PASSWORD or run `docker login`")
            return {"Authorization": "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()}
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {"service": fields.get("service", ""), "scope": scope}
        if "realm" not in fields:
            raise RegistryError(f"{self.host} sent a Bearer challenge without a realm: {challenge}")
        r = self._call("GET", fields["realm"], params=query, auth=creds)
        if r.status_code != 200:
            raise RegistryError(f"token service {fields['realm']} refused {scope} ({r.status_code})",
                                hint="check the credentials and the account's access to the project")
        body = r.json()
        return {"Authorization": f"Bearer {body.get('token') or body.get('access_token')}"}

    def manifest(self, repo: str, ref: str) -> Manifest | None:
        """The manifest ``repo:ref`` (tag or digest) as stored, or None when there is none."""
        r = self._request("GET", f"{self.base}/v2/{repo}/manifests/{ref}", scope=f"repository:{repo}:pull",
                          headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if r.status_code == 404:
            return None
        _ok(r, f"GET manifest {repo}:{ref}")
        return Manifest(digest=digests.oci(r.content), media_type=r.headers.get("Content-Type", "").split(";")[0],
                        body=r.content)

    def put_manifest(self, repo: str, ref: str, manifest: Manifest) -> str:
        return self._put_manifest(repo, ref, manifest).headers.get("Docker-Content-Digest", manifest.digest)

    def _put_manifest(self, repo: str, ref: str, manifest: Manifest) -> requests.Response:
        r = self._request("PUT", f"{self.base}/v2/{repo}/manifests/{ref}", scope=f"repository:{repo}:pull,push",
                          headers={"Content-Type": manifest.media_type}, data=manifest.body)
        _ok(r, f"PUT manifest {repo}:{ref}")
        return r

    def put_referrer(self, repo: str, manifest: Manifest) -> bool:
        """Store a manifest that has a ``subject`` (its blobs already there), by digest; whether the
        registry indexes referrers itself (an OCI-Subject header). One that does not (Debian's
        docker-registry) needs the fallback index, tag ``sha256-<hex>`` of the subject (record.py)."""
        return bool(self._put_manifest(repo, manifest.digest, manifest).headers.get("OCI-Subject"))

    def fallback_index(self, repo: str, digest: str) -> list[dict]:
        """The descriptors the fallback index of ``repo@digest`` lists (none when it has none)."""
        index = self.manifest(repo, fallback_tag(digest))
        return index.data.get("manifests", []) if index else []

    def referrers(self, repo: str, digest: str, artifact_type: str) -> list[dict]:
        """Descriptors of the manifests about ``repo@digest`` of ``artifact_type``: the referrers API
        where the registry has it, else the fallback index (tag ``sha256-<hex>``)."""
        r = self._request("GET", f"{self.base}/v2/{repo}/referrers/{digest}", scope=f"repository:{repo}:pull",
                          params={"artifactType": artifact_type})
        if r.status_code == 200 and r.headers.get("Content-Type", "").startswith(OCI_INDEX):
            listed = r.json().get("manifests") or []
        elif r.status_code in (404, 405):
            listed = self.fallback_index(repo, digest)
        else:
            _ok(r, f"GET referrers of {repo}@{digest[:19]}")
            listed = []
        return [d for d in listed if d.get("artifactType") == artifact_type]

    def blob(self, repo: str, digest: str) -> bytes:
        return b"".join(self.blob_chunks(repo, digest))

    def blob_chunks(self, repo: str, digest: str) -> Iterator[bytes]:
        """The blob as it streams in, CHUNK bytes at a time: constant memory whatever its size."""
        r = self._request("GET", f"{self.base}/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull", stream=True)
        _ok(r, f"GET blob {repo}@{digest[:19]}")
        with r:
            yield from r.iter_content(CHUNK)

    def upload_blob_chunks(self, repo: str, digest: str, chunks: Iterable[bytes]) -> None:
        """A chunked upload (PATCH per chunk, then PUT with the digest): the registry checks the digest."""
        scope = f"repository:{repo}:pull,push"
        r = self._request("POST", f"{self.base}/v2/{repo}/blobs/uploads/", scope=scope)
        _ok(r, f"start upload to {repo}")
        location, offset = self._absolute(r.headers["Location"]), 0
        for chunk in filter(None, chunks):  # an empty chunk has no Content-Range
            r = self._request("PATCH", location, scope=scope, data=chunk,
                              headers={"Content-Type": "application/octet-stream",
                                       "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            _ok(r, f"upload {digest[:19]} to {repo} at {offset}")
            location, offset = self._absolute(r.headers["Location"]), offset + len(chunk)
        r = self._request("PUT", location, scope=scope, params={"digest": digest})
        _ok(r, f"finish upload of {digest[:19]} to {repo}")

    def has_blob(self, repo: str, digest: str) -> bool:
        r = self._request("HEAD", f"{self.base}/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull")
        return r.status_code == 200

    def mount_blob(self, repo: str, digest: str, source: str) -> bool:
        """Cross-repository mount: no bytes move. False when the registry would not mount."""
        r = self._request("POST", f"{self.base}/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source},
                          scope=f"repository:{repo}:pull,push repository:{source}:pull")
        if r.status_code == 202 and r.headers.get("Location"):  # an upload was opened instead: cancel it
            self._request("DELETE", self._absolute(r.headers["Location"]), scope=f"repository:{repo}:pull,push")
        return r.status_code == 201

    def upload_blob(self, repo: str, digest: str, data: bytes) -> None:
        self.upload_blob_chunks(repo, digest, [data])

    def put_blob(self, repo: str, data: bytes) -> str:
        """Make ``data`` a blob of ``repo`` (uploaded unless the registry has it); return its digest."""
        digest = digests.oci(data)
        if not self.has_blob(repo, digest):
            self.upload_blob(repo, digest, data)
        return digest

    def tags(self, repo: str) -> list[str]:
        r = self._request("GET", f"{self.base}/v2/{repo}/tags/list", scope=f"repository:{repo}:pull")
        if r.status_code == 404:
            return []
        _ok(r, f"list tags of {repo}")
        return sorted(r.json().get("tags") or [])

    def config(self, repo: str, manifest: Manifest) -> dict:
        """The JSON config blob a (single-platform) manifest points at: an image's config, or an
        artifact's payload."""
        return json.loads(self.blob(repo, manifest.config_digest))

    def put_artifact(self, repo: str, tag: str, artifact_type: str, payload: bytes, *,
                     annotations: dict[str, str] | None = None) -> str:
        """Store ``payload`` as an OCI artifact tagged ``tag``; return the manifest digest."""
        self.put_blob(repo, payload)
        return self.put_manifest(repo, tag, artifact(artifact_type, payload, annotations=annotations))

    def get_artifact(self, repo: str, ref: str) -> dict | None:
        """The JSON payload of the artifact ``repo:ref``, or None when there is none."""
        found = self.manifest(repo, ref)
        return None if found is None else self.config(repo, found)

    def _absolute(self, location: str) -> str:
        return location if "://" in location else f"{self.base}{location}"


def _codes(r: requests.Response) -> tuple[str, ...]:
    """The OCI error codes of a registry's error body (``{"errors": [{"code": ...}]}``)."""
    try:
        return tuple(e.get("code", "") for e in r.json().get("errors", []))
    except (ValueError, AttributeError):
        return ()


def _ok(r: requests.Response, what: str) -> None:
    if r.status_code >= 300:
        raise RegistryError(f"{what}: registry answered {r.status_code} {r.text[:300]}", status=r.status_code,
                            codes=_codes(r))


def copy_blobs(src: Registry, src_repo: str, dst: Registry, dst_repo: str, manifest: Manifest,
               on_line: Callable[[str], None], *, mount_from: tuple[str, ...] = ()) -> dict[str, int]:
    """Make every blob (and child manifest) of ``manifest`` exist in ``dst_repo`` (go-containerregistry's
    remote.Write, without the tag): mounted across repositories of one registry (no bytes through the
    client; from ``mount_from``, repositories of ``dst``, first), streamed across registries. Writes no tag;
    counts what was mounted, copied, present."""
    counts = {"mounted": 0, "copied": 0, "present": 0}
    for child in manifest.data.get("manifests", []):  # an index: its platform manifests go first, by digest
        sub = src.manifest(src_repo, child["digest"])
        for k, n in copy_blobs(src, src_repo, dst, dst_repo, sub, on_line, mount_from=mount_from).items():
            counts[k] += n
        dst.put_manifest(dst_repo, child["digest"], sub)
    same = (src.host, src.scheme) == (dst.host, dst.scheme)
    for blob in manifest.blobs():
        if dst.has_blob(dst_repo, blob):
            counts["present"] += 1
        elif any(dst.mount_blob(dst_repo, blob, r) for r in mount_from) or \
                same and dst.mount_blob(dst_repo, blob, src_repo):
            counts["mounted"] += 1
            on_line(f"mounted {blob[:19]} into {dst_repo}")
        else:
            on_line(f"copying {blob[:19]} into {dst_repo}")
            dst.upload_blob_chunks(dst_repo, blob, src.blob_chunks(src_repo, blob))
            counts["copied"] += 1
    return counts
