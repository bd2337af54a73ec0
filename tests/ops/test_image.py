"""The container image, built for real with podman and run against the local control plane.

Built from the repository's Dockerfile on a Debian base image made with debootstrap (cached
under ``.cache/image/``; see ``podman_image.py``). The ``locked`` target runs exactly as the
Helm chart's rendered Deployment says (``chart_pod.py``: user, capabilities, read-only root,
its env, its emptyDirs, its args), in both of the chart's variants:

- the default: the executor starts as root with five capabilities and runs every recipe as the
  image's ``recipe`` user. One container serves several checks: it is ready, the chart's NOTES
  work, a real recipe succeeds, a hostile recipe (``tests/security/hostile_probe.py``) runs as
  the recipe's uid and can read nothing of the executor's, and a SIGTERM drains it to exit 0;
- ``recipeUser.enabled: false``: the image's own UID 1000, PodSecurity "restricted".

The ``runtime`` target runs ``run --once`` with the flags the ops guide shows. Marked ``image``:
``-m "not image"`` deselects it; it skips, saying why, where podman cannot run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ops import podman_image
from tests.ops.chart_pod import (
    env_file,
    free_port,
    image_config,
    image_env,
    logs,
    named_volume,
    running_pod,
    stop,
    wait_ready,
)
from tests.ops.test_helm_chart import container, render, values
from tests.ops.test_once import DEMO_METADATA, request_run, wait_terminal

pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.timeout(3600)]  # the first build takes minutes
RUNTIME_TAG = "localhost/remote-executor:test"
LOCKED_TAG = "localhost/remote-executor:test-locked"
METADATA_IN_IMAGE = "/data/sample-metadata.json"
IMAGE_USER = {"enabled": False}
"""The chart's variant that keeps the image's own user (UID 1000, PodSecurity "restricted")."""
PROBE_PLUGIN = "hostile"
PROBE_VENV = f"/opt/datahub/venvs/{PROBE_PLUGIN}-bundled"
STATE_DIR = "/var/lib/remote-executor"
EXECUTOR_CAPABILITIES = 0b11100011
"""CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_KILL, CAP_SETGID, CAP_SETUID (bits 0, 1, 5, 6, 7)."""


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


def run_python(tag: str, code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in a throwaway container of ``tag``."""
    return podman_image.podman("run", "--rm", *flags, "--entrypoint", "python", tag, "-c", code,
                               check=False, timeout=300)


def file_to_rest_recipe(gms_url: str) -> dict[str, Any]:
    """The sample metadata (mounted into the container) into the control plane, token a secret."""
    return {"source": {"type": "file", "config": {"path": METADATA_IN_IMAGE}},
            "sink": {"type": "datahub-rest", "config": {"server": gms_url, "token": "${IMAGE_SINK_TOKEN}"}}}


def create_secret(cp: Any, name: str, value: str) -> None:
    from tests.fixtures.controlplane import graphql

    graphql(cp, "mutation($i: CreateSecretInput!) { createSecret(input: $i) }",
            {"i": {"name": name, "value": value}})


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
    with named_volume() as volume:  # as the ops guide runs it: --mount type=volume,...
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


