"""The skorch regressor around `ForecastNet`: Gaussian loss, time-ordered validation.

`ForecastRegressor` is a `skorch.NeuralNetRegressor` that

* takes ``X`` as `Windows` (or a 3D array) and gathers each batch by index from
  the 2D feature matrix, never materialising all windows;
* validates on the time-ordered tail of the training samples (`TailSplit`),
  optionally after a gap, never on skorch's default (oldest) split;
* trains with AdamW, a linear-warmup cosine schedule, gradient clipping, early
  stopping with in-memory best-weights restore, and a stop with a clear error
  when the loss becomes non-finite;
* predicts the mean (`predict`) or mean and sigma (`predict_dist`) of the
  forward log return per horizon.

`save_regressor` / `load_regressor` write and read weights as safetensors and
the constructor parameters as JSON (with the weights' sha256): nothing is
unpickled when loading.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch import NeuralNetRegressor
from skorch.callbacks import Callback, EarlyStopping

from cbi_toolkit.errors import ArtifactError, CbiError
from cbi_toolkit.features.windows import Windows, as_windows
from cbi_toolkit.models.checks import check_targets
from cbi_toolkit.models.device import AMP_DTYPES, resolve_device, resolve_precision, torch_threads
from cbi_toolkit.models.network import ForecastNet

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "regressor.json"
FORMAT_VERSION = 1


class TrainingDivergedError(CbiError):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------
# loss

class GaussianForecastLoss(torch.nn.Module):
    """Gaussian NLL of forward log returns, optionally mixed with MAE and a direction term.

    All terms are computed in standardised target units (``(y - loc) / scale``
    with the training mean and std per horizon) so their weights are
    comparable: ``nll`` is the Gaussian negative log-likelihood, ``mae`` the
    mean absolute error of the mean, ``direction`` the log loss of the
    predicted probability of the observed sign, ``-log Phi(sign(y) * mu / sigma)``.
    """

    def __init__(self, nll: float = 1.0, mae: float = 0.0, direction: float = 0.0):
        super().__init__()
        self.nll, self.mae, self.direction = nll, mae, direction

    def forward(self, y_pred, y_true, scale=None):
        mu, sigma = y_pred
        if scale is None:
            scale = torch.ones_like(mu[:1])
        scale = scale.to(mu.dtype)
        # horizon mask: a NaN target (that horizon's future not yet known) adds no loss
        known = torch.isfinite(y_true)
        y_true = torch.where(known, y_true, mu.detach()).to(mu.dtype)
        weight = known.to(mu.dtype) / known.sum().clamp(min=1)
        err = (y_true - mu) / scale
        s = sigma / scale
        loss = mu.new_zeros(())
        if self.nll:
            nll = 0.5 * (err / s) ** 2 + torch.log(s) + 0.5 * math.log(2 * math.pi)
            loss = loss + self.nll * (weight * nll).sum()
        if self.mae:
            loss = loss + self.mae * (weight * err.abs()).sum()
        if self.direction:
            sign = torch.where(y_true >= 0, 1.0, -1.0).to(mu.dtype)
            loss = loss - self.direction * (weight * torch.special.log_ndtr(sign * mu / sigma)).sum()
        return loss


# ---------------------------------------------------------------------------
# data: windows gathered by index

class WindowDataset(torch.utils.data.Dataset):
    """Samples of a `Windows` (and optional targets ``y [n, H]``), by position."""

    def __init__(self, X, y=None):
        self.X = as_windows(X)
        self.y = None if y is None else np.asarray(y, dtype=np.float32)
        if self.y is not None and len(self.y) != len(self.X):
            raise ValueError(f"X has {len(self.X)} samples but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i):  # not used by the batch iterator; for completeness
        x = torch.from_numpy(self.X.gather(np.array([i]))[0])
        return x, (None if self.y is None else torch.from_numpy(self.y[i]))

    def subset(self, idx) -> WindowDataset:
        idx = np.asarray(idx, dtype=np.int64)
        return WindowDataset(self.X[idx], None if self.y is None else self.y[idx])


class WindowBatches:
    """Iterate ``(X_batch [b, window, F], y_batch [b, H] or None)`` tensors on ``device``.

    The feature matrix moves to the device once; each batch is a gather
    ``values[ends[batch, None] + offsets]``. Training batches are shuffled with
    ``generator`` (a seeded `torch.Generator`), so a seed fixes the order.

    With ``stride`` k > 1 a pass takes every k-th sample from a phase drawn anew
    each pass: consecutive origins share all but one row of their windows and
    most of their forward target, so a pass over 1/k of them carries nearly the
    same information at 1/k of the cost, and over k passes every sample is seen.
    """

    def __init__(self, dataset: WindowDataset, batch_size: int, device: torch.device,
                 shuffle: bool = False, generator: torch.Generator | None = None,
                 stride: int = 1):
        self.dataset, self.batch_size, self.device = dataset, int(batch_size), device
        self.shuffle, self.generator, self.stride = shuffle, generator, max(1, int(stride))
        win = dataset.X
        self.values = torch.as_tensor(np.ascontiguousarray(win.values, dtype=np.float32)).to(device)
        self.ends = torch.as_tensor(win.ends).to(device)
        self.offsets = torch.as_tensor(win.offsets()).to(device)
        self.y = None if dataset.y is None else torch.as_tensor(dataset.y).to(device)

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.dataset) / self.stride) / self.batch_size)

    def _order(self) -> torch.Tensor:
        n, k = len(self.dataset), self.stride
        if k > 1:  # every k-th sample from a random phase, at most one fewer than ceil(n / k)
            phase = int(torch.randint(k, (1,), generator=self.generator))
            rows = torch.arange(phase, n, k)
        else:
            rows = torch.arange(n)
        if self.shuffle:
            rows = rows[torch.randperm(len(rows), generator=self.generator)]
        return rows.to(self.device)

    def __iter__(self):
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            xb = self.values[self.ends[idx, None] + self.offsets]
            yield xb, (None if self.y is None else self.y[idx])


class TailSplit:
    """Validation on the time-ordered tail: the last ``fraction`` of samples.

    Samples are taken in the order given (oldest first). ``gap`` samples
    between the training part and the validation part are left out, because
    forward targets of the last training origins overlap the validation period.
    """

    def __init__(self, fraction: float = 0.1, gap: int = 0):
        self.fraction, self.gap = fraction, gap

    def indices(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 < self.fraction < 1:
            raise ValueError(f"valid_fraction must be in (0, 1), got {self.fraction}")
        n_valid = max(1, int(round(n * self.fraction)))
        n_train = n - n_valid - int(self.gap)
        if n_train < 1:
            raise ValueError(f"{n} samples are too few for a validation tail of {n_valid} "
                             f"after a gap of {self.gap}")
        return np.arange(n_train), np.arange(n - n_valid, n)

    def __call__(self, dataset: WindowDataset, y=None, **kwargs):  # noqa: ARG002
        train, valid = self.indices(len(dataset))
        return dataset.subset(train), dataset.subset(valid)

    def __repr__(self) -> str:
        return f"TailSplit(fraction={self.fraction}, gap={self.gap})"


# ---------------------------------------------------------------------------
# callbacks

class WarmupCosine(Callback):
    """Per-batch learning rate: linear warmup over ``warmup`` of all steps, then cosine to 0.

    The step count is ``max_epochs * batches per epoch`` of the training part.
    """

    def __init__(self, warmup: float = 0.1):
        self.warmup = warmup

    def on_train_begin(self, net, **kwargs):  # noqa: ARG002
        self.step_, self.total_ = 0, None
        self.base_lrs_ = [group.get("initial_lr", group["lr"])
                          for group in net.optimizer_.param_groups]
        for group, lr in zip(net.optimizer_.param_groups, self.base_lrs_, strict=True):
            group["initial_lr"] = lr

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):  # noqa: ARG002
        if self.total_ is None:
            per_epoch = math.ceil(math.ceil(len(dataset_train) / net.train_stride) / net.batch_size)
            self.total_ = max(1, per_epoch * net.max_epochs)

    def factor(self, step: int) -> float:
        warm = int(self.warmup * self.total_)
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, self.total_ - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def on_batch_begin(self, net, training=False, **kwargs):  # noqa: ARG002
        if not training:
            return
        f = self.factor(self.step_)
        for group, lr in zip(net.optimizer_.param_groups, self.base_lrs_, strict=True):
            group["lr"] = lr * f
        self.step_ += 1

    def on_epoch_end(self, net, **kwargs):  # noqa: ARG002
        net.history.record("lr", net.optimizer_.param_groups[0]["lr"])


class WarmupPlateau(Callback):
    """Per-batch learning rate measured in optimizer steps: a linear warm-up over
    ``warmup_steps``, then the base rate, multiplied by ``factor`` whenever the
    monitored loss has not improved for ``patience`` epochs.

    Unlike `WarmupCosine`, nothing depends on ``max_epochs``: with early stopping a
    fit ends after a few epochs, and a schedule stretched over ``max_epochs`` would
    still be warming up when it stopped.
    """

    def __init__(self, warmup_steps: int = 25, factor: float = 0.5, patience: int = 2,
                 monitor: str = "valid_loss"):
        self.warmup_steps, self.factor, self.patience = warmup_steps, factor, patience
        self.monitor = monitor

    def on_train_begin(self, net, **kwargs):  # noqa: ARG002
        self.step_, self.scale_, self.best_, self.bad_epochs_ = 0, 1.0, math.inf, 0
        self.base_lrs_ = [group.get("initial_lr", group["lr"])
                          for group in net.optimizer_.param_groups]
        for group, lr in zip(net.optimizer_.param_groups, self.base_lrs_, strict=True):
            group["initial_lr"] = lr

    def on_batch_begin(self, net, training=False, **kwargs):  # noqa: ARG002
        if not training:
            return
        warm = min(1.0, (self.step_ + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        for group, lr in zip(net.optimizer_.param_groups, self.base_lrs_, strict=True):
            group["lr"] = lr * warm * self.scale_
        self.step_ += 1

    def on_epoch_end(self, net, **kwargs):  # noqa: ARG002
        net.history.record("lr", net.optimizer_.param_groups[0]["lr"])
        monitor = self.monitor if self.monitor in net.history[-1] else "train_loss"
        loss = net.history[-1, monitor]
        if loss < self.best_:
            self.best_, self.bad_epochs_ = loss, 0
        elif self.step_ >= self.warmup_steps:
            self.bad_epochs_ += 1
            if self.bad_epochs_ >= self.patience:
                self.scale_ *= self.factor
                self.bad_epochs_ = 0


LR_SCHEDULES = ("plateau", "cosine")


# ---------------------------------------------------------------------------
# checks

def _used_rows(win: Windows) -> np.ndarray:
    """Mask of the rows of ``win.values`` that some sample reads."""
    marks = np.zeros(len(win.values) + 1, dtype=np.int64)
    np.add.at(marks, win.ends - win.window + 1, 1)
    np.add.at(marks, win.ends + 1, -1)
    return np.cumsum(marks[:-1]) > 0


def check_inputs(X, y=None) -> tuple[Windows, np.ndarray | None]:
    """`Windows` and float32 ``y [n, H]``; ValueError on NaN or inf, naming where."""
    win = as_windows(X)
    used = _used_rows(win)
    bad = ~np.isfinite(win.values[used])
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(f"X contains {int(bad.sum())} NaN or infinite feature values "
                         f"(first at feature column {int(cols[0])}, row "
                         f"{int(np.flatnonzero(used)[rows[0]])} of the feature matrix); "
                         "drop or fill them before fitting")
    if y is None:
        return win, None
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or len(y) != len(win):
        raise ValueError(f"y must be [n_samples, n_horizons] with n_samples={len(win)}, "
                         f"got shape {y.shape}")
    return win, check_targets(y)


# ---------------------------------------------------------------------------
# the regressor

class ForecastRegressor(NeuralNetRegressor):
    """skorch regressor for `ForecastNet` with a Gaussian head.

    Module parameters are set as ``module__hidden_dim`` etc. (``n_features``
    and ``n_horizons`` are taken from the data at fit time); loss weights as
    ``criterion__nll``, ``criterion__mae``, ``criterion__direction``.
    Fitted attributes: ``module_``, ``history_``, ``device_``, ``precision_``,
    ``n_features_in_``, ``n_horizons_``.
    """

    def __init__(self, module=ForecastNet, *, criterion=GaussianForecastLoss,
                 optimizer=torch.optim.AdamW, lr: float = 1e-3, weight_decay: float = 0.01,
                 batch_size: int = 32, max_epochs: int = 100, patience: int | None = 10,
                 grad_clip: float | None = 1.0, lr_schedule: str = "plateau",
                 warmup: float = 0.1, warmup_steps: int = 25, train_stride: int = 1,
                 valid_fraction: float = 0.1, valid_gap: int = 0, train_split="tail",
                 device: str = "auto", precision: str = "fp32", seed: int = 0,
                 threads: int | str | None = None, verbose: int = 1, **kwargs):
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr,
                         batch_size=batch_size, max_epochs=max_epochs,
                         train_split=train_split, device=device, verbose=verbose, **kwargs)
        self.weight_decay = weight_decay
        self.patience = patience
        self.grad_clip = grad_clip
        self.lr_schedule = lr_schedule
        self.warmup = warmup
        self.warmup_steps = warmup_steps
        self.train_stride = train_stride
        self.valid_fraction = valid_fraction
        self.valid_gap = valid_gap
        self.precision = precision
        self.seed = seed
        self.threads = threads

    # -- callbacks ------------------------------------------------------
    @property
    def _default_callbacks(self):
        from cbi_toolkit.models.progress import EpochLog, progress_callbacks

        callbacks = list(super()._default_callbacks)
        if callbacks[-1][0] == "print_log":
            callbacks[-1] = ("print_log", EpochLog())
        callbacks[-1:-1] = progress_callbacks(self.verbose)
        monitor = "valid_loss" if self._has_validation() else "train_loss"
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule {self.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
        schedule = (WarmupPlateau(self.warmup_steps, monitor=monitor)
                    if self.lr_schedule == "plateau" else WarmupCosine(self.warmup))
        callbacks.insert(-1, ("lr_schedule", schedule))
        if self.patience:
            callbacks.insert(-1, ("early_stopping", EarlyStopping(
                monitor=monitor, patience=self.patience, load_best=True)))
        return callbacks

    def __setstate__(self, state):
        # skorch maps saved tensors to ``state["device"]``, which may be "auto" here
        device = state.get("device")
        if device == "auto":
            state = {**state, "device": str(resolve_device(device))}
        super().__setstate__(state)
        if device == "auto":
            vars(self)["device"] = device

    def _has_validation(self) -> bool:
        return bool(self.train_split) and (self.train_split != "tail" or bool(self.valid_fraction))

    # -- initialisation -------------------------------------------------
    def _on_device(self):
        """Let skorch's initialisers place modules on the resolved device."""
        net = self

        class _Ctx:
            def __enter__(self):
                net.device_ = resolve_device(net.device)
                self.saved = vars(net)["device"]
                vars(net)["device"] = str(net.device_)

            def __exit__(self, *exc):
                vars(net)["device"] = self.saved

        return _Ctx()

    def _initialize_module(self, reason=None):
        with self._on_device():
            return super()._initialize_module(reason=reason)

    def _initialize_criterion(self, reason=None):
        with self._on_device():
            return super()._initialize_criterion(reason=reason)

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        if not isinstance(self.module, torch.nn.Module):
            for key, attr in (("n_features", "n_features_in_"), ("n_horizons", "n_horizons_")):
                if key not in kwargs:
                    if not hasattr(self, attr):
                        raise ValueError(f"{key} is unknown before fit; call fit(X, y) or "
                                         f"set module__{key}")
                    kwargs[key] = getattr(self, attr)
        self.module_ = self.initialized_instance(self.module, kwargs)
        self.target_stats_set_ = False
        return self

    def initialize_optimizer(self, triggered_directly=None):
        args, kwargs = self.get_params_for_optimizer("optimizer",
                                                     self.get_all_learnable_params())
        kwargs.setdefault("weight_decay", self.weight_decay)
        self.optimizer_ = self.optimizer(*args, **kwargs)
        return self

    def initialize(self):
        self.precision_ = resolve_precision(self.precision, resolve_device(self.device))
        self.generator_ = torch.Generator().manual_seed(int(self.seed))
        return super().initialize()

    # -- data -----------------------------------------------------------
    def get_dataset(self, X, y=None):
        if isinstance(X, WindowDataset):
            return X
        return WindowDataset(X, y)

    def get_split_datasets(self, X, y=None, **fit_params):
        dataset = self.get_dataset(X, y)
        split = self.train_split
        if isinstance(split, str) and split == "tail":
            split = TailSplit(self.valid_fraction, self.valid_gap) if self.valid_fraction else None
        if not split:
            train, valid = dataset, None
        else:
            train, valid = split(dataset, y, **fit_params)
        if not self.target_stats_set_ and train.y is not None:
            loc = np.nanmean(train.y.astype(np.float64), axis=0)
            scale = np.nanstd(train.y.astype(np.float64), axis=0)
            scale = np.where(scale > 1e-8, scale, 1.0)
            if hasattr(self.module_, "set_target_stats"):
                self.module_.set_target_stats(loc, scale)
            self.target_stats_set_ = True
        return train, valid

    def get_iterator(self, dataset, training=False):
        key = "iterator_train" if training else "iterator_valid"
        batch_size = self.get_params_for(key).get("batch_size", self.batch_size)
        if batch_size == -1:
            batch_size = len(dataset)
        return WindowBatches(dataset, batch_size, self.device_, shuffle=training,
                             generator=self.generator_ if training else None,
                             stride=self.train_stride if training else 1)

    # -- steps ------------------------------------------------------------
    def infer(self, x, **fit_params):
        x = x.to(self.device_)
        dtype = AMP_DTYPES[self.precision_]
        if dtype is None:
            out = self.module_(x, **fit_params)
        else:
            with torch.autocast(device_type=self.device_.type, dtype=dtype):
                out = self.module_(x, **fit_params)
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()

    def get_loss(self, y_pred, y_true, X=None, training=False):  # noqa: ARG002
        y_true = y_true.to(self.device_)
        scale = getattr(self.module_, "target_scale", None)
        if isinstance(self.criterion_, GaussianForecastLoss):
            return self.criterion_(y_pred, y_true, scale=scale)
        return self.criterion_(y_pred, y_true)

    def train_step(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = batch
        self.optimizer_.zero_grad(set_to_none=True)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"training loss became {loss.item()} in epoch {len(self.history)}; "
                "check the inputs' scaling or lower lr")
        scaler = self._grad_scaler()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(self.optimizer_)
        else:
            loss.backward()
        self.notify("on_grad_computed", named_parameters=list(self.get_all_learnable_params()),
                    batch=batch, training=True)
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.module_.parameters(), self.grad_clip)
        if scaler is not None:
            scaler.step(self.optimizer_)
            scaler.update()
        else:
            self.optimizer_.step()
        return {"loss": loss.detach(), "y_pred": y_pred}

    def _grad_scaler(self):
        if self.precision_ != "fp16":
            return None
        scaler = getattr(self, "grad_scaler_", None)
        if scaler is None:
            scaler = self.grad_scaler_ = torch.amp.GradScaler(self.device_.type)
        return scaler

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        Xi, yi = batch
        with torch.inference_mode():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def evaluation_step(self, batch, training=False):
        self.check_is_fitted()
        Xi, _ = batch
        self._set_training(training)
        if training:
            return self.infer(Xi)
        with torch.inference_mode():
            return self.infer(Xi)

    # -- public API ------------------------------------------------------
    def fit(self, X, y, **fit_params):
        """Fit on `Windows` ``X`` and labelled targets ``y [n, n_horizons]``."""
        X, y = check_inputs(X, y)
        self.n_features_in_ = X.values.shape[1]
        self.n_horizons_ = y.shape[1]
        with torch_threads(self.threads):
            if not self.warm_start or not self.initialized_:
                torch.manual_seed(int(self.seed))
                self.initialize()
            else:  # warm start: keep the weights, refit the target statistics on this data
                self.target_stats_set_ = False
            self.partial_fit(X, y, **fit_params)
        return self

    def warm_start_from(self, other: ForecastRegressor, max_epochs: int | None = None
                        ) -> ForecastRegressor:
        """Start from ``other``'s fitted weights: the next `fit` continues training them.

        Sets ``warm_start=True`` (and ``max_epochs`` if given), builds the module
        and copies ``other.module_``'s state into it. The optimizer starts
        afresh, the target statistics are refitted on the next `fit`'s data.
        """
        if not getattr(other, "initialized_", False) or not hasattr(other, "module_"):
            raise ValueError("warm_start_from needs a fitted regressor")
        self.set_params(warm_start=True, **({"max_epochs": int(max_epochs)} if max_epochs else {}))
        self.n_features_in_, self.n_horizons_ = other.n_features_in_, other.n_horizons_
        torch.manual_seed(int(self.seed))
        self.initialize()
        self.module_.load_state_dict(other.module_.state_dict())
        return self

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        X, y = check_inputs(X, y)
        if not self.initialized_:
            self.n_features_in_ = X.values.shape[1]
            self.n_horizons_ = y.shape[1]
        elif X.values.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.values.shape[1]} features, the net was built for "
                             f"{self.n_features_in_}")
        return super().partial_fit(X, y, classes=classes, **fit_params)

    def predict(self, X) -> np.ndarray:
        """Mean forward log return, ``[n, n_horizons]``."""
        return self.predict_dist(X)[0]

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sigma of the forward log return, each ``[n, n_horizons]``."""
        self.check_is_fitted()  # NotInitializedError, a NotFittedError, before any input work
        X, _ = check_inputs(X)
        mu, sigma = self.forward(X, training=False)
        return mu.numpy(), sigma.numpy()


# ---------------------------------------------------------------------------
# building from a spec

def regressor_from_spec(model_cfg, training_cfg, n_horizons: int | None = None,
                        valid_gap: int = 0, **overrides: Any) -> ForecastRegressor:
    """A `ForecastRegressor` from a spec's `ModelConfig` and `TrainingConfig`.

    ``n_horizons`` may be left to fit time; ``valid_gap`` is the number of
    samples left out between the training part and the validation tail
    (the longest horizon, in trading days). ``overrides`` go to the constructor.
    """
    params: dict[str, Any] = dict(
        module__hidden_dim=model_cfg.hidden_dim,
        module__num_layers=model_cfg.num_layers,
        module__num_heads=model_cfg.num_heads,
        module__dropout=model_cfg.dropout,
        module__attention=model_cfg.attention,
        criterion__nll=model_cfg.loss.nll,
        criterion__mae=model_cfg.loss.mae,
        criterion__direction=model_cfg.loss.direction,
        lr=training_cfg.lr,
        weight_decay=training_cfg.weight_decay,
        batch_size=training_cfg.batch_size,
        max_epochs=training_cfg.max_epochs,
        patience=training_cfg.patience,
        grad_clip=training_cfg.grad_clip,
        lr_schedule=training_cfg.lr_schedule,
        warmup=training_cfg.warmup,
        warmup_steps=training_cfg.warmup_steps,
        train_stride=training_cfg.stride,
        valid_fraction=training_cfg.valid_fraction,
        valid_gap=int(valid_gap),
        device=training_cfg.device,
        precision=training_cfg.precision,
        seed=training_cfg.seed,
    )
    threads = getattr(training_cfg, "threads", None)
    if threads is not None:
        params["threads"] = threads
    if n_horizons is not None:
        params["module__n_horizons"] = int(n_horizons)
    params.update(overrides)
    return ForecastRegressor(**params)


# ---------------------------------------------------------------------------
# saving and loading without pickle

_NOT_SAVED = {"_params_to_validate", "module", "criterion", "optimizer", "iterator_train", "iterator_valid",
              "dataset", "callbacks", "train_split", "predict_nonlinearity", "compile",
              "use_caching", "torch_load_kwargs", "warm_start"}


def _json_params(reg: ForecastRegressor) -> dict[str, Any]:
    params = {}
    for key, value in reg.get_params(deep=False).items():
        if key in _NOT_SAVED or key.startswith("callbacks__"):
            continue
        if value is None or isinstance(value, bool | int | float | str):
            params[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, int | float | str)
                                                     for v in value):
            params[key] = list(value)
        else:
            raise ArtifactError(f"parameter {key}={value!r} cannot be saved as JSON")
    return params


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_regressor(reg: ForecastRegressor, directory: str | Path) -> Path:
    """Write ``weights.safetensors`` and ``regressor.json`` into ``directory``."""
    from safetensors.torch import save_file

    if not getattr(reg, "initialized_", False) or not hasattr(reg, "module_"):
        raise ArtifactError("the regressor is not fitted; fit it before saving")
    if reg.module is not ForecastNet or reg.train_split not in ("tail", None):
        raise ArtifactError("only ForecastRegressor with ForecastNet and the default "
                            "train_split can be saved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in reg.module_.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    save_file(state, str(weights))
    meta = {
        "format": FORMAT_VERSION,
        "class": "ForecastRegressor",
        "params": _json_params(reg),
        "train_split": reg.train_split,
        "n_features_in": int(reg.n_features_in_),
        "n_horizons": int(reg.n_horizons_),
        "weights": WEIGHTS_FILE,
        "sha256": sha256_file(weights),
        "torch": torch.__version__,
    }
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def load_regressor(directory: str | Path, device: str | None = None) -> ForecastRegressor:
    """Read a regressor written by `save_regressor`; refuse a tampered weights file.

    ``device`` overrides the saved device setting (e.g. ``"cpu"``).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    config = directory / CONFIG_FILE
    if not config.is_file():
        raise ArtifactError(f"{config} not found; is {directory} a saved regressor?")
    try:
        meta = json.loads(config.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{config}: malformed JSON ({exc.msg})") from None
    if meta.get("format") != FORMAT_VERSION or meta.get("class") != "ForecastRegressor":
        raise ArtifactError(f"{config}: not a ForecastRegressor of format {FORMAT_VERSION}")
    weights = directory / Path(meta["weights"]).name
    if not weights.is_file():
        raise ArtifactError(f"{weights} not found")
    if sha256_file(weights) != meta["sha256"]:
        raise ArtifactError(f"{weights}: sha256 differs from the one recorded in {config}; "
                            "the weights file was changed or corrupted")
    params = dict(meta["params"])
    if device is not None:
        params["device"] = device
    reg = ForecastRegressor(train_split=meta.get("train_split", "tail"), **params)
    reg.n_features_in_ = int(meta["n_features_in"])
    reg.n_horizons_ = int(meta["n_horizons"])
    reg.initialize()
    state = load_file(str(weights), device=str(reg.device_))
    reg.module_.load_state_dict(state)
    reg.target_stats_set_ = True
    return reg
