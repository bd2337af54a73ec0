"""Every command the operator docs show is run by a test, or has a named stand-in.

``COVERAGE`` maps each shell command of README.md, docs/operations.md, systemd/README.md,
docs/reliability.md and docs/testing.md to what runs it. A command added to a doc without an
entry, or an entry whose command left the docs, fails
``test_every_documented_command_is_covered``. The VM install (wheel, venv, config, token,
``check`` as the service user with the token handed over as systemd's LoadCredential would) runs
as written, as root, in a Debian container (podman; the base image of
``tests/ops/podman_image.py``); only what needs a second host, an editor or systemd as PID 1 is
replaced, each by the stand-in ``STAND_INS`` names.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.docs.doccmds import ROOT, Block, blocks

DOCS = ("README.md", "docs/operations.md", "systemd/README.md", "docs/reliability.md", "docs/testing.md")
WALKTHROUGH = "tests/docs/test_readme_walkthrough.py (the whole block, as written)"
VM = "tests/docs/test_ops_commands.py::test_vm_install_as_written (in a Debian container)"
IMAGE = "tests/ops/test_image.py (podman builds and runs the image; docker is not installed here)"
SYSTEMD = "tests/ops/test_systemd_unit.py: systemd-analyze verify/security (no systemd PID 1 here)"
COVERAGE: dict[str, str] = {
    r"python3 scripts/demo\.py": "tests/service/test_demo.py (the demo command it runs)",
    r"python3 scripts/test\.py( tests/faults)?": "CI runs it (.ci/run)",
    r"python3 scripts/test\.py (tests/sandbox|tests/unit/test_config\.py|-n 2 tests/faults/test_kill\.py"
    r'|-m "not image")|\.venv/bin/python -m pytest tests/unit -q -x': "tests/docs/test_testing_commands.py",
    r"\. \.venv/bin/activate|mkdir -p \.cache/walkthrough.*|export .*|[A-Z]+=\$!|until \[ -s .*": WALKTHROUGH,
    r"remote-executor (venv build --plugin file|controlplane .*|run > .*|submit examples/.*)": WALKTHROUGH,
    r"echo -n .* \| remote-executor secret set \w+|kill \$\w+ && wait \$\w+": WALKTHROUGH,
    r"useradd --system .*": VM,
    r"python3 -m pip wheel --no-deps --wheel-dir dist \.": VM,
    r"scp dist/\S+ root@vm:/tmp/": VM + ", stand-in: cp",
    r"python3 -m venv /opt/remote-executor": VM,
    r"/opt/remote-executor/bin/pip install /tmp/\S+\.whl": VM,
    r"(CREDENTIALS_DIRECTORY=/etc/remote-executor )?/opt/remote-executor/bin/remote-executor "
    r"(--version|check -c .*)": VM,
    r"/opt/remote-executor/bin/remote-executor venv build --plugin snowflake .*":
        "tests/sandbox/test_venv_build.py and the walk-through's venv build (snowflake's extras are large)",
    r"install (-d )?-m 0\d+ .*": VM,
    r"\$EDITOR /etc/remote-executor/gms-token": VM + ", stand-in: printf of a test token",
    r"cat > /etc/remote-executor/env <<'EOF'.*": VM,
    r"chmod 0640 /etc/remote-executor/env && chgrp .*": VM,
    r"systemctl .*|journalctl .*": SYSTEMD,
    r"curl -s 127\.0\.0\.1:9087/readyz": "tests/ops/test_health.py (/readyz of a running executor)",
    r"docker (build|run|tag|push|save) .*|gunzip -c .* \| docker load": IMAGE,
    r"kubectl .*|helm install .*": "tests/ops/test_helm_chart.py renders what they install; "
                                   "tests/ops/test_image.py runs the rendered Deployment and the NOTES",
}
STAND_INS = {
    "$EDITOR /etc/remote-executor/gms-token": "printf %s \"$TEST_TOKEN\" > /etc/remote-executor/gms-token",
}
SKIPPED_ON_VM = ("venv build", "systemctl", "journalctl", "curl ")
COPY_TO_VM = re.compile(r"^scp (\S+) root@vm:/tmp/$")
"""The build machine's last step: the wheel goes to the VM (here: a directory mounted at its /tmp)."""


def doc_commands() -> list[tuple[str, str]]:
    return [(doc, command) for doc in DOCS for block in blocks(ROOT / doc) for command in block.commands()]


