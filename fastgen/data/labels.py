"""What ImageData and AudioData share: the checks of levels and labels, and the class count."""

from __future__ import annotations

import torch

from fastgen.data.errors import DataError


class SplitChecks:
    """Mixin of the train/test dataclasses (fields ``name``, ``train``, ``test``, ``levels``,
    ``train_labels``, ``test_labels``, ``class_names``)."""

    def _check_levels(self) -> None:
        levels = self.levels
        if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 256:
            raise DataError(f"{self.name}: levels must be an integer in [2, 256], got {self.levels!r}")

    def _check_labels(self) -> None:
        """Labels: both or neither; int64 (N,) per split, >= 0, within the class names."""
        if (self.train_labels is None) != (self.test_labels is None):
            raise DataError(f"{self.name}: train and test labels must both be given or both be None")
        if self.train_labels is None:
            return
        for split, x, y in (("train", self.train, self.train_labels), ("test", self.test, self.test_labels)):
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != x.shape[:1]:
                what = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
                raise DataError(f"{self.name}: {split} labels must be an int64 tensor of shape ({len(x)},), got {what}")
            if int(y.min()) < 0:
                raise DataError(f"{self.name}: {split} labels must be >= 0")
        if self.class_names is not None and self._num_classes_found() > len(self.class_names):
            raise DataError(f"{self.name}: labels go up to {self._num_classes_found() - 1} but there are only "
                            f"{len(self.class_names)} class names")

    def _num_classes_found(self) -> int:
        """``1 + max label`` over both splits (0 without labels)."""
        if self.train_labels is None:
            return 0
        return 1 + max(int(self.train_labels.max()), int(self.test_labels.max()))

    @property
    def num_classes(self) -> int | None:
        """Number of classes (``len(class_names)`` or ``1 + max label``); None without labels."""
        if self.train_labels is None:
            return None
        return len(self.class_names) if self.class_names is not None else self._num_classes_found()
