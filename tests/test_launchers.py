"""Launchers do what they say: the process count asked for (or one clear line), the caller's working
directory, the GPUs CUDA_VISIBLE_DEVICES names, a SLURM script that runs from anywhere, and two
"machines" on one host (CPU, gloo) that train, die after a checkpoint, resume and end like a 2-process run."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DIST_ENV, ROOT, SPEAKER_PATTERN, accelerate_launch, free_port, run_entry_point, run_torchrun

VENV_BIN = str(Path(sys.executable).parent)
TINY = ["model.hidden_size=16", "model.embedding_size=16", "data.max_seconds=1.0", "train.report_to=[]", "train.batch_size=4"]


def bash(script: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        ["bash", str(ROOT / "launch" / script), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout
    )


def test_cpu_multiprocess_keeps_the_callers_directory_for_relative_paths(demo_corpus, tmp_path):
    (tmp_path / "corpus").symlink_to(demo_corpus)
    result = bash(
        "cpu_multiprocess.sh",
        str(ROOT / "recipes" / "bilstm_mfcc_ce.py"),
        "data.root=corpus",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        "train.output_dir=runs/x",
        "train.epochs=1",
        *TINY,
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "2 process(es) on cpu" in result.stdout and (tmp_path / "runs" / "x" / "metrics.json").exists()


def test_accelerate_launch_cpu_with_several_processes_fails_instead_of_training_one(demo_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_entry_point(
        [
            *accelerate_launch("--cpu"),
            "recipes/bilstm_mfcc_ce.py",
            f"data.root={demo_corpus}",
            f"train.output_dir={out}",
            "train.epochs=1",
            *TINY,
        ],
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0 and not (out / "metrics.json").exists()
    ours = [line for line in result.stderr.splitlines() if line.startswith("ser-dist: error: ")]
    assert ours == [
        "ser-dist: error: accelerate launch was asked for 2 processes but started this one alone (1 process): accelerate runs --cpu "
        "(and a machine without GPUs) as a single process; for several CPU processes use NPROC=2 bash launch/cpu_multiprocess.sh RECIPE ... "
        "(ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 RECIPE ...)"
    ], result.stderr[-2000:]


@pytest.fixture
def fake_tools(tmp_path) -> Path:
    """nvidia-smi with 8 GPUs, scontrol with 2 nodes, srun running its command as node 0, and an accelerate
    that writes its working directory and arguments to $RECORD instead of launching anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = {
        "nvidia-smi": 'for i in 0 1 2 3 4 5 6 7; do echo "GPU $i: NVIDIA H200 (UUID: GPU-$i)"; done',
        "scontrol": 'printf "node-a\\nnode-b\\n"',
        "srun": 'shift; SLURM_PROCID=0 exec "$@"',
        "accelerate": 'pwd > "$RECORD"; printf "%s\\n" "$@" >> "$RECORD"',
    }
    for name, body in tools.items():
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def launched(fake_tools: Path, script: str, cwd: Path, env: dict, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    record = cwd / "accelerate-args.txt"
    base = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "NUM_GPUS", "MASTER_PORT")}
    full = {**base, "PATH": f"{fake_tools}:{VENV_BIN}:{base['PATH']}", "RECORD": str(record), **env}
    result = subprocess.run(["bash", str(ROOT / "launch" / script), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=60)
    return result, record.read_text().splitlines() if record.exists() else []


def value_of(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("visible, expected", [(None, "8"), ("0,2", "2"), ("3", "1"), ("GPU-1,GPU-5,GPU-7", "3")])
def test_multi_gpu_counts_the_visible_gpus_and_keeps_the_callers_directory(fake_tools, tmp_path, visible, expected):
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    result, argv = launched(fake_tools, "multi_gpu.sh", tmp_path, env, "recipes/x.py", "data.root=rel/data")
    assert result.returncode == 0, result.stderr
    assert argv[0] == str(tmp_path) and value_of(argv, "--num_processes") == expected
    assert value_of(argv, "--config_file") == str(ROOT / "accelerate_config.yaml")
    assert argv[-2:] == ["recipes/x.py", "data.root=rel/data"]


def test_multi_gpu_with_no_visible_gpu_is_one_line(fake_tools, tmp_path):
    result, argv = launched(fake_tools, "multi_gpu.sh", tmp_path, {"CUDA_VISIBLE_DEVICES": ""}, "recipes/x.py")
    assert result.returncode == 2 and argv == []
    assert result.stderr.strip().splitlines() == [
        "ser-dist: error: no GPU visible (CUDA_VISIBLE_DEVICES=''); on CPUs use bash launch/cpu_multiprocess.sh"
    ]


@pytest.mark.parametrize("port, expected", [(None, str(20000 + 123456 % 20000)), ("31337", "31337")])
def test_slurm_script_runs_from_any_folder_with_the_port_from_the_environment(fake_tools, tmp_path, port, expected):
    env = {"SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_NNODES": "2", "SLURM_JOB_ID": "123456", **({"MASTER_PORT": port} if port else {})}
    result, argv = launched(fake_tools, "slurm_multinode.sbatch", tmp_path, env, "recipes/x.py", "train.output_dir=runs/x")
    assert result.returncode == 0, result.stderr
    assert argv[0] == str(tmp_path)  # the submit folder: relative paths stay the user's
    assert value_of(argv, "--config_file") == str(ROOT / "accelerate_config.yaml")
    assert (value_of(argv, "--num_machines"), value_of(argv, "--num_processes"), value_of(argv, "--machine_rank")) == ("2", "16", "0")
    assert (value_of(argv, "--main_process_ip"), value_of(argv, "--main_process_port")) == ("node-a", expected)
    assert argv[-2:] == ["recipes/x.py", "train.output_dir=runs/x"]
    header = (ROOT / "launch" / "slurm_multinode.sbatch").read_text()
    assert "#SBATCH --time=" in header and "shares" in header


def test_a_folder_some_process_cannot_see_is_one_line(tmp_path, monkeypatch):
    """Two nodes without a shared file system: rank 1 does not see rank 0's probe file."""
    import accelerate.utils

    from ser_dist import run_folder
    from ser_dist.errors import ConfigError

    class Rank:
        num_processes, process_index, is_main_process = 2, 1, False

        def wait_for_everyone(self):
            pass

    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", lambda objects: ["0123abcd"])
    with pytest.raises(ConfigError, match=r"is not one folder for every process: rank 1 on .* does not see what rank 0 wrote there"):
        run_folder.check_shared(Rank(), tmp_path)
    (tmp_path / ".ser-dist-shared-0123abcd").write_text("node-a")  # as a shared file system shows it
    run_folder.check_shared(Rank(), tmp_path)


# ---- two machines on one host ------------------------------------------------------------------------------


def two_machines(corpus: Path, out: Path, *extra: str, inject: tuple = ()) -> list[subprocess.CompletedProcess]:
    port = free_port()
    script = ["tests/dist/inject_fault.py", *inject, "--", "recipes/bilstm_mfcc_ce.py"] if inject else ["recipes/bilstm_mfcc_ce.py"]
    env = {**os.environ, **DIST_ENV, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--multi_gpu",
                "--num_machines",
                "2",
                "--machine_rank",
                str(rank),
                "--main_process_ip",
                "127.0.0.1",
                "--main_process_port",
                str(port),
                "--num_processes",
                "2",
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
                *script,
                *resume_args(corpus, out),
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, o, e) for p, (o, e) in zip(procs, outputs)]


def resume_args(corpus: Path, out: Path) -> list[str]:
    return [
        f"data.root={corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"train.output_dir={out}",
        "train.epochs=2",
        "train.save_every_steps=2",
        "train.early_stopping_patience=null",
        *TINY,
    ]


def test_two_machines_on_one_host_resume_after_a_kill_and_end_like_a_two_process_run(demo_corpus, tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "two_machines"
    result = run_torchrun("recipes/bilstm_mfcc_ce.py", *resume_args(demo_corpus, reference))
    assert result.returncode == 0, result.stderr[-3000:]

    killed = two_machines(demo_corpus, out, inject=("kill_after_checkpoint", "3", "all"))
    assert all(r.returncode != 0 for r in killed) and "killed after checkpoint" in killed[0].stdout, killed[0].stderr[-2000:]
    assert not (out / "metrics.json").exists()
    resumed = two_machines(demo_corpus, out, "train.resume=auto")
    assert all(r.returncode == 0 for r in resumed), resumed[0].stderr[-2000:] + resumed[1].stderr[-2000:]
    assert "2 process(es)" in resumed[0].stdout and "resumed from" in resumed[0].stdout
    for name in ("metrics.json", "training_history.csv", "model/model.safetensors"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
