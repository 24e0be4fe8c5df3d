import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.train.conftest import LABELS, write_tiny_cohort
from train.__main__ import main
from train.checkpoint import CheckpointError, load_checkpoint
from train.loop import TrainingError


def args(dataset, runs, *extra):
    return ["--dataset", str(dataset), "--runs-dir", str(runs), *extra]


def weights(path):
    return load_checkpoint(path)["model"]


SCHEDULE = ("--max-epochs", "3", "--samples-per-epoch", "96")


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset, tmp_path_factory):
    runs = tmp_path_factory.mktemp("uninterrupted")
    assert main(["ts1", *args(tiny_dataset, runs, *SCHEDULE)]) == 0
    return weights(runs / "tiny" / "ts1" / "fold0" / "last.pt")


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_stop_and_resume_reaches_the_same_final_weights_as_an_uninterrupted_run(tiny_dataset, tmp_path,
                                                                                uninterrupted):
    assert main(["ts1", *args(tiny_dataset, tmp_path, *SCHEDULE, "--stop-after-epoch", "1")]) == 0
    fold = tmp_path / "tiny" / "ts1" / "fold0"
    assert load_checkpoint(fold / "last.pt")["epoch"] == 1 and not (fold / "predictions_test.csv").exists()
    assert main(["ts1", *args(tiny_dataset, tmp_path, *SCHEDULE, "--resume")]) == 0
    assert_same_weights(uninterrupted, weights(fold / "last.pt"))
    with open(fold / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]
    with open(fold / "predictions_test.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) % 17 == 0 and {r["split"] for r in rows} == {"test"}


def test_sigkill_mid_run_then_resume_reaches_the_same_final_weights(tiny_dataset, tmp_path, uninterrupted):
    fold = tmp_path / "tiny" / "ts1" / "fold0"
    command = [sys.executable, "-m", "train", "ts1", *args(tiny_dataset, tmp_path, *SCHEDULE)]
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (fold / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(fold / "last.pt")["epoch"]  # a kill mid-save may leave a temporary file
    assert main(["ts1", *args(tiny_dataset, tmp_path, *SCHEDULE, "--resume")]) == 0
    assert_same_weights(uninterrupted, weights(fold / "last.pt"))
    assert killed_at >= 1 and not list(fold.glob(".*.tmp"))


def test_resume_without_a_checkpoint_is_an_error(tiny_dataset, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint.*last.pt"):
        main(["ts1", *args(tiny_dataset, tmp_path, "--resume")])


def test_a_new_run_over_an_old_one_is_refused_and_resume_with_other_settings_too(tiny_dataset, tmp_path):
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--max-epochs", "1")]) == 0
    with pytest.raises(TrainingError, match="--resume.*--overwrite"):
        main(["ts1", *args(tiny_dataset, tmp_path, "--max-epochs", "1")])
    with pytest.raises(TrainingError, match="lr: checkpoint 0.0005, now 0.001"):
        main(["ts1", *args(tiny_dataset, tmp_path, "--max-epochs", "2", "--resume", "--lr", "1e-3")])
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--max-epochs", "1", "--overwrite")]) == 0
    # a run started with --overwrite resumes with or without it: it says how a run starts, not what it computes
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--max-epochs", "2", "--resume")]) == 0


def test_ts2_starts_from_the_ts1_classifier_of_the_same_fold_and_ts3_keeps_it_frozen(tiny_dataset, tmp_path):
    with pytest.raises(CheckpointError, match="python -m train ts1 --fold 1"):
        main(["ts2", *args(tiny_dataset, tmp_path, "--fold", "1")])
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--fold", "1", "--max-epochs", "1")]) == 0
    ts1 = weights(tmp_path / "tiny" / "ts1" / "fold1" / "best.pt")
    assert main(["ts3", *args(tiny_dataset, tmp_path, "--fold", "1", "--max-epochs", "1")]) == 0
    ts3 = weights(tmp_path / "tiny" / "ts3" / "fold1" / "last.pt")
    for key, value in ts1.items():
        torch.testing.assert_close(ts3[f"classifier.{key}"], value, rtol=0, atol=0)
    assert main(["ts2", *args(tiny_dataset, tmp_path, "--fold", "1", "--max-epochs", "1")]) == 0
    ts2 = weights(tmp_path / "tiny" / "ts2" / "fold1" / "last.pt")
    assert not torch.equal(ts2["classifier.classifier.weight"], ts1["classifier.weight"])  # TS2 trains it
    with open(tmp_path / "tiny" / "ts2" / "fold1" / "predictions_val.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(r["n_prob_0"] for r in rows) and {r["stage"] for r in rows} == {"ts2"}
    # TS2 may start from TS3 (classifier and fitted head; with both rates 0 nothing moves); TS3 only from TS1
    ts3_best = str(tmp_path / "tiny" / "ts3" / "fold1" / "best.pt")
    warm = ("--fold", "1", "--max-epochs", "1", "--init-from", ts3_best, "--run-name", "ts2-from-ts3")
    assert main(["ts2", *args(tiny_dataset, tmp_path, *warm, "--lr", "0", "--head-lr", "0")]) == 0
    ts2_warm = weights(tmp_path / "tiny" / "ts2-from-ts3" / "fold1" / "last.pt")
    started = weights(ts3_best)
    for key in ("head.0.weight", "head.2.bias", "classifier.classifier.weight"):
        torch.testing.assert_close(ts2_warm[key], started[key], rtol=0, atol=0, msg=key)
    with pytest.raises(TrainingError, match="is not a TS1 checkpoint of fold 1"):
        main(["ts3", *args(tiny_dataset, tmp_path, "--fold", "1", "--init-from", ts3_best, "--run-name", "t")])


def test_ts2_refuses_a_ts1_checkpoint_of_another_architecture(tiny_dataset, tmp_path):
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--fold", "2", "--max-epochs", "1")]) == 0
    with pytest.raises(TrainingError, match="station_encoding: 'index' vs 'embedding'"):
        main(["ts2", *args(tiny_dataset, tmp_path, "--fold", "2", "--station-encoding", "embedding")])


def test_resume_of_an_early_stopped_run_trains_no_further(tiny_dataset, tmp_path):
    schedule = ("--max-epochs", "4", "--early-stop-patience", "1", "--lr", "0")  # lr 0: no improvement after 1
    assert main(["ts1", *args(tiny_dataset, tmp_path, *schedule)]) == 0
    fold = tmp_path / "tiny" / "ts1" / "fold0"
    stopped = load_checkpoint(fold / "last.pt")
    assert stopped["epoch"] == 2 and stopped["epochs_since_best"] == 1
    assert main(["ts1", *args(tiny_dataset, tmp_path, *schedule, "--resume")]) == 0
    assert load_checkpoint(fold / "last.pt")["epoch"] == 2
    assert (fold / "predictions_test.csv").is_file()


def test_command_line_error_is_one_line_and_exit_status_1(tiny_dataset, tmp_path):
    result = subprocess.run([sys.executable, "-m", "train", "ts1", *args(tiny_dataset, tmp_path, "--resume")],
                            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: --resume: no checkpoint") and "Traceback" not in result.stderr


def test_the_demo_model_with_mask_channel_and_batch_norm_trains_and_ts3_leaves_its_statistics_alone(
        tiny_dataset, tmp_path):
    demo_model = ("--fold", "2", "--max-epochs", "1", "--station-mask-channel", "--norm", "batch")
    assert main(["ts1", *args(tiny_dataset, tmp_path, *demo_model)]) == 0
    ts1 = weights(tmp_path / "tiny" / "ts1" / "fold2" / "best.pt")
    assert ts1["features.0.0.weight"].shape[1] == 3 and "features.0.1.running_mean" in ts1
    with pytest.raises(TrainingError, match="norm: 'batch' vs 'instance'"):
        main(["ts3", *args(tiny_dataset, tmp_path, "--fold", "2", "--station-mask-channel")])
    assert main(["ts3", *args(tiny_dataset, tmp_path, *demo_model)]) == 0
    ts3 = weights(tmp_path / "tiny" / "ts3" / "fold2" / "last.pt")
    for key, value in ts1.items():  # running means and variances included: frozen means eval mode
        torch.testing.assert_close(ts3[f"classifier.{key}"], value, rtol=0, atol=0)


def test_no_epoch_before_min_steps_counts_as_best_and_an_unreachable_min_steps_is_refused(tiny_dataset, tmp_path):
    schedule = ("--fold", "1", "--samples-per-epoch", "16", "--batch-size", "8")  # 2 optimizer steps per epoch
    assert main(["ts1", *args(tiny_dataset, tmp_path, *schedule, "--max-epochs", "3", "--min-steps", "4")]) == 0
    fold = tmp_path / "tiny" / "ts1" / "fold1"
    with open(fold / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["best_metric"]) == -float("inf")  # epoch 1 (2 steps): not a candidate
    assert float(rows[1]["best_metric"]) == float(rows[1]["val_metric"])  # epoch 2 (4 steps): the first one
    assert load_checkpoint(fold / "best.pt")["epoch"] >= 2
    with pytest.raises(TrainingError, match="min_steps=7 is more than max_epochs=3 epochs of 2 optimizer steps"):
        main(["ts1", *args(tiny_dataset, tmp_path, *schedule, "--max-epochs", "3", "--min-steps", "7",
                           "--overwrite")])


def test_the_untrained_head_learns_at_head_lr_and_the_ts2_classifier_at_lr(tiny_dataset, tmp_path):
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--fold", "1", "--max-epochs", "1")]) == 0
    for stage, rates in (("ts3", [0.05]), ("ts2", [0.05, 1e-4])):
        assert main([stage, *args(tiny_dataset, tmp_path, "--fold", "1", "--max-epochs", "1", "--head-lr", "0.05",
                                  "--lr", "1e-4")]) == 0
        state = load_checkpoint(tmp_path / "tiny" / stage / "fold1" / "last.pt")
        assert [group["lr"] for group in state["optimizer"]["param_groups"]] == rates, stage


def test_ts3_on_a_logit_bank_trains_the_head_alone_and_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--fold", "2", "--max-epochs", "1")]) == 0
    ts1 = weights(tmp_path / "tiny" / "ts1" / "fold2" / "best.pt")
    bank = ("--fold", "2", "--max-epochs", "2", "--head-logit-draws", "2", "--head-lr", "0.01")
    assert main(["ts3", *args(tiny_dataset, tmp_path, *bank, "--run-name", "whole")]) == 0
    whole = weights(tmp_path / "tiny" / "whole" / "fold2" / "last.pt")
    for key, value in ts1.items():
        torch.testing.assert_close(whole[f"classifier.{key}"], value, rtol=0, atol=0)
    assert main(["ts3", *args(tiny_dataset, tmp_path, *bank, "--stop-after-epoch", "1")]) == 0
    assert main(["ts3", *args(tiny_dataset, tmp_path, *bank, "--resume")]) == 0
    assert_same_weights(whole, weights(tmp_path / "tiny" / "ts3" / "fold2" / "last.pt"))
    with open(tmp_path / "tiny" / "ts3" / "fold2" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # epoch 0: the start's validation, before any step
    assert all(float(r["train_ce"]) > 0 for r in rows[1:])


def test_ts3_starts_as_the_rule_on_ts1s_calls_and_keeps_the_start_unless_an_epoch_beats_it(tiny_dataset, tmp_path):
    """With nothing learnt (learning rate 0) TS3's best checkpoint is its start, and its test N-stages are those
    of the rule set on TS1's station calls of the same fold."""
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--fold", "1", "--max-epochs", "1")]) == 0
    assert main(["ts3", *args(tiny_dataset, tmp_path, "--fold", "1", "--max-epochs", "2", "--lr", "0",
                              "--head-lr", "0")]) == 0
    assert load_checkpoint(tmp_path / "tiny" / "ts3" / "fold1" / "best.pt")["epoch"] == 0

    def stages(stage):
        with open(tmp_path / "tiny" / stage / "fold1" / "predictions_test.csv") as f:
            return {r["scan_id"]: int(r["n_pred"]) for r in csv.DictReader(f) if r["tumor_side"]}

    rule, ts3 = stages("ts1"), stages("ts3")
    assert rule and ts3 == rule


def test_a_trained_epoch_replaces_the_start_only_beyond_start_margin_se_standard_errors(tiny_dataset, tmp_path):
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--fold", "1", "--max-epochs", "1")]) == 0
    assert main(["ts3", *args(tiny_dataset, tmp_path, "--fold", "1", "--max-epochs", "2", "--head-lr", "0.05",
                              "--start-margin-se", "100")]) == 0
    fold = tmp_path / "tiny" / "ts3" / "fold1"
    assert load_checkpoint(fold / "best.pt")["epoch"] == 0
    with open(fold / "metrics.csv") as f:
        start = next(csv.DictReader(f))
    se = float(start["val_n_bacc_se"])
    assert se > 0 and float(start["best_metric"]) == pytest.approx(float(start["val_metric"]) + 100 * se, rel=1e-5)


INF_PATIENTS = tuple(i for i, (n, _) in enumerate(LABELS) if n == 0)  # every N0 patient: some train in fold 0


@pytest.mark.parametrize("stage", ["ts1", "ts2"])
def test_a_non_finite_loss_stops_the_run_naming_stage_epoch_and_the_scans_with_non_finite_input(stage, tiny_dataset,
                                                                                                   tmp_path):
    dataset = write_tiny_cohort(tmp_path, inf_suv=INF_PATIENTS)
    extra = ()
    if stage == "ts2":  # TS2 starts from a TS1 classifier trained on clean data
        assert main(["ts1", *args(tiny_dataset, tmp_path / "clean", "--max-epochs", "1")]) == 0
        extra = ("--init-from", str(tmp_path / "clean" / "tiny" / "ts1" / "fold0" / "best.pt"))
    with pytest.raises(TrainingError) as error:
        main([stage, *args(dataset, tmp_path / "runs", "--max-epochs", "1", *extra)])
    message = str(error.value)
    assert message.startswith(f"{stage}, fold 0, epoch 1, batch ") and "the training loss is not finite" in message
    named = message.split("non-finite input values (SUV/CT of the cache file, or TS3's bank of station logits) in ")[1]
    named = named.split(": check those scans' images")[0].split("; ")
    assert named and {item.split(" ")[0] for item in named} <= {f"P{i:02d}" for i in INF_PATIENTS}
    fold = tmp_path / "runs" / "tiny" / stage / "fold0"
    if stage == "ts1":
        assert not (fold / "last.pt").exists() and not (fold / "metrics.csv").exists()  # no step taken, no epoch
    else:  # TS2 recorded its start (epoch 0, the rule-started head) before the first step, and nothing after
        assert load_checkpoint(fold / "last.pt")["epoch"] == 0
        with open(fold / "metrics.csv") as f:
            assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0]


def test_a_head_too_narrow_for_the_rule_set_is_refused_with_what_to_do(tiny_dataset, tmp_path):
    with pytest.raises(TrainingError, match="rule set 'paper': the rule set needs 54 hidden units; head_hidden is 8; "
                                            "raise --head-hidden or pass --head-init random"):
        main(["ts3", *args(tiny_dataset, tmp_path, "--head-hidden", "8")])
