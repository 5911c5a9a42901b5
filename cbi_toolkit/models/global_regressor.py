"""The skorch regressor around `GlobalForecastNet`: `ForecastRegressor` (the same loss,
time-ordered validation tail, schedule, early stopping and seeding) on `PooledWindows`.

``y`` is ``[n, C * H]`` (commodity-major); the target statistics, the loss and its
horizon mask work per column, so each commodity and horizon is standardised by its
own training mean and std. Batches gather each commodity's windows from its own
feature matrix into ``[b, C, window, F]``.
"""

from __future__ import annotations

import numpy as np
import torch
from skorch import NeuralNetRegressor

from cbi_toolkit.errors import SpecError
from cbi_toolkit.features.pooled import PooledWindows, as_pooled
from cbi_toolkit.models.batching import WindowBatches, WindowDataset
from cbi_toolkit.models.checks import check_inputs, check_targets
from cbi_toolkit.models.global_network import GlobalForecastNet
from cbi_toolkit.models.regressor import ForecastRegressor


class PooledDataset(WindowDataset):
    """Samples of a `PooledWindows` (and optional targets ``y [n, C * H]``), by position."""

    _coerce = staticmethod(as_pooled)


class PooledBatches(WindowBatches):
    """Iterate ``(X_batch [b, C, window, F], y_batch [b, C * H] or None)`` on ``device``;
    every commodity's feature matrix moves to the device once (zero-padded to ``F``).
    Order, shuffling and the training ``stride`` as `WindowBatches`'."""

    def _to_device(self, pooled: PooledWindows) -> None:
        width = pooled.n_features
        self.values, self.ends = [], []
        for m in pooled.members:
            values = np.zeros((len(m.values), width), dtype=np.float32)
            values[:, :m.values.shape[1]] = m.values
            self.values.append(torch.as_tensor(values).to(self.device))
            self.ends.append(torch.as_tensor(m.ends).to(self.device))
        self.offsets = torch.as_tensor(pooled.members[0].offsets()).to(self.device)

    def __iter__(self):
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            xb = torch.stack([v[e[idx, None] + self.offsets]
                              for v, e in zip(self.values, self.ends, strict=True)], dim=1)
            yield xb, (None if self.y is None else self.y[idx])


def check_pooled(X, y=None) -> tuple[PooledWindows, np.ndarray | None]:
    """`PooledWindows` with finite features and ``y [n, C * H]`` (NaN only where unknown)."""
    pooled = as_pooled(X)
    for c, member in enumerate(pooled.members):
        try:
            check_inputs(member)
        except ValueError as exc:
            raise ValueError(f"commodity {c}: {exc}") from None
    if y is None:
        return pooled, None
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 2 or len(y) != len(pooled) or y.shape[1] % len(pooled.members):
        raise ValueError(f"y must be [n_samples, n_commodities * n_horizons] with n_samples="
                         f"{len(pooled)} and {len(pooled.members)} commodities, got {y.shape}")
    return pooled, check_targets(y)


class GlobalForecastRegressor(ForecastRegressor):
    """`ForecastRegressor` for `GlobalForecastNet` on `PooledWindows`.

    Build it with ``module=GlobalForecastNet`` (`pooled_regressor_from_spec` does);
    ``n_features``, ``n_horizons`` (per commodity) and ``n_commodities`` come from the
    data at fit time. Fitted attributes as `ForecastRegressor`'s plus ``n_commodities_``.
    """

    _sizes_from_data = (*ForecastRegressor._sizes_from_data, ("n_commodities", "n_commodities_"))
    _dataset, _batches = PooledDataset, PooledBatches
    _check_inputs = staticmethod(check_pooled)

    def _set_shapes(self, X: PooledWindows, y: np.ndarray) -> None:
        self.n_features_in_ = X.n_features
        self.n_commodities_ = len(X.members)
        self.n_horizons_ = y.shape[1] // self.n_commodities_

    def warm_start_from(self, other, max_epochs=None):
        self.n_commodities_ = other.n_commodities_
        return super().warm_start_from(other, max_epochs)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        X, y = check_pooled(X, y)
        if not self.initialized_:
            self._set_shapes(X, y)
        elif X.n_features != self.n_features_in_ or len(X.members) != self.n_commodities_:
            raise ValueError(f"X has {len(X.members)} commodities of {X.n_features} features, "
                             f"the net was built for {self.n_commodities_} of "
                             f"{self.n_features_in_}")
        return NeuralNetRegressor.partial_fit(self, X, y, classes=classes, **fit_params)

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sigma of the forward log return, each ``[n, C * H]``."""
        self.check_is_fitted()
        X, _ = check_pooled(X)
        mu, sigma = self.forward(X, training=False)
        return mu.numpy(), sigma.numpy()


def pooled_regressor_from_spec(model_cfg, training_cfg, n_horizons: int | None = None,
                               valid_gap: int = 0, **overrides) -> GlobalForecastRegressor:
    """A `GlobalForecastRegressor` with the spec's model and training settings."""
    from cbi_toolkit.pipeline import regressor_from_spec

    if getattr(training_cfg, "bptt_steps", None) is not None:
        raise SpecError("training.bptt_steps: the pooled net trains through the whole window; "
                        "remove bptt_steps from this spec")
    if getattr(model_cfg, "ensemble", 1) > 1:
        raise SpecError("model.ensemble: the pooled net is a single net; remove ensemble "
                        "from this spec")
    if getattr(model_cfg, "target_scale", "none") != "none":
        raise SpecError("model.target_scale: the pooled net learns the log returns themselves; "
                        "remove target_scale from this spec")
    params = regressor_from_spec(model_cfg, training_cfg, n_horizons, valid_gap,
                                 **overrides).get_params(deep=False)
    return GlobalForecastRegressor(**{**params, "module": GlobalForecastNet})
