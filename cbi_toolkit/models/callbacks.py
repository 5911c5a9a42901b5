"""The regressor's learning-rate schedules, as skorch callbacks."""

from __future__ import annotations

import math

from skorch.callbacks import Callback


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