def test_every_documented_command_is_covered() -> None:
    uncovered = [f"{doc}: {command}" for doc, command in doc_commands()
                 if not any(re.fullmatch(pattern, command, re.DOTALL) for pattern in COVERAGE)]
    assert uncovered == [], "documented commands no test runs: add them to COVERAGE with their test"
    unused = [p for p in COVERAGE if not any(re.fullmatch(p, c, re.DOTALL) for _, c in doc_commands())]
    assert unused == [], "COVERAGE entries whose commands left the docs"


def split_scripts(section: list[Block]) -> tuple[str, str, str]:
    """(build machine script, the file it copies to the VM, VM script), stand-ins applied.

    Only the block that builds and copies the wheel belongs to the build machine; every other
    command (``useradd`` first) runs on the VM, never on the host running the tests.
    """
    build: list[str] = ["set -eu"]
    vm: list[str] = ["set -eu", "cd /src", "mkdir -p /etc/systemd/system"]  # a VM with systemd has it
    copied = ""
    for block in section:
        commands = block.commands()
        on_build_machine = any(COPY_TO_VM.match(c) for c in commands)
        for command in commands:
            copy = COPY_TO_VM.match(command)
            if copy:
                copied = copy.group(1)
            elif on_build_machine:
                build.append(command)
            elif not any(skip in command for skip in SKIPPED_ON_VM):
                vm.append(STAND_INS.get(command, command))
    assert copied, "the VM section no longer copies a wheel to the VM"
    assert "useradd" not in "".join(build), "system changes must run on the VM (the container)"
    return "\n".join(build) + "\n", copied, "\n".join(vm) + "\n"


def checkout_copy(target: Path) -> Path:
    """The repository's tracked files, as a fresh clone has them."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes((ROOT / name).read_bytes())
    return target


@pytest.mark.image
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_vm_install_as_written(tmp_path: Path) -> None:
    from tests.ops import podman_image

    try:
        podman_image.ensure_tools()
        podman_image.check_podman_runs()
        base = podman_image.ensure_base_image()
    except podman_image.Unavailable as exc:
        pytest.skip(str(exc))
    section = [b for b in blocks(ROOT / "docs/operations.md") if b.heading == "On a VM (systemd)"]
    assert len(section) >= 6, "the VM section lost steps"
    build, wheel, script = split_scripts(section)
    assert "python3 -m pip wheel" in build and "/opt/remote-executor/bin/pip install" in script
    source = checkout_copy(tmp_path / "src")
    built = subprocess.run(["bash", "-c", build], cwd=source, capture_output=True, text=True, timeout=600,
                           check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    vm_tmp = tmp_path / "vm-tmp"
    vm_tmp.mkdir()
    (vm_tmp / Path(wheel).name).write_bytes((source / wheel).read_bytes())  # the documented scp
    token = f"vm-{secrets.token_urlsafe(12)}"
    # What the unit's LoadCredential= and User= do, then the documented check of step 3.
    script += ("mkdir -p /run/credentials/remote-executor.service\n"
               "cp /etc/remote-executor/gms-token /run/credentials/remote-executor.service/gms-token\n"
               "chown -R remote-executor /run/credentials/remote-executor.service\n"
               "runuser -u remote-executor -- env "
               "CREDENTIALS_DIRECTORY=/run/credentials/remote-executor.service "
               "/opt/remote-executor/bin/remote-executor check -c /etc/remote-executor/config.yaml\n"
               "test \"$(stat -c %a /etc/remote-executor/gms-token)\" = 600\n"
               "! runuser -u remote-executor -- cat /etc/remote-executor/gms-token 2>/dev/null\n")
    (tmp_path / "vm.sh").write_text(script)
    env = tmp_path / "vm.env"
    env.touch(mode=0o600)
    env.write_text(f"TEST_TOKEN={token}\n")
    ca = f"{podman_image.HOST_CA}:{podman_image.HOST_CA}:ro"
    done = podman_image.podman("run", "--rm", "--network=host", "--env-file", str(env), "-v", ca,
                               "-v", f"{source}:/src:ro", "-v", f"{vm_tmp}:/tmp",
                               "-v", f"{tmp_path / 'vm.sh'}:/vm.sh:ro",
                               base, "bash", "/vm.sh", check=False, timeout=1200)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert re.search(r"^remote-executor 0\.1\.0", done.stdout, re.MULTILINE), done.stdout[-2000:]
    assert token not in output
