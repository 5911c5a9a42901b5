"""The estimator: `ForecastRegressor`, a `skorch.NeuralNetRegressor` around `ForecastNet`.

It

* takes ``X`` as `Windows` (or a 3D array) and gathers each batch by index from
  the 2D feature matrix, never materialising all windows (`models.batching`);
* validates on the time-ordered tail of the training samples (`TailSplit`),
  optionally after a gap, never on skorch's default (oldest) split;
* trains with AdamW, a warm-up then plateau (or cosine) learning-rate schedule
  (`models.callbacks`), gradient clipping, early stopping with in-memory best-weights
  restore, and a stop with a clear error when the loss becomes non-finite;
* predicts the mean (`predict`) or mean and sigma (`predict_dist`) of the
  forward log return per horizon;
* with ``target_vol_window`` w, learns each target divided by the trailing w-session
  volatility at its origin times sqrt(h) (``horizon_days``), read from the windows' price
  context, and scales its mean and sigma back (`target_scale`): volatile years then weigh
  no more in the loss than calm ones.

Each setting has one name, the estimator's own (``patience``, ``warmup``...): the
callbacks are built from them at ``initialize`` and are not parameters themselves.
``fit`` seeds a forked copy of torch's random state with ``seed`` (module init, dropout),
so a fit is reproducible and leaves the caller's random state as it was.
Saving and loading: `models.persistence`; building from a spec: `cbi_toolkit.pipeline`.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from skorch import NeuralNetRegressor
from skorch.callbacks import EarlyStopping

from cbi_toolkit.errors import CbiError
from cbi_toolkit.models.baselines import trailing_volatility
from cbi_toolkit.models.batching import TailSplit, WindowBatches, WindowDataset
from cbi_toolkit.models.callbacks import LR_SCHEDULES, WarmupCosine, WarmupPlateau
from cbi_toolkit.models.checks import check_inputs
from cbi_toolkit.models.device import AMP_DTYPES, resolve_device, resolve_precision, torch_threads
from cbi_toolkit.models.loss import GaussianForecastLoss
from cbi_toolkit.models.network import ForecastNet


class TrainingDivergedError(CbiError):
    """The training loss became NaN or infinite."""


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
                 threads: int | str | None = None, target_vol_window: int | None = None,
                 horizon_days: tuple[int, ...] | None = None, verbose: int = 1, **kwargs):
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
        self.target_vol_window = target_vol_window
        self.horizon_days = horizon_days

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

    def _get_params_callbacks(self, deep=True):
        """Only callbacks passed in ``callbacks`` are parameters: the default ones are built
        from this estimator's own settings (``patience``, ``warmup``, ``lr_schedule``) when
        it initializes, so each setting has one name and ``get_params`` builds nothing."""
        if not deep or self.callbacks in (None, "disable"):
            return {}
        params = {}
        for item in self.callbacks:
            name, cb = item if isinstance(item, tuple) else (type(item).__name__, item)
            params[f"callbacks__{name}"] = cb
            if cb is not None and hasattr(cb, "get_params"):
                params.update({f"callbacks__{name}__{k}": v for k, v in cb.get_params().items()})
        return params

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

    #: module sizes taken from the data at fit time: (module parameter, fitted attribute)
    _sizes_from_data = (("n_features", "n_features_in_"), ("n_horizons", "n_horizons_"))
    #: the dataset and batch iterator the data goes through
    _dataset, _batches = WindowDataset, WindowBatches

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        if not isinstance(self.module, torch.nn.Module):
            for key, attr in self._sizes_from_data:
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
        if isinstance(X, self._dataset):
            return X
        return self._dataset(X, y)

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
        return self._batches(dataset, batch_size, self.device_, shuffle=training,
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
        members = getattr(self.module_, "members", None) or [self.module_]  # `EnsembleNet`
        if self.grad_clip:  # each member of an ensemble as if it trained alone
            for net in members:
                torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip)
        if scaler is not None:
            scaler.step(self.optimizer_)
            scaler.update()
        else:
            self.optimizer_.step()
        # an ensemble's loss is its members' sum; the log shows their mean
        return {"loss": loss.detach() / len(members), "y_pred": y_pred}

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
    _check_inputs = staticmethod(check_inputs)  # X, y as the types this estimator takes

    def _set_shapes(self, X, y: np.ndarray) -> None:
        self.n_features_in_ = X.values.shape[1]
        self.n_horizons_ = y.shape[1]

    def fit(self, X, y, **fit_params):
        """Fit on `Windows` ``X`` and labelled targets ``y [n, n_horizons]``."""
        X, y = self._check_inputs(X, y)
        self._set_shapes(X, y)
        fresh = not self.warm_start or not self.initialized_
        with torch_threads(self.threads), self._own_random_state(reseed=fresh):
            if fresh:
                self.initialize()
            else:  # warm start: keep the weights, refit the target statistics on this data
                self.target_stats_set_ = False
            self.partial_fit(X, y, **fit_params)
        return self

    @contextlib.contextmanager
    def _own_random_state(self, reseed: bool):
        """torch's random state (module init, dropout) forked for the block: seeded with
        ``seed``, or (a warm start) continued from where this estimator left it; the
        caller's state is as it was afterwards."""
        device = resolve_device(self.device)
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            saved = getattr(self, "torch_rng_state_", None)
            if reseed or saved is None:
                torch.manual_seed(int(self.seed))
            else:
                torch.set_rng_state(saved[0])
                if cuda and saved[1] is not None:
                    torch.cuda.set_rng_state(saved[1], cuda[0])
            try:
                yield
            finally:
                self.torch_rng_state_ = (torch.get_rng_state(),
                                         torch.cuda.get_rng_state(cuda[0]) if cuda else None)

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
        with self._own_random_state(reseed=True):
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
        scale = self.target_scale(X)
        if scale is not None:
            y = (y / scale).astype(y.dtype)
        return super().partial_fit(X, y, classes=classes, **fit_params)

    def target_scale(self, X) -> np.ndarray | None:
        """``[n, n_horizons]``: what the targets are divided by for the net, the trailing
        ``target_vol_window``-session volatility of the daily log returns at each origin
        times sqrt(h); None when the net learns the log returns themselves."""
        if not self.target_vol_window:
            return None
        days = np.asarray(self.horizon_days or (), dtype=np.float64)
        if len(days) != self.n_horizons_:
            raise ValueError(f"target_vol_window needs horizon_days, one per horizon "
                             f"({self.n_horizons_}), got {self.horizon_days!r}")
        vol = trailing_volatility(X, int(self.target_vol_window))
        if not np.all(np.isfinite(vol) & (vol > 0)):
            raise ValueError(f"target_vol_window {self.target_vol_window}: some origins have no "
                             "positive trailing volatility (fewer than two daily returns before "
                             "them in the windows' price context)")
        return vol[:, None] * np.sqrt(days)

    def predict(self, X) -> np.ndarray:
        """Mean forward log return, ``[n, n_horizons]``."""
        return self.predict_dist(X)[0]

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sigma of the forward log return, each ``[n, n_horizons]``."""
        self.check_is_fitted()  # NotInitializedError, a NotFittedError, before any input work
        X, _ = check_inputs(X)
        mu, sigma = self.forward(X, training=False)
        scale = self.target_scale(X)
        if scale is None:
            return mu.numpy(), sigma.numpy()
        return mu.numpy() * scale, sigma.numpy() * scale
