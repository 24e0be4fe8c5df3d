"""TS3's head fitted on out-of-fold TS1 logits instead of TS1's own training scans', against the rule set.

Each fold's head trains on the station logits that the TS1 run of another fold gave its training scans as test
scans (centroid patches, from `predictions_test.csv`), selects its epoch on the validation part's N-stage
balanced accuracy as the trainer does, and stages that fold's test scans from their TS1 logits. The loss is the
part of Eq. 2 that reaches a head on frozen logits (CE and expected-stage MSE). It asks whether the logits' being
in-sample is what keeps TS3 below the rule. Not leak-free: the TS1 run of fold j trained on fold k's test scans,
so this is a diagnostic, not a way to train.

    python benchmarks/ts3_out_of_fold.py runs/demo/ts1-0a06e981b244 --head-init random --head-lr 0.01
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from cache.stations import STATION_CUTOFF, group_mask
from train.model import N_STAGES, N_STATIONS, SIDE_CODES, encode_side, init_head_at_rule

FOLDS, EPOCHS, STEPS, BATCH, MIN_STEPS = 5, 20, 20, 16, 100  # the demo's TS3 schedule


def fold_lists(path: Path) -> list[dict[str, set[str]]]:
    """Patients of each fold's train/val/test part (a study's members joined; ids without the member prefix)."""
    raw = json.loads(path.read_text())
    members = [raw] if "folds" in raw else list(raw["members"].values())
    return [{part: {p for m in members for p in m["folds"][k][part]} for part in ("train", "val", "test")}
            for k in range(FOLDS)]


def test_predictions(ts1_run: Path) -> pd.DataFrame:
    """One row per test scan of every fold: station logits (absent stations at -10), side, N-stage, rule's call."""
    scans = []
    for k in range(FOLDS):
        rows = pd.read_csv(ts1_run / f"fold{k}" / "predictions_test.csv")
        rows["logit"] = np.log(rows.probability / (1 - rows.probability))
        logits = rows.pivot_table(index="scan_id", columns="station_index", values="logit").reindex(
            columns=range(N_STATIONS)).fillna(-10.0)
        first = rows.groupby("scan_id").first()
        scans.append(logits.join(first[["patient_id", "tumor_side", "n_true", "n_pred"]]).assign(fold=k))
    table = pd.concat(scans)
    table["patient"] = table.patient_id.str.split("/").str[-1]
    return table


def inputs(table: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(table[list(range(N_STATIONS))].to_numpy(), dtype=torch.float32)
    sides = encode_side([side if isinstance(side, str) else None for side in table.tumor_side])
    return torch.cat([logits, sides], dim=1), torch.tensor(table.n_true.to_numpy())


def fit_head(train: pd.DataFrame, val: pd.DataFrame, head_init: str, lr: float) -> nn.Module:
    """The head trained as TS3 trains it (Adam, weight decay 1e-3), the best epoch by validation N balanced
    accuracy; a head started at the rule has its start as the first candidate."""
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(N_STATIONS + len(SIDE_CODES), 32), nn.ReLU(), nn.Linear(32, N_STAGES))
    if head_init == "rule":
        init_head_at_rule(head, np.stack([group_mask(side, "paper") for side in SIDE_CODES]), STATION_CUTOFF)
    x, y = inputs(train[train.n_true >= 0])
    x_val, y_val = inputs(val[val.n_true >= 0])
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-3)

    def score() -> float:
        with torch.no_grad():
            return balanced_accuracy_score(y_val, head(x_val).argmax(1))

    best = score() if head_init == "rule" else -1.0
    best_state = {k: v.clone() for k, v in head.state_dict().items()}
    rng = np.random.default_rng(0)
    for epoch in range(1, EPOCHS + 1):
        for _ in range(STEPS):
            batch = rng.choice(len(y), BATCH)
            out = head(x[batch])
            expected = (out.softmax(1) * torch.arange(N_STAGES)).sum(1)
            loss = 0.1 * nn.functional.cross_entropy(out, y[batch]) + 0.1 * (expected - y[batch]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch * STEPS >= MIN_STEPS and (value := score()) > best:
            best, best_state = value, {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ts1_run", type=Path, help="a TS1 run folder of python -m evaluate experiments")
    parser.add_argument("--head-init", choices=("rule", "random"), default="rule")
    parser.add_argument("--head-lr", type=float, default=0.001)
    args = parser.parse_args()
    folds = fold_lists(args.ts1_run.parent / "folds_cN.json")
    table = test_predictions(args.ts1_run)
    head_right = rule_right = rule_staged = 0
    for k, parts in enumerate(folds):
        head = fit_head(table[table.patient.isin(parts["train"])], table[table.patient.isin(parts["val"])],
                        args.head_init, args.head_lr)
        test = table[table.fold == k]
        x, y = inputs(test)
        with torch.no_grad():
            hits = int((head(x).argmax(1) == y).sum())
        stageable = test[test.n_pred >= 0]
        head_right += hits
        rule_right += int((stageable.n_pred == stageable.n_true).sum())
        rule_staged += len(stageable)
        print(f"fold {k}: head {hits / len(test):.2f} of {len(test)}, rule "
              f"{(stageable.n_pred == stageable.n_true).mean():.2f} of {len(stageable)}")
    print(f"head ({args.head_init}, lr {args.head_lr:g}) {head_right}/{len(table)} = {head_right / len(table):.3f}; "
          f"rule {rule_right}/{rule_staged} = {rule_right / rule_staged:.3f}")


if __name__ == "__main__":
    main()
