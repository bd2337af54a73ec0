"""What the executor does for a ``run_as`` recipe works with exactly the chart's five capabilities.

The Helm chart's default starts the executor as root with CAP_SETUID, CAP_SETGID, CAP_KILL,
CAP_CHOWN and CAP_DAC_OVERRIDE only (``test_image.py`` runs that pod for real). Root with every
capability hides a step that needs one more (CAP_FOWNER, to chmod what it no longer owns), so
this runs the work-dir steps in a child whose capability bounding set is those five, through
``setpriv``: the first container run found exactly such a step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.test_helm_chart import container, render, values

ROOT = Path(__file__).resolve().parents[2]
RECIPE_UID = 64_123
"""A uid no account has: ``resolve_run_as`` takes a number as it is."""

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv (util-linux) to drop capabilities")

STEPS = f"""
import os, sys
from pathlib import Path
from executor.sandbox.identity import grant_work_dir, prepare_work_root, resolve_run_as
from executor.sandbox.workdir import create_work_dir, remove_work_dir
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print("CapEff", status["CapEff"].strip())
run_as = resolve_run_as("{RECIPE_UID}", None)
root = prepare_work_root(Path(sys.argv[1]), "default")
work = create_work_dir(root, "task-1")
grant_work_dir(work, run_as)
for path in (root.parent, root, work, work / "tmp"):
    info = path.stat()
    print(path.name, oct(info.st_mode & 0o7777), info.st_uid)
print("removed", remove_work_dir(work))
"""


def chart_capabilities() -> list[str]:
    """The capabilities the chart's default Deployment adds, as setpriv spells them."""
    added = container(render(values()))["securityContext"]["capabilities"]["add"]
    return [name.lower() for name in added]


def test_the_work_dir_steps_need_no_capability_beyond_the_charts_five(tmp_path: Path) -> None:
    base = tmp_path / "work"
    base.mkdir(mode=0o777)
    os.chmod(base, 0o2777)  # noqa: S103 (as the kubelet makes an emptyDir with fsGroup)
    caps = ",".join(f"+{c}" for c in chart_capabilities())
    done = subprocess.run(
        ["setpriv", f"--bounding-set=-all,{caps}", "--inh-caps=-all", "--", sys.executable, "-c", STEPS,
         str(base)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "CapEff 00000000000000e3", "the child has exactly the five capabilities"
    work_root, pool_root, work_dir, work_tmp = (line.split() for line in lines[1:5])
    assert work_root[1:] == ["0o711", "0"] and pool_root[1:] == ["0o711", "0"]
    assert work_dir[1:] == ["0o700", str(RECIPE_UID)] and work_tmp[1:] == ["0o700", str(RECIPE_UID)]
    assert lines[5] == "removed True"
