"""The training run: `run_training(settings)` holds the epoch loop; read it top to bottom.

A run lands in `<runs_dir>/<dataset>/<run_name or stage>/fold<K>/`: config.json (effective settings), metrics.csv
(one row per epoch), best.pt and last.pt (see train/checkpoint.py), and after training predictions_val.csv and
predictions_test.csv from the best checkpoint (format in train/inference.py).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import functools
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from cache.build_settings import build_settings_for, expected_settings
from cache.dataset import load_study, study_rows
from cache.heap import reused_heap
from cache.run_log import progress as progress_bar
from cache.settings import format_settings, settings_dict
from cache.stations import STATION_CUTOFF, group_mask, station_names
from train.augment import AugmentSettings, augment, centre_crop
from train.checkpoint import CheckpointError, load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from train.cross_fit import (
    deal_parts,
    mark_part_run,
    part_rows,
    part_run_complete,
    part_run_dir,
    part_settings,
)
from train.data import (
    BatchRequest,
    CohortPart,
    ScanBatch,
    ScanBatches,
    StationBatch,
    StationBatches,
    epoch_plan,
    loader,
    open_study_part,
    sampler_settings,
    scan_batch,
    station_pairs,
)
from train.distributed import Ranks, setup, teardown, unwrap, wrap
from train.folds import fold_file_path, load_or_make_study_folds
from train.inference import predict, settings_from_checkpoint, write_predictions
from train.losses import LossWeights, n_stage_loss, station_bce
from train.model import (
    N_STATIONS,
    SIDE_CODES,
    NStageModel,
    build_model,
    fit_output_scale,
    init_head_at_rule,
    scale_head_output,
    stage_logits_of,
)
from train.settings import TrainSettings, changed_settings

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_ce", "train_mse", "train_pseudo", "train_bce",
                  "val_station_bacc", "val_station_auc", "val_n_bacc", "val_n_bacc_se", "val_metric", "best_metric",
                  "seconds")
ARCHITECTURE = ("channels", "patch_size_vox", "station_encoding", "embedding_dim", "station_mask_channel", "norm")


class TrainingError(RuntimeError):
    """A run folder, checkpoint or schedule that does not fit the requested run; the message says what to do."""


@dataclass(frozen=True)
class TrainingCohort:
    """The fold's training, validation and test parts (cache files, labels, tumour sides) and the label column."""

    train: CohortPart
    val: CohortPart
    test: CohortPart
    label_column: str


def run_training(settings: TrainSettings) -> int:
    """Train one stage on one fold (all ranks under torchrun); returns the exit status."""
    ranks = setup(settings.device)
    try:
        # each step's crops, patches and activations reuse the last step's pages
        with reused_heap() if settings.reuse_heap else contextlib.nullcontext():
            return train(settings, ranks)
    finally:
        teardown()


