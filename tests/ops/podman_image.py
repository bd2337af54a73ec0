"""Building and running the project's image with Debian's podman, where no image registry is reachable.

The base image is made from Debian's packages with debootstrap (the mirror is the one this
host's apt uses) and cached as a tarball under ``.cache/image/`` (gitignored), so only the
first run pays for it. podman runs with runc and capped ulimits (``containers.conf`` below):
crun refuses hybrid cgroup hosts, and podman's default ``nofile`` is refused in some sandboxes.
Run as a script (``python -m tests.ops.podman_image``) it prepares the base image alone.

podman's image store is the host's, shared by every checkout and every xdist worker: the base
image and each build happen under a lock (one per checkout), and the tags of built images name
the checkout, so two checkouts tested at once on one host never run each other's image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from hashlib import sha256
from pathlib import Path

from tests.fixtures.parallel import built_once

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "image"
BASE_IMAGE = "localhost/remote-executor-test-base:bookworm"
BASE_TARBALL = CACHE / "debian-py-bookworm.tar"
TOOLS = ("podman", "buildah", "debootstrap", "runc")
PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CHECKOUT = sha256(str(ROOT).encode()).hexdigest()[:8]
"""Names this checkout in the tags it builds."""
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""


class Unavailable(Exception):
    """podman cannot build or run images here; the message says why (a test skips with it)."""


def podman_env() -> dict[str, str]:
    """The environment for every podman call: our ``containers.conf``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return dict(os.environ, CONTAINERS_CONF=str(conf))


def ensure_tools() -> None:
    """Install podman, buildah, debootstrap and runc with apt where root and they are missing."""
    missing = [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(f"{', '.join(missing)} not installed, and apt-get as root is not available")
    done = subprocess.run(["apt-get", "install", "-y", "-q", *TOOLS], capture_output=True, text=True,
                          timeout=900, check=False)
    if done.returncode != 0:
        raise Unavailable(f"apt-get install {' '.join(TOOLS)} failed: {done.stderr.strip()[-500:]}")


def podman(*args: str, timeout: float = 300, check: bool = True,
           **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` with our configuration; raise with its output when ``check`` and it fails."""
    done = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... exit {done.returncode}:\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def check_podman_runs() -> None:
    """``podman info`` must work with runc; else podman cannot run here."""
    done = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=120)
    if done.returncode != 0:
        raise Unavailable(f"podman cannot run here: {done.stderr.strip()[-500:]}")


def apt_mirror() -> str:
    """The Debian mirror this host's apt uses (deb822 ``URIs:`` or a one-line ``deb`` entry)."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            uri = match.group(1)
            if uri.rstrip("/").endswith("/debian"):
                return uri
    raise Unavailable("no Debian mirror found in this host's apt sources (debootstrap needs one)")


def ensure_base_image() -> str:
    """A Debian bookworm image with python3 and venv: from podman's store, the cached tarball, or built."""
    with built_once("podman-base-image"):
        if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE
        if not BASE_TARBALL.exists():
            _debootstrap_tarball()
        with BASE_TARBALL.open("rb") as tarball:
            podman("import", "-", BASE_IMAGE, stdin=tarball, timeout=300)
        return BASE_IMAGE


def _debootstrap_tarball() -> None:
    """debootstrap a minimal bookworm with python3 into a temporary root, then tar it into the cache."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rx-rootfs-", dir=CACHE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
                               str(rootfs), apt_mirror()], capture_output=True, text=True, timeout=1200,
                              check=False)
        if done.returncode != 0:
            raise Unavailable(f"debootstrap failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")
        partial = BASE_TARBALL.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
        os.replace(partial, BASE_TARBALL)


def build_image(target: str, tag: str, plugins: str = "file") -> str:
    """``podman build --target TARGET`` of the repository's Dockerfile on the cached base image.

    Returns the tag built: ``tag`` with this checkout's id appended (``...:test-1a2b3c4d``). A
    worker that waited for another's build of the same target rebuilds from podman's layer cache.
    """
    base = ensure_base_image()
    tag = f"{tag}-{CHECKOUT}"
    with built_once(f"podman-build-{target}"):
        return _build(target, tag, base, plugins)


def _build(target: str, tag: str, base: str, plugins: str) -> str:
    args = ["build", "--format", "docker", "--target", target, "-t", tag,
            "--build-arg", f"PYTHON_IMAGE={base}", "--build-arg", f"BUNDLED_VENV_PLUGINS={plugins}"]
    if HOST_CA.exists():  # an intercepting proxy's CA lives in the host's bundle
        args += ["-v", f"{HOST_CA}:{HOST_CA}:ro"]
    podman(*args, str(ROOT), timeout=1800)
    return tag


if __name__ == "__main__":
    ensure_tools()
    check_podman_runs()
    print(ensure_base_image())
    sys.exit(0)
