"""How the net sees the samples: a torch dataset of `Windows` (`WindowDataset`), batches
gathered by index on the device (`WindowBatches`), and the time-ordered validation tail
(`TailSplit`), never skorch's default split."""

from __future__ import annotations

import math

import numpy as np
import torch

from cbi_toolkit.features.windows import as_windows


class WindowDataset(torch.utils.data.Dataset):
    """Samples of a `Windows` (and optional targets ``y [n, H]``), by position."""

    _coerce = staticmethod(as_windows)  # X as the windows type this dataset holds

    def __init__(self, X, y=None):
        self.X = self._coerce(X)
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
        return type(self)(self.X[idx], None if self.y is None else self.y[idx])


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
        self._to_device(dataset.X)
        self.y = None if dataset.y is None else torch.as_tensor(dataset.y).to(device)

    def _to_device(self, win) -> None:
        """The windows' feature matrix, window ends and row offsets, on the device once."""
        self.values = torch.as_tensor(np.ascontiguousarray(win.values, dtype=np.float32)
                                      ).to(self.device)
        self.ends = torch.as_tensor(win.ends).to(self.device)
        self.offsets = torch.as_tensor(win.offsets()).to(self.device)

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
