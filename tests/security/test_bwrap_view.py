"""Under ``isolation: bwrap`` a recipe sees an allowlist, not the host (issue 10, point 6).

The recipe lists ``/`` and tries the paths an attacker would: a sibling work dir (another
task's, with its secrets file), the executor's state next to it, a token file under /etc
(blanked, since /etc itself is in the view), /root, /home and /var. The end-to-end form,
against a running executor with a concurrent task, is in ``test_privilege.py``.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.sandbox import SandboxLimits, SandboxRun, SandboxSpec, build_env
from executor.sandbox.isolation import SYSTEM_TREES, program_roots
from tests.security.bubblewrap import bubblewrap

pytestmark = pytest.mark.usefixtures("bubblewrap")  # installed here if the machine allows, else a skip
__all__ = ["bubblewrap"]

PROBE = textwrap.dedent("""
    import json, os, sys
    def look(path):
        try:
            if os.path.isdir(path):
                return sorted(os.listdir(path))
            with open(path) as handle:
                return handle.read()
        except OSError as exc:
            return exc.strerror
    print("VIEW " + json.dumps({name: look(path) for name, path in json.loads(sys.argv[1]).items()}),
          flush=True)
""")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A state dir with another task's work dir, and a token file under /etc."""
    state = tmp_path / "state"
    sibling = state / "pools" / "default" / "work" / "other-task-abc"
    sibling.mkdir(parents=True)
    (sibling / "secrets.json").write_text("another task's secret")
    (state / "pools" / "default" / "outbox.key").write_text("executor only")
    token = Path("/etc") / f"resec-token-{uuid.uuid4().hex[:8]}"
    token.write_text("token-under-etc")
    try:
        yield {"state": state, "sibling": sibling, "token": token}
    finally:
        token.unlink()


def test_the_recipe_sees_only_its_work_dir_and_the_system(host: dict[str, Path]) -> None:
    work_root = host["state"] / "pools" / "default" / "work"
    targets = {"root": "/", "sibling": str(host["sibling"]), "state": str(host["state"]),
               "key": str(host["state"] / "pools" / "default" / "outbox.key"),
               "token": str(host["token"]), "home": "/home", "root_home": "/root", "var": "/var",
               "work_root": str(work_root)}
    spec = SandboxSpec(argv=[sys.executable, "-c", PROBE, json.dumps(targets)], work_root=work_root,
                       isolation="bwrap", hide_paths=[host["state"], host["token"]], use_cgroup=False,
                       env=build_env(os.environ, {}, {}, work_root),
                       limits=SandboxLimits(kill_grace_s=2.0, sample_interval_s=0.05))
    run = SandboxRun(spec)
    run.start()
    result = run.wait(60)
    assert result is not None and result.exit_code == 0, result
    line = next(x for x in result.log_text.splitlines() if x.startswith("VIEW "))
    view = json.loads(line[len("VIEW "):])
    allowed = {Path(t).parts[1] for t in SYSTEM_TREES} | {"dev", "proc", "tmp"}
    python_roots = program_roots(sys.executable)  # the venv and its base Python, read-only
    allowed |= {p.parts[1] for p in python_roots} | {Path(str(work_root)).parts[1]}
    assert set(view["root"]) <= allowed, view["root"]
    for name in ("sibling", "key"):
        assert view[name] == "No such file or directory", (name, view)
    for name, top in (("home", "home"), ("var", "var"), ("root_home", "root")):
        # At most the way to the Python (a project cloned under /var/tmp or /root runs from there).
        on_the_way = sorted({p.parts[2] for p in python_roots if p.parts[1] == top and len(p.parts) > 2})
        assert view[name] == (on_the_way or "No such file or directory"), (name, view)
    assert view["token"] in ("", "Permission denied")  # /etc is visible; the file in it is /dev/null
    own = run.work_dir
    assert own is not None and view["work_root"] == [own.name]  # only its own work dir
