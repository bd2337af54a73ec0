"""The container image, built for real with podman and run against the local control plane.

Built from the repository's Dockerfile on a Debian base image made with debootstrap (cached
under ``.cache/image/``; see ``podman_image.py``). The ``locked`` target runs exactly as the
Helm chart's rendered Deployment says (user, read-only root, dropped capabilities, its env, an
empty dir at each volume mount, its args) until a real recipe succeeds and a SIGTERM stops it;
the ``runtime`` target runs ``run --once`` with the flags the ops guide shows. Marked ``image``:
``-m "not image"`` deselects it; it skips, saying why, where podman cannot run.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ops import podman_image
from tests.ops.test_helm_chart import container, render, values
from tests.ops.test_once import DEMO_METADATA, request_run, wait_terminal

pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.timeout(3600)]  # the first build takes minutes
RUNTIME_TAG = "localhost/remote-executor:test"
LOCKED_TAG = "localhost/remote-executor:test-locked"
METADATA_IN_IMAGE = "/data/sample-metadata.json"
IMAGE_USER = {"enabled": False}
"""These tests run the chart's variant that keeps the image's own user (UID 1000, PodSecurity
"restricted"). The default variant (root with five capabilities, recipes as ``recipe``) is
rendered and checked by ``test_helm_chart.py`` but not yet run in a container here."""


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """Both targets built (the second reuses the first's layers); skip where podman cannot run."""
    try:
        podman_image.ensure_tools()
        podman_image.check_podman_runs()
        podman_image.ensure_base_image()
    except podman_image.Unavailable as exc:
        pytest.skip(str(exc))
    return {"runtime": podman_image.build_image("runtime", RUNTIME_TAG),
            "locked": podman_image.build_image("locked", LOCKED_TAG)}


def image_config(tag: str) -> dict[str, Any]:
    """``Config`` of ``podman image inspect``: User, Env, ExposedPorts, Entrypoint, Cmd."""
    done = podman_image.podman("image", "inspect", tag)
    return dict(json.loads(done.stdout)[0]["Config"])


def image_env(tag: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in image_config(tag).get("Env") or [])


def run_python(tag: str, code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in a throwaway container of ``tag``."""
    return podman_image.podman("run", "--rm", *flags, "--entrypoint", "python", tag, "-c", code,
                               check=False, timeout=300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def file_to_rest_recipe(gms_url: str) -> dict[str, Any]:
    """The sample metadata (mounted into the container) into the control plane, token a secret."""
    return {"source": {"type": "file", "config": {"path": METADATA_IN_IMAGE}},
            "sink": {"type": "datahub-rest", "config": {"server": gms_url, "token": "${IMAGE_SINK_TOKEN}"}}}


def create_secret(cp: Any, name: str, value: str) -> None:
    from tests.fixtures.controlplane import graphql

    graphql(cp, "mutation($i: CreateSecretInput!) { createSecret(input: $i) }",
            {"i": {"name": name, "value": value}})


def env_file(tmp_path: Path, env: dict[str, str]) -> Path:
    """The container's env in a 0600 file: the token never goes on a command line."""
    path = tmp_path / "container.env"
    path.touch(mode=0o600)
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path


# -- what the image is -------------------------------------------------------------------------
def test_runs_as_uid_1000_with_a_read_only_root(images: dict[str, str]) -> None:
    code = ("import os\ntry:\n    open('/opt/remote-executor/x', 'w')\nexcept OSError as e:\n"
            "    print(os.getuid(), os.getgid(), e.errno)")
    for tag in images.values():
        done = run_python(tag, code, "--read-only")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["1000", "1000", "30"], f"{tag}: uid, gid, EROFS: {done.stdout}"
        assert image_config(tag)["User"] == "1000:1000"


def test_locked_image_has_no_pip_and_cannot_make_one(images: dict[str, str]) -> None:
    tag = images["locked"]
    code = """
import glob, importlib.util, subprocess, sys
print("pip", importlib.util.find_spec("pip") is not None)
print("ensurepip", importlib.util.find_spec("ensurepip") is not None)
subprocess.run([sys.executable, "-m", "venv", "/tmp/v"], capture_output=True)
print("new venv pip", bool(glob.glob("/tmp/v/bin/pip*") + glob.glob("/tmp/v/lib/python3*/site-packages/pip")))
print("venvs pip", sorted(glob.glob("/opt/*/venvs/*/bin/pip*") + glob.glob("/opt/remote-executor/bin/pip*")))
"""
    done = run_python(tag, code, "--read-only", "--tmpfs", "/tmp")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["pip False", "ensurepip False", "new venv pip False", "venvs pip []"]
    has_pip = "import importlib.util as u; print(u.find_spec('pip') is not None)"
    runtime = run_python(images["runtime"], has_pip)
    assert runtime.stdout.strip() == "True", "the runtime target keeps pip (dynamic venvs)"
    env = image_env(tag)
    assert env["INGESTION_DEPENDENCY_RESOLUTION_ENABLED"] == "false"
    assert env["PIP_INDEX_URL"] == "http://127.0.0.1:1/simple"


def test_only_source_venvs_are_bundled(images: dict[str, str]) -> None:
    code = "import os; print(' '.join(sorted(n for n in os.listdir('/opt/datahub/venvs') if n[0] != '.')))"
    done = run_python(images["runtime"], code)
    assert done.stdout.split() == ["file-bundled"], done.stdout + done.stderr


# -- the image as the docs and the chart run it ------------------------------------------------
def test_runtime_image_runs_once_against_the_control_plane(
    images: dict[str, str], control_plane: Any, tmp_path: Path
) -> None:
    create_secret(control_plane, "IMAGE_SINK_TOKEN", control_plane.token)
    urn = request_run(control_plane, file_to_rest_recipe(control_plane.gms_url))
    env = env_file(tmp_path, {"DATAHUB_GMS_URL": control_plane.gms_url,
                              "DATAHUB_GMS_TOKEN": control_plane.token,
                              "DATAHUB_EXECUTOR_POOL_ID": "default",
                              "REMOTE_EXECUTOR_OBSERVABILITY_PORT": str(free_port())})
    with state_volume() as volume:  # as the ops guide runs it: --mount type=volume,...
        done = podman_image.podman(
            "run", "--rm", "--network=host", "--env-file", str(env), "--read-only", "--tmpfs", "/tmp",
            "--mount", f"type=volume,src={volume},dst=/var/lib/remote-executor",
            "-v", f"{DEMO_METADATA}:{METADATA_IN_IMAGE}:ro", images["runtime"], "run", "--once",
            check=False, timeout=600)
    result = wait_terminal(control_plane, urn, timeout_s=5)
    assert done.returncode == 0, f"{result.get('report', '')[-2000:]}\n{done.stderr[-3000:]}"
    assert result["status"] == "SUCCESS"
    assert control_plane.token not in done.stdout + done.stderr
    assert len(control_plane.list_aspects(entity_type="dataset")) == 12


@contextlib.contextmanager
def state_volume() -> Iterator[str]:
    """A fresh named volume; like an emptyDir it starts as the image's directory (owned by 1000)."""
    name = f"rx-test-{secrets.token_hex(4)}"
    podman_image.podman("volume", "create", name)
    try:
        yield name
    finally:
        podman_image.podman("volume", "rm", "-f", name, check=False)


def pod_run_args(objects: dict[str, Any], env_path: Path, tag: str, volume: str) -> list[str]:
    """``podman run`` flags that do what the rendered Deployment asks of the container runtime."""
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    spec = container(objects)
    security = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
    args = ["--user", f"{security['runAsUser']}:{security['runAsGroup']}", "--env-file", str(env_path)]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    args += [f"--cap-drop={c}" for c in security.get("capabilities", {}).get("drop", [])]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for mount in spec["volumeMounts"]:
        assert mount["name"] in empty, f"unexpected volume {mount['name']}"
        if mount["mountPath"] == "/tmp":
            args += ["--tmpfs", "/tmp"]
        else:  # one emptyDir besides /tmp: the state dir
            args += ["--mount", f"type=volume,src={volume},dst={mount['mountPath']}"]
    return [*args, tag, *spec.get("args", [])]


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


@pytest.fixture
def chart_container(images: dict[str, str], control_plane: Any, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The locked image started as the chart's Deployment says (host network for loopback)."""
    port = free_port()
    repository, tag = images["locked"].rsplit(":", 1)
    vals = values(datahub={"gmsUrl": control_plane.gms_url, "token": control_plane.token,
                           "tokenSecret": {"name": "", "key": "token"}},
                  image={"repository": repository, "tag": tag}, observability={"port": port},
                  recipeUser=IMAGE_USER)
    objects = render(vals)
    env = pod_env(objects, control_plane.token)
    assert env["REMOTE_EXECUTOR_STATE_DIR"] == image_env(images["locked"])["REMOTE_EXECUTOR_STATE_DIR"]
    name = f"rx-chart-{secrets.token_hex(4)}"
    with state_volume() as volume:
        podman_image.podman("run", "-d", "--name", name, "--network=host",
                            "-v", f"{DEMO_METADATA}:{METADATA_IN_IMAGE}:ro",
                            *pod_run_args(objects, env_file(tmp_path, env), images["locked"], volume))
        try:
            yield name, port
        finally:
            podman_image.podman("rm", "-f", "-t", "0", name, check=False)


def test_the_charts_deployment_runs_the_locked_image(
    images: dict[str, str], chart_container: tuple[str, int], control_plane: Any
) -> None:
    name, port = chart_container
    assert wait_ready(port, name)["status"] == "ready"
    create_secret(control_plane, "IMAGE_SINK_TOKEN", control_plane.token)
    urn = request_run(control_plane, file_to_rest_recipe(control_plane.gms_url))
    result = wait_terminal(control_plane, urn, timeout_s=300)
    assert result["status"] == "SUCCESS", result.get("report", "")[-2000:]
    podman_image.podman("stop", "-t", "150", name, timeout=200)
    state = podman_image.podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    logs = podman_image.podman("logs", name, check=False).stdout
    assert state == "0", logs[-3000:]
    assert control_plane.token not in logs


def test_the_locked_image_run_as_the_chart_says_is_ready_and_its_notes_work(
    chart_container: tuple[str, int],
) -> None:
    """The pod's user, read-only root, dropped capabilities, env and mounts are enough for the
    executor to lease its queue and be ready; then every command the chart's NOTES print."""
    name, port = chart_container
    readyz = wait_ready(port, name)
    assert readyz["status"] == "ready", readyz
    run_chart_notes(port)
    podman_image.podman("stop", "-t", "150", name, timeout=200)
    state = podman_image.podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    assert state == "0", podman_image.podman("logs", name, check=False).stdout[-3000:]


def wait_ready(port: int, name: str, timeout_s: float = 180.0) -> dict[str, Any]:
    """``/readyz`` of the container once it answers 200; fails with the container's log otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                return dict(json.loads(answer.read()))
        except OSError:
            time.sleep(0.5)
    logs = podman_image.podman("logs", name, check=False)
    raise AssertionError(f"not ready in {timeout_s:g}s:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")


def test_the_charts_deployment_matches_the_image(images: dict[str, str]) -> None:
    """User, port, state and tmp paths, and env of the rendered Deployment against the image."""
    config = image_config(images["locked"])
    env = image_env(images["locked"])
    objects = render(values(recipeUser=IMAGE_USER))
    spec = container(objects)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    uid, gid = config["User"].split(":")
    assert (str(pod["securityContext"]["runAsUser"]), str(pod["securityContext"]["runAsGroup"])) == (uid, gid)
    (port,) = spec["ports"]
    assert f"{port['containerPort']}/tcp" in config["ExposedPorts"]
    assert str(port["containerPort"]) == env["REMOTE_EXECUTOR_OBSERVABILITY_PORT"]
    mounts = {m["mountPath"] for m in spec["volumeMounts"]}
    assert {env["REMOTE_EXECUTOR_STATE_DIR"], "/tmp"} <= mounts
    assert config["Entrypoint"] == ["remote-executor"] and spec["args"] == config["Cmd"] == ["run"]
    chart_env = {e["name"]: e.get("value") for e in spec["env"]}
    for name in ("REMOTE_EXECUTOR_STATE_DIR", "REMOTE_EXECUTOR_OBSERVABILITY_HOST"):
        assert chart_env[name] == env[name], name
    venvs = "DATAHUB_BUNDLED_VENV_PATH"
    assert chart_env.get(venvs, env[venvs]) == env[venvs] == "/opt/datahub/venvs"
    locked = "INGESTION_DEPENDENCY_RESOLUTION_ENABLED"
    assert chart_env[locked] == env[locked], "the chart's default pairs with the locked image"


def rendered_notes(vals: dict[str, Any]) -> str:
    """The chart's NOTES.txt as ``helm install`` prints it."""
    import helm_python as helm

    with helm.Chart.load(podman_image.ROOT / "deploy" / "helm" / "remote-executor") as chart:
        manifests = chart.render(vals, name="rx", namespace="datahub-executor", is_install=True)
    (notes,) = [text for path, text in manifests.items() if path.endswith("NOTES.txt")]
    return str(notes)


def run_chart_notes(port: int) -> None:
    """Every command the chart's NOTES print: the curl lines run against the pod's port (the
    container shares the host's network, as ``kubectl port-forward`` would give it); the kubectl
    lines, with no cluster here, name objects the chart really renders."""
    vals = values(recipeUser=IMAGE_USER, observability={"port": port})
    notes = rendered_notes(vals)
    objects = render(vals)
    deployment = objects["Deployment"]
    commands = [line.strip() for line in notes.splitlines() if line.strip().startswith(("kubectl", "curl"))]
    assert len(commands) == 4, notes
    for command in commands:
        words = command.split("#")[0].split()
        if words[0] == "curl":
            done = subprocess.run([*words, "--fail", "--max-time", "10"], capture_output=True, text=True,
                                  timeout=30, check=False)
            assert done.returncode == 0 and done.stdout, f"{command}: {done.stderr}"
        elif "port-forward" in words:
            assert words[words.index("port-forward") + 1] == f"deploy/{deployment['metadata']['name']}"
            assert words[-1] == str(port)
        else:
            key, value = words[words.index("-l") + 1].split("=")
            assert deployment["spec"]["template"]["metadata"]["labels"][key] == value
        assert words[1:3] == ["-n", "datahub-executor"] or words[0] == "curl"
