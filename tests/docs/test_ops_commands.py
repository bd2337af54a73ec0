"""Every command the operator docs show is run by a test, or has a named stand-in.

``COVERAGE`` maps each shell command of README.md, docs/operations.md and systemd/README.md to
what runs it. A command added to a doc without an entry, or an entry whose command left the
docs, fails ``test_every_documented_command_is_covered``. The VM install (wheel, venv, config,
token, ``check`` as the service user with the token handed over as systemd's LoadCredential
would) runs as written, as root, in a Debian container (podman; the base image of
``tests/ops/podman_image.py``); only what needs a second host, an editor or systemd as PID 1
is replaced, each by the stand-in ``STAND_INS`` names.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.docs.doccmds import ROOT, Block, blocks

DOCS = ("README.md", "docs/operations.md", "systemd/README.md", "docs/reliability.md")
WALKTHROUGH = "tests/docs/test_readme_walkthrough.py (the whole block, as written)"
VM = "tests/docs/test_ops_commands.py::test_vm_install_as_written (in a Debian container)"
IMAGE = "tests/ops/test_image.py (podman builds and runs the image; docker is not installed here)"
SYSTEMD = "tests/ops/test_systemd_unit.py: systemd-analyze verify/security (no systemd PID 1 here)"
COVERAGE: dict[str, str] = {
    r"python3 scripts/demo\.py": "tests/service/test_demo.py (the demo command it runs)",
    r"python3 scripts/test\.py( tests/faults)?": "CI runs it (.ci/run)",
    r"\. \.venv/bin/activate|mkdir -p \.cache/walkthrough.*|export .*|[A-Z]+=\$!|until \[ -s .*": WALKTHROUGH,
    r"remote-executor (venv build --plugin file|controlplane .*|run > .*|submit examples/.*)": WALKTHROUGH,
    r"echo -n .* \| remote-executor secret set \w+|kill \$\w+ && wait \$\w+": WALKTHROUGH,
    r"useradd --system .*": VM,
    r"python3 -m pip wheel --no-deps --wheel-dir dist \.": VM,
    r"scp dist/\S+ root@vm:/tmp/": VM + ", stand-in: cp",
    r"python3 -m venv /opt/remote-executor": VM,
    r"/opt/remote-executor/bin/pip install /tmp/\S+\.whl": VM,
    r"/opt/remote-executor/bin/remote-executor (--version|check -c .*)": VM,
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
    "scp dist/": "cp dist/",  # no second host: the "VM" is the container
    "$EDITOR /etc/remote-executor/gms-token": "printf %s \"$TEST_TOKEN\" > /etc/remote-executor/gms-token",
}
SKIPPED_ON_VM = ("venv build", "systemctl", "journalctl", "curl ")


def doc_commands() -> list[tuple[str, str]]:
    return [(doc, command) for doc in DOCS for block in blocks(ROOT / doc) for command in block.commands()]


def test_every_documented_command_is_covered() -> None:
    uncovered = [f"{doc}: {command}" for doc, command in doc_commands()
                 if not any(re.fullmatch(pattern, command, re.DOTALL) for pattern in COVERAGE)]
    assert uncovered == [], "documented commands no test runs: add them to COVERAGE with their test"
    unused = [p for p in COVERAGE if not any(re.fullmatch(p, c, re.DOTALL) for _, c in doc_commands())]
    assert unused == [], "COVERAGE entries whose commands left the docs"


def vm_script(block_texts: list[Block]) -> str:
    """The ops guide's VM steps as one script, with the stand-ins applied and systemd left out."""
    lines = ["set -eu", "cd /src"]
    for block in block_texts:
        for command in block.commands():
            if any(skip in command for skip in SKIPPED_ON_VM):
                continue
            for documented, stand_in in STAND_INS.items():
                if command.startswith(documented):
                    command = stand_in + command[len(documented):] if documented.endswith("/") else stand_in
            lines.append(command.replace(" root@vm:/tmp/", " /tmp/"))
    return "\n".join(lines) + "\n"


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
    script = vm_script(section)
    assert "python3 -m pip wheel" in script and "/opt/remote-executor/bin/pip install" in script
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
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / "vm.sh").write_text(script)
    env = tmp_path / "vm.env"
    env.touch(mode=0o600)
    env.write_text(f"TEST_TOKEN={token}\n")
    ca = f"{podman_image.HOST_CA}:{podman_image.HOST_CA}:ro"
    done = podman_image.podman("run", "--rm", "--network=host", "--env-file", str(env), "-v", ca,
                               "-v", f"{source}:/src", "-v", f"{tmp_path / 'vm.sh'}:/vm.sh:ro",
                               base, "bash", "-x", "/vm.sh", check=False, timeout=1200)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert re.search(r"^remote-executor 0\.1\.0", done.stdout, re.MULTILINE), done.stdout[-2000:]
    assert token not in output
