"""hlrp_core.cluster without SLURM: presets, job scripts, dry runs, snapshots, state reconciliation."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hlrp_core.cluster import available_presets, load_preset, reconcile, submit
from hlrp_core.cluster.snapshot import make_snapshot
from hlrp_core.cluster.submit import render_script
from hlrp_core.config import ConfigError

PROBE = "tests/fixtures/cluster/probe.ipynb"


def test_every_preset_loads_and_slurm_presets_name_a_partition():
    names = available_presets()
    assert {"local", "local_dev", "lrz_x100", "mcml_x100", "slurm_ci_fast", "slurm_ci_slow"} <= set(names)
    for name in names:
        c = load_preset(name)
        assert c.name == name
        assert c.backend == "local" or c.partition, name


def test_preset_errors_name_the_knob_and_the_fix():
    with pytest.raises(ConfigError, match="Did you mean 'lrz_x100'"):
        load_preset("lrz_x10")
    with pytest.raises(ConfigError, match="unknown key 'partiton'.*'partition'"):
        load_preset("lrz_x100", {"partiton": "x"})
    with pytest.raises(ConfigError, match=r"cluster.time='15h' is not a SLURM time"):
        load_preset("lrz_x100", {"time": "15h"})
    with pytest.raises(ConfigError, match="cluster.mem"):
        load_preset("lrz_x100", {"mem": "lots"})


def test_script_has_resources_claim_and_container():
    c = load_preset("lrz_x100", {"container_image": "/img/hlrp.sqsh", "container_mounts": ["/dss:/dss"],
                                 "qos": "mcml", "setup": ["module load x"]})
    text = render_script(c, "/sub", "/sub/code", "hlrp_x", submitted_commit="abc")
    for line in ["#SBATCH --partition=lrz-hgx-h100-94x4", "#SBATCH --gres=gpu:1", "#SBATCH --qos=mcml",
                 "#SBATCH --time=15:00:00", "#SBATCH --mem=120G", "#SBATCH --output=/sub/slurm-%j.out",
                 "module load x", "export HLRP_SUBMITTED_COMMIT=abc", "cd /sub/code"]:
        assert line in text, line
    assert "srun --ntasks=1 --container-image=/img/hlrp.sqsh --container-mounts=/dss:/dss" in text
    assert text.index('mkdir "$CLAIM"') < text.index("srun "), "the claim runs on the host, before the container"


def test_dry_run_of_dual_queue_needs_no_slurm_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HLRP_OUTPUT_ROOT", str(tmp_path))
    bin_dir = tmp_path.parent / "bin-git-only"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "git").exists():
        (bin_dir / "git").symlink_to(shutil.which("git"))
    monkeypatch.setenv("PATH", str(bin_dir))  # git but no sbatch: a dry run must not need SLURM
    sub = submit(PROBE, [], ["experiment.name=dry"], "lrz_x100", ["mcml_x100"], dry_run=True, time_limit="00:15:00",
                 auto_resume=1)
    text = sub.describe()
    assert "#SBATCH --partition=lrz-hgx-h100-94x4" in text and "#SBATCH --partition=mcml-hgx-h100-94x4" in text
    assert text.count("#SBATCH --time=00:15:00") == 2
    assert "--dependency=afterany:" in text, "auto_resume=1 queues one resume follow-up"
    assert sub.run_dirs[0].startswith(str(tmp_path / "scratch")) and sub.run_dirs[0].endswith("_dry")
    assert list(tmp_path.iterdir()) == [], "a dry run creates nothing"


def test_submit_rejects_bad_overrides_before_queueing(tmp_path, monkeypatch):
    monkeypatch.setenv("HLRP_OUTPUT_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match="data.loader.batch_sise"):
        submit(PROBE, [], ["data.loader.batch_sise=4"], "lrz_x100", dry_run=True)
    with pytest.raises(ConfigError, match="dual-queue"):
        submit(PROBE, [], [], "local", ["lrz_x100"], dry_run=True)


def test_local_backend_dry_run_is_hlrp_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HLRP_OUTPUT_ROOT", str(tmp_path))
    sub = submit(PROBE, [], ["experiment.name=here"], "local_dev", dry_run=True)
    assert "hlrp_core.cli run tests/fixtures/cluster/probe.ipynb --set experiment.name=here --run-dir" in \
        sub.commands[0]


@pytest.mark.parametrize("slurm_state,status,age,shown", [
    ("PENDING", "MISSING", None, "PENDING"),
    ("RUNNING", "RUNNING", 5, "RUNNING"),
    ("TIMEOUT", "RUNNING", 5, "TIMEOUT"),
    ("OUT_OF_MEMORY", "FAILED", 5, "OUT_OF_MEMORY"),
    ("CANCELLED", "RUNNING", 5, "CANCELLED"),
    ("COMPLETED", "DONE", 5, "DONE"),
    ("FAILED", "FAILED", 5, "FAILED"),
    ("COMPLETED", "RUNNING", 5, "FAILED"),  # the job ended but the run never finished
    (None, "RUNNING", 7200, "LOST"),          # SLURM forgot the job; stale heartbeat
    (None, "DONE", 7200, "DONE"),
    ("TIMEOUT", "DONE", 5, "DONE"),            # finished just before the limit
])
def test_reconcile(slurm_state, status, age, shown):
    assert reconcile(slurm_state, status, age) == shown


def test_snapshot_holds_commit_diff_and_untracked(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=repo,  # noqa
                                    check=True, capture_output=True, text=True).stdout.strip()
    (repo / "a.py").write_text("A = 1\n")
    git("init", "-q")
    git("add", "a.py")
    git("commit", "-q", "-m", "one")
    (repo / "a.py").write_text("A = 2\n")  # uncommitted change
    (repo / "new.py").write_text("N = 1\n")  # untracked
    info = make_snapshot(tmp_path / "sub", repo=repo)
    code = Path(info["code"])
    assert info["commit"] == git("rev-parse", "HEAD") and info["dirty"]
    assert (code / "a.py").read_text() == "A = 2\n" and (code / "new.py").read_text() == "N = 1\n"
    assert subprocess.run(["git", "-C", str(code), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip() == info["commit"]
    assert "A = 2" in (tmp_path / "sub" / "uncommitted.diff").read_text()
    (repo / "a.py").write_text("A = 3\n")
    assert (code / "a.py").read_text() == "A = 2\n", "later edits to the checkout do not reach the snapshot"
