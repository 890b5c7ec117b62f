"""Classifier two-sample test in the CaloChallenge style (reference section 8.1).

An MLP learns to tell generated from reference samples; its ROC AUC on held-out data is
0.5 when the two are indistinguishable and 1 when they are perfectly separable.

Differences from CaloChallenge ``evaluate.py`` (input -> 2048 -> 2x[2048] -> 1, 50 epochs),
to fit a 2-core CPU: two hidden layers of 512 LeakyReLU units, 20 epochs; the rest is
the same: BCE-with-logits, Adam lr 2e-4, batch 1000, a 60/20/20 train/test/validation
split of equal numbers of generated and reference samples, the epoch with the lowest
test-split loss selected, AUC (``sklearn.metrics.roc_auc_score``) on the validation
split. CaloChallenge's isotonic calibration is a monotone map of the scores and leaves
the AUC unchanged, so it is skipped. Inputs are standardised with the reference
training split's mean and standard deviation. ``auc_err`` is the Hanley-McNeil (1982)
standard error of the validation AUC.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from emulator.validation.features import Standardizer

__all__ = ["ClassifierConfig", "classifier_auc", "hanley_mcneil_error"]


@dataclass(frozen=True)
class ClassifierConfig:
    """Hyper-parameters of the two-sample classifier (all recorded in metrics.json)."""

    hidden: int = 512  # units per hidden layer (CaloChallenge: 2048)
    n_hidden: int = 2  # hidden layers (CaloChallenge: 3)
    epochs: int = 20  # CaloChallenge: 50
    batch_size: int = 1000
    lr: float = 2e-4
    train_fraction: float = 0.6
    test_fraction: float = 0.2  # the rest is the validation split that gives the AUC
    max_per_class: int | None = None  # subsample each class to at most this many
    seed: int = 0
    num_threads: int | None = None  # torch.set_num_threads for the run (None: torch default)


def hanley_mcneil_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC from ``n_pos`` positives and ``n_neg`` negatives.

    >>> round(hanley_mcneil_error(0.5, 4000, 4000), 4)
    0.0065
    """
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def _mlp(n_in: int, cfg: ClassifierConfig) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = n_in
    for _ in range(cfg.n_hidden):
        layers += [torch.nn.Linear(width, cfg.hidden), torch.nn.LeakyReLU()]
        width = cfg.hidden
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def _split(n: int, cfg: ClassifierConfig, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    perm = rng.permutation(n)
    n_train = round(cfg.train_fraction * n)
    n_test = round(cfg.test_fraction * n)
    return perm[:n_train], perm[n_train : n_train + n_test], perm[n_train + n_test :]


@torch.no_grad()
def _scores(model: torch.nn.Module, x: torch.Tensor, batch: int = 20_000) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch]).squeeze(1) for i in range(0, len(x), batch)])


def classifier_auc(
    generated: np.ndarray, reference: np.ndarray, config: ClassifierConfig | None = None
) -> dict[str, object]:
    """Train the classifier on (N_g, F) ``generated`` vs (N_r, F) ``reference``; report its AUC.

    Returns ``auc`` and ``auc_err`` (validation split), ``best_epoch``, per-epoch
    ``history`` (train loss, test loss, test AUC), the split sizes and the config.
    """
    cfg = config or ClassifierConfig()
    rng = np.random.default_rng(cfg.seed)
    n = min(len(generated), len(reference))
    if cfg.max_per_class is not None:
        n = min(n, cfg.max_per_class)
    if n < 50:
        raise ValueError(f"the classifier test needs at least 50 samples per class, got {n}")
    gen = np.asarray(generated)[rng.choice(len(generated), n, replace=False)]
    ref = np.asarray(reference)[rng.choice(len(reference), n, replace=False)]
    tr, te, va = _split(n, cfg, rng)
    std = Standardizer.fit(ref[tr])

    def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([std(gen[idx]), std(ref[idx])]).astype(np.float32)
        x = np.nan_to_num(x, nan=0.0, posinf=1e6, neginf=-1e6)
        y = np.concatenate([np.ones(len(idx)), np.zeros(len(idx))]).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y)

    (x_tr, y_tr), (x_te, y_te), (x_va, y_va) = tensors(tr), tensors(te), tensors(va)
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = _mlp(x_tr.shape[1], cfg)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            loss_fn = torch.nn.BCEWithLogitsLoss()
            gen_t = torch.Generator().manual_seed(cfg.seed)
            best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
            history = []
            for epoch in range(1, cfg.epochs + 1):
                model.train()
                order = torch.randperm(len(x_tr), generator=gen_t)
                total = 0.0
                for i in range(0, len(order), cfg.batch_size):
                    b = order[i : i + cfg.batch_size]
                    opt.zero_grad()
                    loss = loss_fn(model(x_tr[b]).squeeze(1), y_tr[b])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(b)
                model.eval()
                s_te = _scores(model, x_te)
                test_loss = float(loss_fn(s_te, y_te))
                history.append(
                    {
                        "epoch": epoch,
                        "train_loss": total / len(x_tr),
                        "test_loss": test_loss,
                        "test_auc": float(roc_auc_score(y_te.numpy(), s_te.numpy())),
                    }
                )
                if test_loss < best[0]:
                    best = (test_loss, epoch, copy.deepcopy(model.state_dict()))
            model.load_state_dict(best[2])
            model.eval()
            s_va = _scores(model, x_va).numpy()
    finally:
        torch.set_num_threads(threads)
    auc = float(roc_auc_score(y_va.numpy(), s_va))
    return {
        "auc": auc,
        "auc_err": hanley_mcneil_error(auc, len(va), len(va)),
        "best_epoch": best[1],
        "n_per_class": {"train": len(tr), "test": len(te), "validation": len(va)},
        "n_features": int(x_tr.shape[1]),
        "history": history,
        "config": asdict(cfg),
    }