@dataclass
class Pod:
    """A running container of the chart's rendered pod and the control plane it serves."""

    name: str
    port: int
    cp: Any
    vals: dict[str, Any]
    objects: dict[str, Any]

    @property
    def grace_s(self) -> int:
        return int(self.objects["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def chart_values(cp: Any, tag: str, port: int, **overrides: Any) -> dict[str, Any]:
    """The chart's values for ``tag`` on ``cp``, the token inline (the chart renders its Secret)."""
    repository, version = tag.rsplit(":", 1)
    datahub = {"gmsUrl": cp.gms_url, "token": cp.token, "tokenSecret": {"name": "", "key": "token"}}
    return values(datahub=datahub, image={"repository": repository, "tag": version},
                  observability={"port": port}, **overrides)


def probe_venv(directory: Path) -> Path:
    """``hostile-bundled`` for the image: ``bin/datahub`` is ``hostile_probe.py`` run by the image's
    Python, readable by every user; it is mounted where the image keeps its bundled venvs."""
    venv = directory / f"{PROBE_PLUGIN}-bundled"
    (venv / "bin").mkdir(parents=True)
    script = venv / "bin" / "datahub"
    probe = podman_image.ROOT / "tests" / "security" / "hostile_probe.py"
    script.write_text("#!/usr/bin/python3\n" + probe.read_text())
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    for path in (directory, venv, venv / "bin", script):
        path.chmod(0o755)
    return venv


def exec_python(name: str, code: str, *flags: str) -> str:
    """``python -c CODE`` in the running container (as its user, or ``--user`` in ``flags``)."""
    done = podman_image.podman("exec", *flags, name, "python", "-c", code, timeout=120)
    return done.stdout


def executor_status(name: str) -> dict[str, str]:
    """``/proc/1/status`` of the container (PID 1 is the executor) as ``field -> value``."""
    cmdline = exec_python(name, "print(open('/proc/1/cmdline').read().replace(chr(0), ' '))")
    assert "remote-executor" in cmdline, cmdline
    text = exec_python(name, "print(open('/proc/1/status').read())")
    fields = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: value.strip() for key, value in fields}


def run_file_to_rest(cp: Any) -> dict[str, Any]:
    """The sample metadata into the control plane by the real CLI; its terminal result."""
    create_secret(cp, "IMAGE_SINK_TOKEN", cp.token)
    urn = request_run(cp, file_to_rest_recipe(cp.gms_url))
    return wait_terminal(cp, urn, timeout_s=300)


@pytest.fixture(scope="module")
def default_pod(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """One container of the chart's default values (root, five capabilities, recipes as the
    image's ``recipe`` user) on a control plane of its own, shared by the checks below."""
    from executor.local.controlplane.server import ControlPlane

    base = tmp_path_factory.mktemp("default-pod")
    cp = ControlPlane(pools=("default",), state_dir=str(base / "cp"))
    cp.start()
    try:
        port = free_port()
        vals = chart_values(cp, images["locked"], port)
        objects = render(vals)
        mounts = ("-v", f"{DEMO_METADATA}:{METADATA_IN_IMAGE}:ro",
                  "-v", f"{probe_venv(base / 'venvs')}:{PROBE_VENV}:ro")
        with running_pod(objects, cp.token, images["locked"], base, mounts) as name:
            wait_ready(port, name)
            yield Pod(name, port, cp, vals, objects)
    finally:
        cp.stop()


def test_the_charts_default_is_root_with_five_capabilities_and_its_notes_work(default_pod: Pod) -> None:
    """podman grants exactly the rendered capabilities; the executor is ready with them."""
    status = executor_status(default_pod.name)
    assert status["Uid"].split()[0] == "0", status
    assert int(status["CapEff"], 16) == EXECUTOR_CAPABILITIES, status
    assert int(status["CapBnd"], 16) == EXECUTOR_CAPABILITIES and status["NoNewPrivs"] == "1", status
    assert wait_ready(default_pod.port, default_pod.name)["status"] == "ready"
    run_chart_notes(default_pod.vals, default_pod.port)


def test_the_charts_default_runs_a_real_recipe(default_pod: Pod) -> None:
    result = run_file_to_rest(default_pod.cp)
    assert result["status"] == "SUCCESS", f"{result.get('report', '')[-2000:]}\n{logs(default_pod.name)}"
    assert len(default_pod.cp.list_aspects(entity_type="dataset")) == 12


def probe_findings(pod: Pod) -> dict[str, Any]:
    """Run the hostile stand-in on ``pod`` against its own pool's state; what it found."""
    state = f"{STATE_DIR}/pools/default"
    config = {"token_sha256": hashlib.sha256(pod.cp.token.encode()).hexdigest(), "executor_pid": 1,
              "key_file": f"{state}/outbox.key", "outbox": f"{state}/outbox", "other_logs": STATE_DIR,
              "victim_urn": "urn:li:dataHubExecutionRequest:nobody-runs-this", "victim_pool": "default"}
    recipe = {"source": {"type": PROBE_PLUGIN, "config": config}, "sink": {"type": "console"}}
    report = str(wait_terminal(pod.cp, request_run(pod.cp, recipe), timeout_s=120).get("report", ""))
    line = next((x for x in report.splitlines() if "HOSTILE-FINDINGS " in x), None)
    assert line is not None, f"the probe printed no findings:\n{report[-2000:]}\n{logs(pod.name)}"
    return dict(json.loads(line.split("HOSTILE-FINDINGS ", 1)[1]))


def test_the_charts_default_runs_recipes_as_the_recipe_user_who_reads_nothing_of_the_executors(
    default_pod: Pod,
) -> None:
    """The hostile stand-in runs as the recipe's uid (not 0, not the executor's) in its work dir
    under the work volume, and cannot read the state dir, the outbox or its key, the executor's
    /proc files, nor forge a result."""
    pod = default_pod
    env = {e["name"]: e.get("value") for e in container(pod.objects)["env"]}
    user = env["REMOTE_EXECUTOR_RUN_AS"]
    recipe_uid = int(exec_python(pod.name, f"import pwd; print(pwd.getpwnam({user!r}).pw_uid)"))
    assert recipe_uid not in (0, int(executor_status(pod.name)["Uid"].split()[0]))
    listing = f"import os\ntry:\n    os.listdir({STATE_DIR!r})\nexcept OSError as e:\n    print(e.strerror)"
    assert exec_python(pod.name, listing, "--user", str(recipe_uid)).strip() == "Permission denied"
    found = probe_findings(pod)
    assert found["uid"] == recipe_uid and found["pid_is_executor"], found
    assert found["cwd"].startswith(f"{env['REMOTE_EXECUTOR_WORK_DIR']}/default/"), found
    for attack in ("proc_environ", "proc_mem", "proc_fd", "key_file", "outbox_list", "other_pool_logs",
                   "forged_record"):
        assert not found[attack]["ok"], (attack, found)
    assert not any(isinstance(v, dict) and v.get("token") for v in found.values()), found


def test_the_charts_default_drains_on_sigterm_and_exits_0(default_pod: Pod) -> None:
    state, output = stop(default_pod.name, default_pod.grace_s)
    assert state == "0", output[-3000:]
    assert default_pod.cp.token not in output


def test_the_charts_uid_1000_variant_runs_the_locked_image(
    images: dict[str, str], control_plane: Any, tmp_path: Path
) -> None:
    """The pod's user, read-only root, no capability, env and mounts are enough to lease the
    queue, be ready, run a real recipe and drain on SIGTERM."""
    port = free_port()
    objects = render(chart_values(control_plane, images["locked"], port, recipeUser=IMAGE_USER))
    mount = ("-v", f"{DEMO_METADATA}:{METADATA_IN_IMAGE}:ro")
    with running_pod(objects, control_plane.token, images["locked"], tmp_path, mount) as name:
        assert wait_ready(port, name)["status"] == "ready"
        status = executor_status(name)
        assert status["Uid"].split()[0] == "1000" and int(status["CapEff"], 16) == 0, status
        result = run_file_to_rest(control_plane)
        assert result["status"] == "SUCCESS", f"{result.get('report', '')[-2000:]}\n{logs(name)}"
        grace = int(objects["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        state, output = stop(name, grace)
    assert state == "0", output[-3000:]
    assert control_plane.token not in output

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
    default_env = {e["name"]: e.get("value") for e in container(render(values()))["env"]}
    user = default_env["REMOTE_EXECUTOR_RUN_AS"]
    recipe = run_python(images["locked"], f"import pwd; print(pwd.getpwnam({user!r}).pw_uid)")
    assert recipe.stdout.strip() not in ("", "0", uid), f"the chart's recipe user {user!r}: {recipe.stderr}"


def rendered_notes(vals: dict[str, Any]) -> str:
    """The chart's NOTES.txt as ``helm install`` prints it."""
    import helm_python as helm

    with helm.Chart.load(podman_image.ROOT / "deploy" / "helm" / "remote-executor") as chart:
        manifests = chart.render(vals, name="rx", namespace="datahub-executor", is_install=True)
    (notes,) = [text for path, text in manifests.items() if path.endswith("NOTES.txt")]
    return str(notes)


def run_chart_notes(vals: dict[str, Any], port: int) -> None:
    """Every command the chart's NOTES print: the curl lines run against the pod's port (the
    container shares the host's network, as ``kubectl port-forward`` would give it); the kubectl
    lines, with no cluster here, name objects the chart really renders."""
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
