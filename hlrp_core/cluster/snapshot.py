"""Code snapshots: a queued job runs the code that was submitted, not whatever the checkout holds when it starts.

``make_snapshot(dest)`` records ``HEAD`` of the checkout, then builds ``dest`` as ``git clone --shared`` of that commit
(objects are borrowed from the checkout, so it costs a checkout of the tracked files only), applies the uncommitted diff
(``git diff --binary HEAD``, also saved as ``uncommitted.diff`` beside the snapshot) and copies untracked, not-ignored
files (listed in ``untracked.txt``). Because the snapshot is a git repository of its own, ``git rev-parse HEAD`` inside
the job (``hlrp_core.runs.capture_env``) reports the commit that really runs, while ``HLRP_SUBMITTED_COMMIT`` carries
the submitted one; both land in ``env.json``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..io import atomic_write_json
from ..paths import REPO_ROOT


def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, input=input, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {repo} failed: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout


def source_state(repo: Path = REPO_ROOT) -> dict:
    """Commit, dirty flag and untracked files of a checkout (no side effects)."""
    commit = _git(repo, "rev-parse", "HEAD").decode().strip()
    diff = _git(repo, "diff", "--binary", "HEAD")
    untracked = [l for l in _git(repo, "ls-files", "--others", "--exclude-standard", "-z").decode().split("\0") if l]
    return {"commit": commit, "dirty": bool(diff) or bool(untracked), "diff": diff, "untracked": untracked}


def make_snapshot(dest: Path, repo: Path = REPO_ROOT) -> dict:
    """Build the snapshot at ``dest/code``; returns ``{commit, dirty, code, diff_file, untracked}`` (also written to
    ``dest/snapshot.json``)."""
    dest = Path(dest)
    state = source_state(repo)
    code = dest / "code"
    _git(repo, "clone", "--quiet", "--shared", "--no-checkout", str(repo), str(code))
    _git(code, "checkout", "--quiet", "--detach", state["commit"])
    diff_file = None
    if state["diff"]:
        diff_file = dest / "uncommitted.diff"
        diff_file.write_bytes(state["diff"])
        _git(code, "apply", "--whitespace=nowarn", "--binary", str(diff_file))
    for rel in state["untracked"]:
        src, dst = repo / rel, code / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    if state["untracked"]:
        (dest / "untracked.txt").write_text("\n".join(state["untracked"]) + "\n")
    info = {"commit": state["commit"], "dirty": state["dirty"], "code": str(code),
            "diff_file": str(diff_file) if diff_file else None, "untracked": state["untracked"], "source": str(repo)}
    atomic_write_json(dest / "snapshot.json", info)
    return info
