import csv
import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from tests.train.test_loop import args, assert_same_weights, weights
from train.__main__ import main
from train.cross_fit import deal_parts
from train.loop import TrainingError


def test_parts_are_disjoint_cover_the_patients_and_spread_each_n_stage_evenly():
    # the two fields deal_parts reads: two scans of one patient, 30 patients of known N-stage, 10 unknown (-1)
    part = SimpleNamespace(patient_ids=("P0", "P0", *(f"Q{i:02d}" for i in range(40))),
                           n_stage=np.array([3, 3, *(i % 4 if i < 30 else -1 for i in range(40))]))
    parts = deal_parts(part, 3, seed=0)
    everyone = [p for dealt in parts for p in dealt]
    assert sorted(everyone) == sorted(set(part.patient_ids)) and len(everyone) == len(set(everyone))
    stage = dict(zip(part.patient_ids, part.n_stage.tolist(), strict=True))
    per_part = [Counter(stage[p] for p in dealt) for dealt in parts]
    for n in (-1, 0, 1, 2, 3):
        counts = [c[n] for c in per_part]
        assert max(counts) - min(counts) <= 1, (n, counts)
    assert deal_parts(part, 3, seed=0) == parts and deal_parts(part, 3, seed=1) != parts


def test_ts3_cross_fitted_stages_on_part_runs_that_each_left_out_one_part_and_reuses_them(tiny_dataset, tmp_path,
                                                                                         capsys):
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--fold", "2", "--max-epochs", "1")]) == 0
    ts1 = weights(tmp_path / "tiny" / "ts1" / "fold2" / "best.pt")
    common = ("--fold", "2", "--max-epochs", "1", "--head-logit-draws", "2", "--head-lr", "0.01")
    assert main(["ts3", *args(tiny_dataset, tmp_path, *common, "--head-cross-fit", "2")]) == 0
    run = tmp_path / "tiny" / "ts3" / "fold2"
    config = json.loads((run / "config.json").read_text())
    left_out = [tuple(json.loads((run / "cross-fit" / f"part{k}of2" / "left_out.json").read_text())["patients"])
                for k in (1, 2)]
    with open(run / "predictions_val.csv") as f:
        validation = {r["patient_id"] for r in csv.DictReader(f)}
    for k, patients in enumerate(left_out, start=1):
        part = run / "cross-fit" / f"part{k}of2"
        with open(part / "predictions_test.csv") as f:  # a part run is tested on the patients it left out
            assert {r["patient_id"] for r in csv.DictReader(f)} == set(patients)
        with open(part / "predictions_val.csv") as f:  # and validated on the fold's validation part
            assert {r["patient_id"] for r in csv.DictReader(f)} == validation
        part_config = json.loads((part / "config.json").read_text())
        assert part_config["TrainSettings"]["stage"] == "ts1"
        assert part_config["scans"]["train"] == config["scans"]["train"] - len(patients)
    assert not set(left_out[0]) & set(left_out[1])
    assert len(left_out[0]) + len(left_out[1]) == config["scans"]["train"]  # one scan per tiny patient
    cross_fitted = weights(run / "last.pt")
    for key, value in ts1.items():  # the test scans are staged on the fold's own TS1
        assert cross_fitted[f"classifier.{key}"].equal(value), key

    capsys.readouterr()
    assert main(["ts3", *args(tiny_dataset, tmp_path, *common, "--head-cross-fit", "2", "--overwrite")]) == 0
    assert capsys.readouterr().out.count("reused") == 2
    assert_same_weights(cross_fitted, weights(run / "last.pt"))
    assert main(["ts3", *args(tiny_dataset, tmp_path, *common, "--run-name", "in-sample")]) == 0
    in_sample = weights(tmp_path / "tiny" / "in-sample" / "fold2" / "last.pt")
    assert any(not cross_fitted[k].equal(in_sample[k]) for k in in_sample if k.startswith("head."))


def test_cross_fitting_without_a_logit_bank_or_with_one_part_is_refused(tiny_dataset, tmp_path):
    assert main(["ts1", *args(tiny_dataset, tmp_path, "--max-epochs", "1")]) == 0
    with pytest.raises(TrainingError, match="head_cross_fit needs the logit bank: pass --head-logit-draws N"):
        main(["ts3", *args(tiny_dataset, tmp_path, "--head-cross-fit", "3")])
    with pytest.raises(TrainingError, match="needs at least 2 parts"):
        main(["ts3", *args(tiny_dataset, tmp_path, "--head-cross-fit", "1", "--head-logit-draws", "2")])
