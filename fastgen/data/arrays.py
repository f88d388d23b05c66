"""Turn numpy arrays from any reader into the common form: uint8 (N, C, H, W) plus int64 labels.

Every format reader (``folder``, ``numpy_files``, ``idx``, ``cifar``, ``embedded``) returns a
:class:`Loaded`; ``images.load_images`` then splits it (when no split is given) and builds the
``ImageData``. Nothing here is specific to one file format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastgen.data.errors import DataError

#: Channel counts that mark a trailing axis as channels (gray, RGB, RGBA).
CHANNEL_COUNTS = (1, 3, 4)


@dataclass
class Loaded:
    """What a reader found, before splitting.

    Attributes
    ----------
    images : np.ndarray
        uint8 (N, C, H, W).
    labels : np.ndarray or None
        int64 (N,).
    levels : int
        Number of intensity levels (256 for 8-bit data).
    test_images, test_labels : np.ndarray or None
        The given test split, when the source has one (then ``images`` is the train split).
    class_names : tuple of str or None
        Names of the label values 0..K-1, when the source names them (folder of images).
    """

    images: np.ndarray
    labels: np.ndarray | None
    levels: int = 256
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None


def _describe_range(arr: np.ndarray) -> str:
    if arr.size == 0:
        return "empty"
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        return "contains NaN or inf"
    return f"values in [{arr.min()}, {arr.max()}]"


def to_uint8(arr: np.ndarray, source: str) -> np.ndarray:
    """Check the dtype and value range of ``arr`` and return it as uint8 (256 levels).

    Parameters
    ----------
    arr : np.ndarray
        Any shape. uint8 is taken as is; other integer dtypes must lie in [0, 255]; floats
        must be finite and lie in [0, 1] and are quantized as ``round(x * 255)``.
    source : str
        Where the array came from (path, key), for error messages.

    Returns
    -------
    np.ndarray
        uint8, same shape.
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise DataError(
            f"{source}: images have dtype {arr.dtype}; expected uint8 (0..255) or float in [0, 1]"
        )
    if arr.size == 0:
        raise DataError(f"{source}: the image array is empty (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 255:
            raise DataError(
                f"{source}: images have dtype {arr.dtype} with values in [{lo}, {hi}]; "
                "expected uint8 (0..255) or float in [0, 1]"
            )
        return arr.astype(np.uint8)
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        finite = np.isfinite(arr).all()
        hint = "; divide by 255 first" if finite and arr.min() >= 0 and arr.max() <= 255 else ""
        raise DataError(
            f"{source}: images have dtype {arr.dtype} with {_describe_range(arr)}; float images must "
            f"lie in [0, 1] (they are quantized to 256 levels){hint}"
        )
    return np.rint(arr * 255.0).astype(np.uint8)


def to_nchw(arr: np.ndarray, source: str) -> np.ndarray:
    """Bring an image array into (N, C, H, W) layout.

    Parameters
    ----------
    arr : np.ndarray
        (N, H, W) (one channel), (N, H, W, C) or (N, C, H, W). The last axis is taken as channels
        when its size is 1, 3 or 4 and the size of axis 1 is not; otherwise axis 1 is channels.
    source : str
        For error messages.

    Returns
    -------
    np.ndarray
        (N, C, H, W), C-contiguous, same dtype.
    """
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[-1] in CHANNEL_COUNTS and arr.shape[1] not in CHANNEL_COUNTS:
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(
            f"{source}: images have shape {tuple(arr.shape)}; expected (N, H, W), (N, H, W, C) "
            "or (N, C, H, W)"
        )
    if 0 in arr.shape:
        raise DataError(f"{source}: the image array is empty (shape {tuple(arr.shape)})")
    return np.ascontiguousarray(arr)


def images_from_array(arr, source: str) -> np.ndarray:
    """Any supported array to uint8 (N, C, H, W): layout first (:func:`to_nchw`), then values
    (:func:`to_uint8`)."""
    return to_uint8(to_nchw(np.asarray(arr), source), source)


def labels_from_array(arr, n: int, source: str) -> np.ndarray:
    """Validate labels and return them as int64 (N,).

    Parameters
    ----------
    arr : array-like
        Integer labels, shape (N,) or (N, 1), values >= 0.
    n : int
        Number of images they must match.
    source : str
        For error messages.
    """
    arr = np.asarray(arr)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{source}: labels have shape {tuple(arr.shape)}; expected ({n},)")
    if len(arr) != n:
        raise DataError(f"{source}: {len(arr)} labels for {n} images")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{source}: labels have dtype {arr.dtype}; expected integers")
    if n and arr.min() < 0:
        raise DataError(f"{source}: labels must be >= 0 (found {arr.min()})")
    return arr.astype(np.int64)
