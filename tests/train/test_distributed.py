import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

from train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def run_process_group(command: list[str], env: dict, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """Run the launcher in a session of its own so that a hang kills its worker ranks too, not only torchrun (a
    timed-out run used to leave both ranks training for an hour)."""
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_two_process_torchrun_on_cpu_trains_one_epoch(tiny_dataset, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "train", "ts1", "--dataset", str(tiny_dataset), "--runs-dir", str(tmp_path), "--max-epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = run_process_group(command, env)
    assert result.returncode == 0, result.stderr[-3000:]
    fold = tmp_path / "tiny" / "ts1" / "fold0"
    state = load_checkpoint(fold / "last.pt")
    assert state["epoch"] == 1
    with open(fold / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 1  # rank 0 alone writes
    assert '"world_size": 2' in (fold / "config.json").read_text()
    assert result.stdout.count("epoch 1:") == 1

