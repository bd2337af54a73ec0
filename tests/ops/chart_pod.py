"""The Helm chart's rendered Deployment, run by podman as a kubelet would run it.

``pod_run_args`` turns the rendered pod into ``podman run`` flags: its user (``--user``), its
capabilities (``--cap-drop``/``--cap-add``), ``no-new-privileges``, a read-only root, its env
(from a 0600 file, the token resolved from the rendered Secret), ``/tmp`` as a tmpfs and every
other ``emptyDir`` as the kubelet makes one: an empty host directory, bind-mounted, owned by
root and the pod's ``fsGroup``, mode 2777 (an emptyDir is 0777; ``fsGroup`` adds the group and
the setgid bit). The container shares the host's network (loopback only: the control plane).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.ops import podman_image
from tests.ops.test_helm_chart import container

EMPTY_DIR_MODE = 0o2777


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_file(directory: Path, env: dict[str, str]) -> Path:
    """The container's env in a 0600 file: the token never goes on a command line."""
    path = directory / "container.env"
    path.touch(mode=0o600)
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path


def image_config(tag: str) -> dict[str, Any]:
    """``Config`` of ``podman image inspect``: User, Env, ExposedPorts, Entrypoint, Cmd."""
    done = podman_image.podman("image", "inspect", tag)
    return dict(json.loads(done.stdout)[0]["Config"])


def image_env(tag: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in image_config(tag).get("Env") or [])


@contextlib.contextmanager
def named_volume() -> Iterator[str]:
    """A fresh podman volume: on first use it takes the image directory's owner and mode."""
    name = f"rx-test-{secrets.token_hex(4)}"
    podman_image.podman("volume", "create", name)
    try:
        yield name
    finally:
        podman_image.podman("volume", "rm", "-f", name, check=False)


def empty_dir(directory: Path, group: int | None) -> Path:
    """A host directory as the kubelet makes an emptyDir: root's, mode 0777, or with the pod's
    ``fsGroup`` that group's and setgid (2777). It is bind-mounted, as the kubelet does."""
    directory.mkdir()
    os.chown(directory, 0, 0 if group is None else group)
    os.chmod(directory, EMPTY_DIR_MODE if group is not None else 0o777)
    return directory


def security_flags(objects: dict[str, Any]) -> list[str]:
    """User, capabilities, no_new_privs and read-only root, from the pod's and container's contexts."""
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    security = {**pod.get("securityContext", {}), **container(objects).get("securityContext", {})}
    args = ["--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    capabilities = security.get("capabilities", {})
    args += [f"--cap-drop={c}" for c in capabilities.get("drop", [])]
    args += [f"--cap-add={c}" for c in capabilities.get("add", [])]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    return args


def pod_run_args(objects: dict[str, Any], env_path: Path, tag: str, volumes: dict[str, Path]) -> list[str]:
    """``podman run`` flags that do what the rendered Deployment asks of the container runtime;
    ``volumes`` maps each emptyDir's name but ``tmp`` to a host directory (see ``empty_dir``)."""
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    spec = container(objects)
    args = [*security_flags(objects), "--env-file", str(env_path)]
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for mount in spec["volumeMounts"]:
        assert mount["name"] in empty, f"unexpected volume {mount['name']}"
        if mount["mountPath"] == "/tmp":
            args += ["--tmpfs", "/tmp"]
        else:
            args += ["--mount", f"type=bind,src={volumes[mount['name']]},dst={mount['mountPath']}"]
    assert set(volumes) == empty - {"tmp"}, f"volumes {sorted(volumes)} for emptyDirs {sorted(empty)}"
    return [*args, tag, *spec.get("args", [])]


def empty_dirs(objects: dict[str, Any]) -> list[str]:
    """The names of the pod's emptyDir volumes other than ``tmp``."""
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    return [v["name"] for v in pod["volumes"] if "emptyDir" in v and v["name"] != "tmp"]


def fs_group(objects: dict[str, Any]) -> int | None:
    group = objects["Deployment"]["spec"]["template"]["spec"].get("securityContext", {}).get("fsGroup")
    return None if group is None else int(group)


def pod_env(objects: dict[str, Any], token: str) -> dict[str, str]:
    """The container's env as the kubelet builds it (the token from the rendered Secret)."""
    env = {}
    for item in container(objects)["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            secret = objects["Secret"]
            assert secret["metadata"]["name"] == ref["name"]
            env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        else:
            env[item["name"]] = item["value"]
    assert env["DATAHUB_GMS_TOKEN"] == token
    return env


@contextlib.contextmanager
def running_pod(objects: dict[str, Any], token: str, tag: str, directory: Path,
                extra: tuple[str, ...] = ()) -> Iterator[str]:
    """The rendered pod's container, started detached (``extra``: more ``podman run`` flags such
    as bind mounts); its name. Removed with its volumes at the end."""
    env = env_file(directory, pod_env(objects, token))
    name = f"rx-chart-{secrets.token_hex(4)}"
    volumes = {v: empty_dir(directory / f"empty-dir-{v}", fs_group(objects)) for v in empty_dirs(objects)}
    podman_image.podman("run", "-d", "--name", name, "--network=host", *extra,
                        *pod_run_args(objects, env, tag, volumes))
    try:
        yield name
    finally:
        podman_image.podman("rm", "-f", "-t", "0", name, check=False)


def wait_ready(port: int, name: str, timeout_s: float = 180.0) -> dict[str, Any]:
    """``/readyz`` of the container once it answers 200; fails with the container's log otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                return dict(json.loads(answer.read()))
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"not ready in {timeout_s:g}s:\n{logs(name)}")


def logs(name: str) -> str:
    done = podman_image.podman("logs", name, check=False)
    return f"{done.stdout[-3000:]}{done.stderr[-3000:]}"


def stop(name: str, grace_s: int) -> tuple[str, str]:
    """``podman stop`` with the pod's grace period, as the kubelet's SIGTERM: exit code and output."""
    podman_image.podman("stop", "-t", str(grace_s), name, timeout=grace_s + 60)
    state = podman_image.podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    done = podman_image.podman("logs", name, check=False)
    return state, done.stdout + done.stderr