def train(settings: TrainSettings, ranks: Ranks, patients: tuple[tuple[str, ...], ...] | None = None,
          run_dir: Path | None = None) -> int:
    """The run; `patients` (train, val, test pool ids) and `run_dir` replace the fold's for TS3's part runs."""
    device, run_dir = ranks.device, run_dir or settings.run_dir
    log = print if ranks.is_main else (lambda *args, **kwargs: None)
    log(format_settings(settings))
    cohort = load_training_cohort(settings, log, patients)
    check_run_dir(settings, run_dir, clear=ranks.is_main)
    # before the seeds below: a part run trained or reused leaves the same draws for this run
    part_classifiers = train_part_classifiers(settings, cohort, ranks, log) if cross_fitted(settings) else []
    # every draw flows from these: the data plan (same on all ranks), augmentation and dropout (rank-offset)
    torch.manual_seed(settings.seed + ranks.rank)
    data_rng = np.random.default_rng(settings.seed)
    augment_generator = torch.Generator(device).manual_seed(settings.seed + ranks.rank)

    model = build_model(settings).to(device)
    rule_start = False  # the head starts as the rule on a TS1 classifier: its output scale is fitted below
    if settings.stage != "ts1" and not settings.resume:
        if settings.head_init == "rule":
            start_head_at_rule(model, settings, cohort.train.rule_set)
        rule_start = init_from_checkpoint(model, settings, device, log) == "ts1" and settings.head_init == "rule"
    if settings.stage == "ts3":
        model.classifier.requires_grad_(False)
    optimizer = torch.optim.Adam(parameter_groups(model, settings), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=settings.plateau_factor,
                                                           patience=settings.plateau_patience)
    use_amp = settings.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, best_metric, best_epoch, since_best = 1, -math.inf, 0, 0
    if settings.resume:
        state = load_checkpoint(run_dir / "last.pt", map_location=device)
        check_resume_settings(settings, state, run_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_states(state["rng"], data_rng, augment_generator)
        start_epoch, best_metric = state["epoch"] + 1, state["best_metric"]
        best_epoch, since_best = state["best_epoch"], state["epochs_since_best"]
        log(f"resuming {run_dir} after epoch {state['epoch']} (best {best_metric:.4f} at epoch {best_epoch})")
        if since_best >= settings.early_stop_patience:  # it had stopped early: only the predictions remain to do
            start_epoch = settings.max_epochs + 1
    if ranks.is_main:
        write_config(run_dir, settings, cohort, ranks)
        truncate_metrics(run_dir / "metrics.csv", start_epoch - 1)
    trained = wrap(model, ranks)

    crop = sampler_settings(settings, settings.margin_vox if settings.augment else 0)
    if settings.stage == "ts1":
        dataset = StationBatches(cohort.train, crop, settings.train_patch_sampling)
        classes = station_pairs(cohort.train)[2]
    else:
        dataset = ScanBatches(cohort.train, crop, settings.train_patch_sampling)
        classes = cohort.train.n_stage
    samples = settings.samples_per_epoch or len(classes)
    batch_per_rank = max(1, settings.batch_size // ranks.world_size)
    bank = None
    if settings.stage == "ts3" and settings.head_logit_draws:
        bank = (cross_fit_bank(model, dataset, settings, device, part_classifiers) if part_classifiers
                else logit_bank(model, dataset, settings, device))
        source = f"the {len(part_classifiers)} part runs" if part_classifiers else "the fold's TS1"
        log(f"logit bank: {settings.head_logit_draws} patch draws of each of {len(dataset)} training scans, "
            f"from {source}")
    if rule_start:
        logits = bank if bank is not None else logit_bank(
            model, dataset, dataclasses.replace(settings, head_logit_draws=1), device)
        calibrate_rule_start(model, logits, cohort.train, device, log)

    def record(epoch: int, improved: bool, since_best: int, row: dict) -> None:
        """Checkpoints (best.pt when improved, last.pt) and the metrics row of an epoch, on the main rank."""
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                 "best_metric": best_metric, "best_epoch": best_epoch, "epochs_since_best": since_best,
                 "stage": settings.stage, "settings": settings_dict(settings)["TrainSettings"],
                 "rng": rng_states(data_rng, augment_generator)}
        if improved:
            save_checkpoint(run_dir / "best.pt", state)
        save_checkpoint(run_dir / "last.pt", state)
        append_metrics(run_dir / "metrics.csv", {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                                                 "best_metric": best_metric, **row})

    if settings.stage != "ts1" and settings.head_init == "rule" and not settings.resume:
        # the start (the rule-based stager, or a TS3 head) is the first candidate: an epoch must beat it by
        # start_margin_se standard errors of its validation score
        started = time.monotonic()
        scores = validate(model, cohort.val, settings, device)
        metric = selection_metric(scores, settings)
        best_metric, best_epoch = metric + settings.start_margin_se * scores["n_bacc_se"], 0
        if ranks.is_main:
            record(0, True, 0, {**{f"val_{name}": value for name, value in scores.items()},
                                "val_metric": metric, "seconds": time.monotonic() - started})
        log(f"epoch 0 (the start, before training): val N bacc {scores['n_bacc']:.3f} (standard error "
            f"{scores['n_bacc_se']:.3f}); a trained epoch replaces it above {best_metric:.3f}")

    for epoch in range(start_epoch, settings.max_epochs + 1):
        started = time.monotonic()
        plan = epoch_plan(classes, samples, batch_per_rank, data_rng, ranks.world_size)[ranks.rank::ranks.world_size]
        if epoch == start_epoch:
            check_min_steps(settings, len(plan))
        batches = (loader(dataset, plan, settings.num_workers, pin_memory=device.type == "cuda") if bank is None
                   else bank_batches(bank, cohort.train, plan))
        items = functools.partial(batch_items, cohort.train, dataset, plan)
        losses = train_one_epoch(trained, batches, optimizer, scaler, augment_generator, settings, ranks, epoch,
                                 items)
        scores = validate(model, cohort.val, settings, device)
        metric = selection_metric(scores, settings)
        # every epoch's plan has the same length; before min_steps an epoch neither counts as best nor as stalled
        settled = epoch * len(plan) >= settings.min_steps
        improved = settled and metric > best_metric
        if settled:
            scheduler.step(metric)
        if improved:
            best_metric, best_epoch, since_best = metric, epoch, 0
        elif settled:
            since_best += 1
        if ranks.is_main:
            record(epoch, improved, since_best, {**losses, **{f"val_{name}": value for name, value in scores.items()},
                                                 "val_metric": metric, "seconds": time.monotonic() - started})
            log(f"epoch {epoch}: loss {losses['train_loss']:.4f}, val station bacc {scores['station_bacc']:.3f}, "
                f"AUC {scores['station_auc']:.3f}, N bacc {scores['n_bacc']:.3f}, best {best_metric:.3f} "
                f"(epoch {best_epoch})")
        if since_best >= settings.early_stop_patience:
            log(f"early stop: no improvement for {since_best} epochs")
            break
        if epoch == settings.stop_after_epoch:
            log(f"stopping after epoch {epoch} as asked (stop_after_epoch); continue with --resume")
            return 0

    if ranks.is_main:
        write_final_predictions(run_dir, settings, cohort, device)
    return 0


def parameter_groups(model: torch.nn.Module, settings: TrainSettings) -> list[dict]:
    """The trainable parameters for Adam: TS2/TS3's head at `head_lr` (when set), the rest at `lr`."""
    if settings.stage == "ts1" or not settings.head_lr:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    head = list(model.head.parameters())
    classifier = [p for p in model.classifier.parameters() if p.requires_grad]
    return [{"params": head, "lr": settings.head_lr}, *([{"params": classifier}] if classifier else [])]


def check_min_steps(settings: TrainSettings, steps_per_epoch: int) -> None:
    """Refuse a schedule whose max_epochs end before min_steps: no epoch could become the best one."""
    if settings.min_steps > settings.max_epochs * steps_per_epoch:
        raise TrainingError(f"min_steps={settings.min_steps} is more than max_epochs={settings.max_epochs} epochs of "
                            f"{steps_per_epoch} optimizer steps take; raise max_epochs (or samples_per_epoch) or lower "
                            "min_steps")


def train_one_epoch(model: torch.nn.Module, batches, optimizer, scaler, generator: torch.Generator,
                    settings: TrainSettings, ranks: Ranks, epoch: int,
                    items: Callable[[int], list[str]]) -> dict[str, float]:
    """One pass over the epoch plan; returns mean losses. A non-finite loss stops the run before its step
    (`items(step)` names the batch's scans in the error)."""
    model.train()
    if settings.stage == "ts3":
        unwrap(model).classifier.eval()  # frozen: no dropout, only the head trains
    device, weights = ranks.device, LossWeights(settings.lambda_ce, settings.lambda_mse, settings.lambda_pseudo,
                                                settings.lambda_bce, settings.balance_stations)
    sums: dict[str, float] = {}
    progress = progress_bar(batches, desc=f"epoch {epoch}", unit="batch", enabled=ranks.is_main and settings.progress,
                            leave=False)
    for step, batch in enumerate(progress):
        patches = (None if isinstance(batch, LogitBatch) else
                   prepare_patches(batch.crops.to(device, non_blocking=True), settings, generator))
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=scaler.is_enabled()):
            if isinstance(batch, StationBatch):
                logits = model(patches, batch.station.to(device))
                parts = {"train_loss": station_bce(logits, batch.label.to(device))}
            elif isinstance(batch, LogitBatch):
                parts = scan_batch_loss(model, None, batch.labels, weights, device, batch.station_logits.to(device))
            else:
                parts = scan_batch_loss(model, patches, batch, weights, device)
        if not bool(torch.isfinite(parts["train_loss"].detach())):
            inputs = batch.station_logits if isinstance(batch, LogitBatch) else patches
            raise TrainingError(non_finite_loss(settings, epoch, step, len(batches), parts, items(step), inputs))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(parts["train_loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        progress.set_postfix(loss=f"{float(parts['train_loss'].detach()):.4f}")
    n = max(1, len(batches))
    return {key: sums.get(key, math.nan) / n for key in
            ("train_loss", "train_ce", "train_mse", "train_pseudo", "train_bce")}


def batch_items(part: CohortPart, dataset: StationBatches | ScanBatches, plan: list[BatchRequest],
                step: int) -> list[str]:
    """The items of the plan's batch `step` as an error names them: scans (TS2/TS3), scan and station (TS1)."""
    items = np.asarray(plan[step].items)
    if isinstance(dataset, StationBatches):
        names = station_names()
        return [f"{part.patient_ids[s]} scan {part.scan_ids[s]} station {names[t]}"
                for s, t in zip(dataset.scans[items], dataset.stations[items], strict=True)]
    return [f"{part.patient_ids[s]} scan {part.scan_ids[s]}" for s in items]


def non_finite_loss(settings: TrainSettings, epoch: int, step: int, n_steps: int, parts: dict[str, torch.Tensor],
                    items: list[str], inputs: torch.Tensor) -> str:
    """The error of a non-finite training loss: where, the loss terms, and which items' inputs are not finite
    (bad data) or that all are (the model diverged)."""
    terms = ", ".join(f"{name.removeprefix('train_')} {float(value.detach()):.4g}" for name, value in parts.items())
    finite = torch.isfinite(inputs.detach().flatten(1).float()).all(dim=1).cpu().numpy()
    bad = sorted({item for item, ok in zip(items, finite, strict=True) if not ok})
    cause = (f"non-finite input values (SUV/CT of the cache file, or TS3's bank of station logits) in "
             f"{'; '.join(bad)}: check those scans' images and rebuild their cache files"
             if bad else "every input of the batch is finite, so the model diverged: lower --lr (or --head-lr)")
    return (f"{settings.stage}, fold {settings.fold}, epoch {epoch}, batch {step + 1} of {n_steps}: the training "
            f"loss is not finite ({terms}); {cause}. The batch's items: {'; '.join(sorted(set(items)))}")


def prepare_patches(crops: torch.Tensor, settings: TrainSettings, generator: torch.Generator) -> torch.Tensor:
    """Augmented patches (or the plain centre crop); a scan batch (B, 17, C, ...) is flattened and restored."""
    shape = crops.shape
    scans = crops.dim() == 6
    flat = crops.flatten(0, 1) if scans else crops
    mask_channel = 2 if settings.station_mask_channel else None
    if settings.augment:
        flat = augment(flat, settings.patch_size_vox, AugmentSettings.from_train(settings), generator, mask_channel)
    else:
        flat = centre_crop(flat, settings.patch_size_vox)
    return flat.reshape(*shape[:-3], *flat.shape[-3:]) if scans else flat


@dataclass(frozen=True)
class LogitBatch:
    """TS3 with a logit bank: the frozen classifier's station logits (B, 17) of one draw per scan, and the scans'
    labels (`labels.crops` is empty)."""

    station_logits: torch.Tensor
    labels: ScanBatch


@torch.no_grad()
def logit_bank(model: NStageModel, dataset: ScanBatches, settings: TrainSettings, device: torch.device,
               rows: np.ndarray | None = None) -> torch.Tensor:
    """TS3: (scans, head_logit_draws, 17) station logits of the frozen classifier, one fresh patch draw (weight
    map and augmentation, as in training) per scan and draw, computed once instead of at every step; with `rows`
    only those scans' (in that order).

    Its draws come from their own seeds, so a resumed run rebuilds the same bank.
    """
    scans = np.arange(len(dataset)) if rows is None else np.asarray(rows)
    rng = np.random.default_rng([settings.seed, 3])
    generator = torch.Generator(device).manual_seed(settings.seed + 3)
    draws = settings.head_logit_draws
    chunks = np.array_split(np.arange(len(scans)), -(-len(scans) // settings.batch_size))
    plan = [BatchRequest(int(rng.integers(0, 2**63 - 1)), tuple(int(scans[i]) for i in chunk))
            for _ in range(draws) for chunk in chunks]
    bank = torch.empty(len(scans), draws, N_STATIONS)
    model.classifier.eval()
    batches = loader(dataset, plan, settings.num_workers, pin_memory=device.type == "cuda")
    for index, (batch, chunk) in enumerate(zip(batches, chunks * draws, strict=True)):
        patches = prepare_patches(batch.crops.to(device, non_blocking=True), settings, generator)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = model.station_logits(patches)
        bank[chunk, index // len(chunks)] = logits.float().cpu()
    return bank


def cross_fit_bank(model: NStageModel, dataset: ScanBatches, settings: TrainSettings, device: torch.device,
                   part_classifiers: list[tuple[Path, np.ndarray]]) -> torch.Tensor:
    """TS3 cross-fitted: the logit bank with each training scan's logits from the part run that left it out; the
    model's own classifier is restored after."""
    own = copy.deepcopy(model.classifier.state_dict())
    bank = torch.empty(len(dataset), settings.head_logit_draws, N_STATIONS)
    for path, rows in part_classifiers:
        model.classifier.load_state_dict(load_checkpoint(path, map_location=device)["model"])
        bank[rows] = logit_bank(model, dataset, settings, device, rows)
    model.classifier.load_state_dict(own)
    return bank


@torch.no_grad()
def calibrate_rule_start(model: NStageModel, logits: torch.Tensor, part: CohortPart, device: torch.device,
                         log) -> None:
    """Scale the rule-started head's N-stage logits so that their cross-entropy on the training scans' station
    logits (scans, draws, 17) is least: the start still stages as the rule, with a fitted confidence."""
    labels = scan_batch(part, np.arange(len(part)), torch.empty(0))
    draws = logits.shape[1]
    n_stage = labels.n_stage.repeat_interleave(draws)
    known = n_stage >= 0
    if not known.any():
        return
    side = labels.side.repeat_interleave(draws, dim=0)[known]
    with torch.no_grad():
        outputs = model.head_outputs(logits.flatten(0, 1)[known].to(device)).float().cpu()

    def stage_logits(scale: float) -> torch.Tensor:
        return stage_logits_of(outputs * scale, side)

    scale = fit_output_scale(stage_logits, n_stage[known])
    before = torch.nn.functional.cross_entropy(stage_logits(1.0), n_stage[known]).item()
    after = torch.nn.functional.cross_entropy(stage_logits(scale), n_stage[known]).item()
    scale_head_output(model.head, scale)
    floor = (" (the floor: the rule's outputs rank no better than uniform probabilities on these logits, so "
             "training fits the output layer afresh on the rule's calls)") if scale < 1.01e-3 else ""
    log(f"head start (the rule): N-stage logits scaled by {scale:.3g}{floor}, training cross-entropy "
        f"{before:.2f} -> {after:.2f} (ln 4 = 1.39)")


def bank_batches(bank: torch.Tensor, part: CohortPart, plan: list[BatchRequest]) -> list[LogitBatch]:
    """The batches of an epoch plan from the logit bank: each scan's draw picked by the request's seed."""
    batches = []
    for request in plan:
        scans = np.asarray(request.items)
        draw = np.random.default_rng(request.seed).integers(0, bank.shape[1], size=len(scans))
        batches.append(LogitBatch(bank[scans, draw], scan_batch(part, scans, torch.empty(0))))
    return batches


def scan_batch_loss(model, patches: torch.Tensor | None, batch: ScanBatch, weights: LossWeights,
                    device: torch.device, station_logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Eq. 2 of a scan batch: from its patches, or from given station logits (TS3's bank)."""
    stage_logits, station_logits = model(patches, batch.side.to(device), station_logits=station_logits)
    loss = n_stage_loss(stage_logits, station_logits, batch.n_stage.to(device), batch.station_status.to(device),
                        batch.masks.to(device), batch.targets.to(device), weights,
                        station_labelled=batch.station_labelled.to(device))
    return {"train_loss": loss.total, "train_ce": loss.ce, "train_mse": loss.mse, "train_pseudo": loss.pseudo,
            "train_bce": loss.bce}


def validate(model: torch.nn.Module, part: CohortPart, settings: TrainSettings,
             device: torch.device) -> dict[str, float]:
    """Station balanced accuracy and AUC, N-stage balanced accuracy on the validation part (0 when undefined)."""
    predictions = predict(model, part, settings, device, samples=settings.inference_samples, seed=settings.seed)
    with warnings.catch_warnings():  # a small validation part may lack a class the model predicts: expected
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true", category=UserWarning)
        return validation_scores(part, predictions)


def validation_scores(part: CohortPart, predictions) -> dict[str, float]:
    """Station scores over the stations with a known label (a scan without trusted station labels has none:
    train.data.open_study_part); N-stage over all scans."""
    known = ~np.isnan(predictions.station_prob) & (part.station_status >= 0)
    truth, probability = part.station_status[known], predictions.station_prob[known]
    station_bacc = balanced_accuracy_score(truth, probability >= 0.5) if known.any() else math.nan
    station_auc = roc_auc_score(truth, probability) if len(np.unique(truth)) == 2 else math.nan
    staged = (part.n_stage >= 0) & (predictions.n_pred >= 0)
    n_truth, n_pred = part.n_stage[staged], predictions.n_pred[staged]
    n_bacc = balanced_accuracy_score(n_truth, n_pred) if staged.any() else math.nan
    n_bacc_se = balanced_accuracy_se(n_truth, n_pred) if staged.any() else math.nan
    scores = {"station_bacc": station_bacc, "station_auc": station_auc, "n_bacc": n_bacc, "n_bacc_se": n_bacc_se}
    # NaN would never count as an improvement; treat an undefined metric as the worst value
    return {name: 0.0 if math.isnan(value) else float(value) for name, value in scores.items()}


def balanced_accuracy_se(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Standard error of the balanced accuracy, its per-class recalls taken as independent binomials with the
    plus-two estimate (x + 1) / (n + 2), so that a class of a few scans all right or all wrong still counts as
    uncertain."""
    classes, index = np.unique(truth, return_inverse=True)
    n = np.bincount(index)
    hits = np.bincount(index, weights=prediction == truth, minlength=len(classes))
    recall = (hits + 1) / (n + 2)
    return float(np.sqrt(np.sum(recall * (1 - recall) / n)) / len(classes))


def selection_metric(scores: dict[str, float], settings: TrainSettings) -> float:
    """What picks the best epoch, steps the learning rate and stops early: TS1 the station score named by
    `val_metric`, TS2/TS3 the N-stage balanced accuracy."""
    if settings.stage != "ts1":
        return scores["n_bacc"]
    return scores["station_auc"] if settings.val_metric == "auc" else scores["station_bacc"]


def load_training_cohort(settings: TrainSettings, log,
                         patients: tuple[tuple[str, ...], ...] | None = None) -> TrainingCohort:
    """The dataset's (or study's pooled) manifests, the stored folds, and the cache files of this fold's parts
    (or of the given train, val and test patients)."""
    study = load_study(settings.dataset, settings.root or None, settings.cache_root or None)
    rows = study_rows(study, log)
    folds = load_or_make_study_folds(fold_file_path(settings.runs_dir, settings.dataset, study.label_column), study,
                                     rows, settings.n_folds, settings.val_fraction, settings.fold_seed, log)
    fold = folds[settings.fold]
    expected = expected_settings(build_settings_for(settings.dataset))
    parts = (open_study_part(rows, ids, expected) for ids in (patients or (fold.train, fold.val, fold.test)))
    cohort = TrainingCohort(*parts, study.label_column)
    for name in ("train", "val", "test"):
        part = getattr(cohort, name)
        labelled = int(((part.station_status >= 0).all(axis=1) & part.station_labelled).sum())
        members = "" if not study.namespaced else " (" + ", ".join(
            f"{m.name} {part.datasets.count(m.name)}" for m in study.members) + ")"
        log(f"fold {settings.fold} {name}: {len(part)} scans{members}, {labelled} with station labels, "
            f"{int((part.n_stage >= 0).sum())} with N-stage, {part.unknown_side} with unknown tumour side "
            f"(kept: no pseudo-loss, rule-based N-stage only when the side does not matter)")
    return cohort


def check_run_dir(settings: TrainSettings, run_dir: Path, clear: bool) -> None:
    """Refuse a resume without checkpoint and a new run over an old one; `clear` (rank 0) removes stale files."""
    last = run_dir / "last.pt"
    if settings.resume and not last.is_file():
        raise CheckpointError(f"--resume: no checkpoint {last} to resume from; run without --resume to start")
    if not settings.resume and last.is_file() and not settings.overwrite:
        raise TrainingError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to start over")
    run_dir.mkdir(parents=True, exist_ok=True)
    if clear:  # temporary files of a writer killed mid-save; the renamed files are complete
        for temporary in run_dir.glob(".*.tmp"):
            temporary.unlink(missing_ok=True)
    if clear and not settings.resume:
        for name in ("best.pt", "last.pt", "metrics.csv", "predictions_val.csv", "predictions_test.csv"):
            (run_dir / name).unlink(missing_ok=True)


def check_resume_settings(settings: TrainSettings, state: dict, run_dir: Path) -> None:
    different = changed_settings(settings_from_checkpoint(state), settings)
    if different:
        raise TrainingError(f"{run_dir / 'last.pt'} was made with other settings ({'; '.join(different)}); resume with "
                            "the same settings, or start a new run (--overwrite or another --run-name)")


def start_head_at_rule(model: NStageModel, settings: TrainSettings, rule_set: str) -> None:
    """TS2/TS3's head set to compute the cohort's rule set on the station logits (head_init = rule)."""
    try:
        init_head_at_rule(model.head, np.stack([group_mask(side, rule_set) for side in SIDE_CODES]), STATION_CUTOFF)
    except ValueError as error:  # the head is narrower than the rule set needs
        raise TrainingError(f"head_init = rule with rule set {rule_set!r}: {error}; raise --head-hidden or pass "
                            "--head-init random") from error


def cross_fitted(settings: TrainSettings) -> bool:
    """TS3 with `head_cross_fit` parts; refused without a logit bank, the only way TS3 reads them."""
    if settings.stage != "ts3" or not settings.head_cross_fit:
        return False
    if not settings.head_logit_draws:
        raise TrainingError("head_cross_fit needs the logit bank: pass --head-logit-draws N (e.g. 4) or "
                            "--head-cross-fit 0")
    if settings.head_cross_fit < 2:
        raise TrainingError(f"head_cross_fit = {settings.head_cross_fit}: needs at least 2 parts (0: off)")
    return True


def train_part_classifiers(settings: TrainSettings, cohort: TrainingCohort, ranks: Ranks,
                           log) -> list[tuple[Path, np.ndarray]]:
    """TS3 cross-fitted: TS1 trained again without each part of the fold's training patients (train.cross_fit),
    a complete part run reused; each part's best.pt with the positions of its scans in the training part."""
    ts1 = start_state(settings)[1]
    parts = deal_parts(cohort.train, settings.head_cross_fit, settings.seed)
    training, validation = (tuple(dict.fromkeys(part.patient_ids)) for part in (cohort.train, cohort.val))
    inner = part_settings(settings, ts1)
    run_dirs = [part_run_dir(settings.run_dir, k, len(parts)) for k in range(len(parts))]
    for k, (left_out, run_dir) in enumerate(zip(parts, run_dirs, strict=True)):
        if part_run_complete(run_dir, inner, left_out):
            log(f"cross-fit part {k + 1}/{len(parts)}: complete in {run_dir}, reused")
            continue
        log(f"cross-fit part {k + 1}/{len(parts)}: TS1 without {len(left_out)} of the fold's {len(training)} "
            f"training patients, in {run_dir}")
        leaving = set(left_out)
        kept = tuple(p for p in training if p not in leaving)
        train(inner, ranks, (kept, validation, left_out), run_dir)
        if ranks.is_main:
            mark_part_run(run_dir, left_out)
    rows = part_rows(cohort.train.patient_ids, parts)
    return [(run_dir / "best.pt", part) for run_dir, part in zip(run_dirs, rows, strict=True)]


def start_state(settings: TrainSettings, device: torch.device | str = "cpu") -> tuple[dict, TrainSettings, Path]:
    """The checkpoint TS2/TS3 start from (`init_from`, else the fold's TS1 under the dataset's runs), its settings
    and path, refused unless it is a TS1 (for TS2 also a TS3) checkpoint of this fold and architecture."""
    path = Path(settings.init_from) if settings.init_from else (
        Path(settings.runs_dir) / Path(settings.dataset).stem / "ts1" / f"fold{settings.fold}" / "best.pt")
    if not path.is_file():
        raise CheckpointError(f"{settings.stage} starts from the TS1 classifier of fold {settings.fold}, but {path} "
                              f"does not exist; run: python -m train ts1 --fold {settings.fold} first, or pass "
                              "--init-from PATH")
    state = load_checkpoint(path, map_location=device)
    source = settings_from_checkpoint(state)
    allowed = ("ts1", "ts3") if settings.stage == "ts2" else ("ts1",)
    shared = ARCHITECTURE + (("head_hidden",) if source.stage == "ts3" else ())
    different = [f"{name}: {getattr(source, name)!r} vs {getattr(settings, name)!r}" for name in shared
                 if getattr(source, name) != getattr(settings, name)]
    if different or source.stage not in allowed or source.fold != settings.fold:
        raise TrainingError(f"{path} is not a {' or '.join(s.upper() for s in allowed)} checkpoint of fold "
                            f"{settings.fold} with this architecture (stage {source.stage}, fold {source.fold}; "
                            f"{'; '.join(different) or 'same architecture'})")
    return state, source, path


def init_from_checkpoint(model: NStageModel, settings: TrainSettings, device: torch.device, log) -> str:
    """TS2/TS3 start from the TS1 classifier of the same fold; TS2 may also start from a TS3 run of that fold,
    whose head was already refined on the frozen classifier's logits (classifier and head are both loaded).
    Returns the stage it started from."""
    state, source, path = start_state(settings, device)
    if source.stage == "ts1":
        model.classifier.load_state_dict(state["model"])
    else:
        model.load_state_dict(state["model"])
    what = "classifier" if source.stage == "ts1" else "classifier and N-stage head"
    log(f"{what} initialised from {path} ({source.stage.upper()}, epoch {state['epoch']}, "
        f"val metric {state['best_metric']:.3f})")
    return source.stage


def write_config(run_dir: Path, settings: TrainSettings, cohort: TrainingCohort, ranks: Ranks) -> None:
    config = {**settings_dict(settings), "world_size": ranks.world_size, "device": str(ranks.device),
              "label_column": cohort.label_column,
              "scans": {name: len(getattr(cohort, name)) for name in ("train", "val", "test")},
              "unknown_tumor_side": {name: getattr(cohort, name).unknown_side for name in ("train", "val", "test")}}
    (run_dir / "config.json").write_text(json.dumps(config, indent=1))


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Keep the metric rows up to `last_epoch` (a resumed run rewrites the epochs after its checkpoint)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= last_epoch]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def append_metrics(path: Path, row: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def write_final_predictions(run_dir: Path, settings: TrainSettings, cohort: TrainingCohort,
                            device: torch.device) -> None:
    """Validation and test predictions of the best checkpoint (the files `evaluate` reads)."""
    state = load_checkpoint(run_dir / "best.pt", map_location=device)
    model = build_model(settings).to(device)
    model.load_state_dict(state["model"])
    for split in ("val", "test"):
        part = getattr(cohort, split)
        predictions = predict(model, part, settings, device, samples=settings.inference_samples, seed=settings.seed)
        write_predictions(run_dir / f"predictions_{split}.csv", part, predictions, settings.fold, split,
                          settings.stage)
