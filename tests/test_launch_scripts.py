"""The cluster launch scripts in launch/: they parse, and each builds the command it should
(run against stub `ray`, `srun` and `scontrol` that record their arguments). The real Ray
path of a script, launch/check_cluster.sh, runs in the distributed lane."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["ray_cluster.sh", "slurm.sbatch", "submit.sh", "check_cluster.sh", "quickstart.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    out = subprocess.run(["bash", "-n", str(ROOT / "launch" / script)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


def test_the_rayjob_names_the_installed_ray_and_the_runtime_env_uploads_the_checkout():
    job = yaml.safe_load((ROOT / "launch" / "kuberay-rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["entrypoint"].startswith("archer train")
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__
    env = yaml.safe_load((ROOT / "launch" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "." and "runs/" in env["excludes"]


def stubs(tmp_path, *names, nodes="node1"):
    """Executables on PATH that append their argv (one JSON list per call) to calls.jsonl;
    `srun` then runs the command after its options, `scontrol` prints `nodes`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    record = (f'{sys.executable} -c "import json,sys; open({str(log)!r}, \'a\').write('
              f'json.dumps([sys.argv[1]] + sys.argv[2:]) + \'\\\\n\')" "$(basename "$0")" "$@"')
    bodies = {
        "srun": record + '\nwhile [ $# -gt 0 ]; do case "$1" in -w) shift 2;; -*) shift;; '
                         '*) break;; esac; done\nexec "$@"',
        "scontrol": record + f'\nprintf "%s\\n" {nodes}',
        "hostname": 'echo 10.0.0.1',
    }
    for name in names:
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + bodies.get(name, record) + "\n")
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RAY": str(bin_dir / "ray"),
           "ARCHER": "archer"}
    return env, log


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_slurm_sbatch_starts_one_ray_cluster_over_the_allocation(tmp_path):
    env, log = stubs(tmp_path, "ray", "srun", "scontrol", "hostname", nodes="gpu1 gpu2")
    env.update(SLURM_JOB_NODELIST="gpu[1-2]", SLURM_JOB_ID="42", SLURM_CPUS_PER_TASK="32",
               SLURM_GPUS_ON_NODE="8", SLURM_SUBMIT_DIR=str(ROOT))
    out = subprocess.run(["bash", str(ROOT / "launch" / "slurm.sbatch"),
                          "cluster.learner_ranks=16", "device=cuda"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ray_call = next(c for c in calls(log) if c[0] == "ray")
    assert ray_call == ["ray", "symmetric-run", "--address", "10.0.0.1:6379", "--min-nodes", "2",
                        "--temp-dir", "/tmp/ray_42", "--num-cpus", "32", "--num-gpus", "8",
                        "--", "env", "RAY_ADDRESS=10.0.0.1:6379", "archer", "train",
                        "cluster.learner_ranks=16", "device=cuda"]
    srun = [c for c in calls(log) if c[0] == "srun"]
    assert srun[-1][1:4] == ["--nodes=2", "--ntasks=2", "--ntasks-per-node=1"]


def test_ray_cluster_and_submit_build_their_ray_commands(tmp_path):
    env, log = stubs(tmp_path, "ray")
    script = str(ROOT / "launch" / "ray_cluster.sh")
    env.update(RAY_NODE_IP="10.0.0.7", ARCHER_RAY_PORT="7000")
    head = subprocess.run(["bash", script, "head", "--num-gpus", "8"], env=env,
                          capture_output=True, text=True)
    assert head.returncode == 0 and "export RAY_ADDRESS=10.0.0.7:7000" in head.stdout
    subprocess.run(["bash", script, "worker", "10.0.0.7:7000"], env=env, check=True)
    bad = subprocess.run(["bash", script, "worker"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
    env["RAY_DASHBOARD"] = "http://10.0.0.7:8265"
    subprocess.run(["bash", str(ROOT / "launch" / "submit.sh"), "cluster.learner_ranks=8"],
                   env=env, check=True)
    assert calls(log) == [
        ["ray", "start", "--head", "--port", "7000", "--include-dashboard=false",
         "--node-ip-address", "10.0.0.7", "--num-gpus", "8"],
        ["ray", "start", "--address", "10.0.0.7:7000", "--node-ip-address", "10.0.0.7"],
        ["ray", "job", "submit", "--address", "http://10.0.0.7:8265", "--runtime-env",
         "launch/runtime_env.yaml", "--no-wait", "--", "python", "-m", "archer.cli", "train",
         "cluster.learner_ranks=8"],
    ]


@pytest.mark.distributed
def test_check_cluster_finds_two_ranks_equal_to_one_on_this_machine(tmp_path):
    """The cluster check on a one-node cluster (a local Ray): 2 ranks match 1 rank."""
    env = {**os.environ, "OUT": str(tmp_path / "check"), "PY": sys.executable}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(["bash", str(ROOT / "launch" / "check_cluster.sh"), "2",
                          "cluster.cpus_per_learner=0.5"], env=env, capture_output=True,
                         text=True, timeout=1500, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "check" / "report.json").read_text())
    assert report["learner_ranks"] == 2 and report["resources"]["CPU"] >= 1
    assert report["max_gap"] < 1e-4, report["gaps"]
