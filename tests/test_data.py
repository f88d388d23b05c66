"""fastgen.data: embedded datasets, every file reader (written here into tmp_path), the split,
ImageData validation, every DataError path, and the dequantization / bits-per-dim accounting."""

import dataclasses
import gzip
import math
import pickle
import sys

import numpy as np
import pytest
import torch

from fastgen.data import (
    DATASETS,
    DataError,
    ImageData,
    bits_per_dim,
    dequantize,
    discrete_nll_from_density,
    embedded,
    load_images,
    to_unit,
)
from fastgen.data.split import split_indices

RNG = np.random.default_rng(1234)


def _u8(*shape):
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


# ----------------------------------------------------------------------------- embedded: digits


def test_datasets_names():
    assert DATASETS == ("digits", "faces")


def test_digits_sizes_levels_labels():
    data = load_images("digits")
    assert isinstance(data, ImageData)
    assert data.train.shape == (1438, 1, 8, 8) and data.test.shape == (359, 1, 8, 8)
    assert data.train.dtype == torch.uint8 and data.levels == 17
    assert data.shape == (1, 8, 8) and data.dims == 64 and data.num_classes == 10
    both = torch.cat([data.train, data.test])
    assert int(both.min()) == 0 and int(both.max()) == 16
    assert data.train_labels.dtype == torch.int64 and data.train_labels.shape == (1438,)
    # Stratified: every class gives 20% (+-1) of its images to the test set.
    counts = torch.bincount(torch.cat([data.train_labels, data.test_labels]), minlength=10)
    test_counts = torch.bincount(data.test_labels, minlength=10)
    assert counts.sum() == 1797
    assert ((test_counts.float() - 0.2 * counts.float()).abs() <= 1).all()
    assert repr(data) == "ImageData(name='digits', train=1438x1x8x8, test=359x1x8x8, levels=17, classes=10)"


def test_digits_split_depends_only_on_seed():
    a, b = load_images("digits"), load_images("digits", seed=0)
    assert torch.equal(a.train, b.train) and torch.equal(a.test_labels, b.test_labels)
    c = load_images("digits", seed=1)
    assert c.test.shape == a.test.shape and not torch.equal(c.test, a.test)
    d = load_images("digits", test_fraction=0.5)
    assert len(d.test) == 899 and len(d.train) == 898  # round half up: 898.5 -> 899
    torch.manual_seed(99)  # global RNG state does not matter
    assert torch.equal(load_images("digits").test, a.test)


def test_digits_matches_sklearn_loader(monkeypatch):
    """The fast path (reading sklearn's CSV) gives exactly sklearn.datasets.load_digits()."""
    pytest.importorskip("sklearn")
    fast = embedded.load_digits()
    monkeypatch.setattr(embedded, "_digits_csv", lambda: None)
    slow = embedded.load_digits()
    assert np.array_equal(fast.images, slow.images) and np.array_equal(fast.labels, slow.labels)


def test_digits_missing_sklearn(monkeypatch):
    monkeypatch.setattr(embedded, "_digits_csv", lambda: None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match="pip install scikit-learn"):
        load_images("digits")


# ------------------------------------------------------------------------------ embedded: faces


def test_faces():
    pytest.importorskip("skimage")
    data = load_images("faces")
    assert data.train.shape == (80, 1, 25, 25) and data.test.shape == (20, 1, 25, 25)
    assert data.levels == 256 and data.train_labels is None and data.num_classes is None
    assert int(torch.cat([data.train, data.test]).max()) == 255
    assert "classes" not in repr(data)


def test_faces_missing_skimage(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(DataError, match="pip install scikit-image"):
        load_images("faces")


# ------------------------------------------------------------------------------- folder of images


@pytest.fixture
def Image():
    return pytest.importorskip("PIL.Image")


def test_folder_gray_png(tmp_path, Image):
    arrays = [_u8(6, 5) for _ in range(10)]
    for i, a in enumerate(arrays):
        Image.fromarray(a, "L").save(tmp_path / f"img{i:02d}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "._img00.png").write_bytes(b"macOS resource fork, skipped")
    data = load_images(str(tmp_path), test_fraction=0.3, seed=0)
    assert data.shape == (1, 6, 5) and data.levels == 256 and data.train_labels is None
    assert len(data.train) == 7 and len(data.test) == 3
    got = sorted(x.numpy().tobytes() for x in torch.cat([data.train, data.test])[:, 0])
    assert got == sorted(a.tobytes() for a in arrays)  # pixel values survive exactly
    assert load_images(tmp_path).name == str(tmp_path.resolve())  # a Path works too (kept absolute)


def test_folder_mixed_modes_become_rgb(tmp_path, Image):
    gray, rgb, rgba = _u8(4, 4), _u8(4, 4, 3), _u8(4, 4, 4)
    Image.fromarray(gray, "L").save(tmp_path / "a.png")
    Image.fromarray(rgb, "RGB").save(tmp_path / "b.bmp")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c.png")
    data = load_images(tmp_path, test_fraction=0.34)
    assert data.shape == (3, 4, 4)
    allx = {x.numpy().tobytes(): x.numpy() for x in torch.cat([data.train, data.test])}
    expected = [np.stack([gray] * 3), rgb.transpose(2, 0, 1), rgba[..., :3].transpose(2, 0, 1)]
    for e in expected:
        assert e.tobytes() in allx


def test_folder_gray_gif_and_jpg(tmp_path, Image):
    Image.fromarray(_u8(8, 8), "L").save(tmp_path / "a.gif")
    Image.fromarray(_u8(8, 8), "L").save(tmp_path / "b.jpg")
    Image.fromarray(_u8(8, 8), "L").convert("P").save(tmp_path / "c.png")
    assert load_images(tmp_path).shape == (1, 8, 8)


def test_folder_label_subfolders(tmp_path, Image):
    for label, n in (("cat", 5), ("dog", 7), ("empty", 0)):
        (tmp_path / label).mkdir()
        for i in range(n):
            pixels = np.full((3, 3, 3), 40 * len(label) + i, np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    data = load_images(tmp_path, test_fraction=0.25)
    assert data.class_names == ("cat", "dog") and data.num_classes == 2
    assert len(data.test) == 3 and sorted(data.test_labels.tolist()) in ([0, 1, 1], [0, 0, 1])
    labels = torch.cat([data.train_labels, data.test_labels])
    assert torch.bincount(labels).tolist() == [5, 7]
    assert "classes=2" in repr(data)


def test_folder_size_mismatch_names_file(tmp_path, Image):
    Image.fromarray(_u8(4, 4)).save(tmp_path / "a.png")
    Image.fromarray(_u8(4, 4)).save(tmp_path / "b.png")
    Image.fromarray(_u8(5, 4)).save(tmp_path / "c.png")  # 4 wide, 5 high
    with pytest.raises(DataError, match=r"c\.png: image size 4x5 .* differs from 4x4"):
        load_images(tmp_path)


def test_folder_errors(tmp_path, Image, monkeypatch):
    with pytest.raises(DataError, match="no image files"):
        load_images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"broken\.png: cannot read"):
        load_images(tmp_path)
    (tmp_path / "broken.png").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(DataError, match="16-bit"):
        load_images(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(DataError, match="pip install pillow"):
        load_images(tmp_path)


# ------------------------------------------------------------------------------------ npy / npz


def test_npy_layouts(tmp_path):
    nhw, nchw = _u8(10, 7, 6), _u8(10, 3, 7, 6)
    np.save(tmp_path / "nhw.npy", nhw)
    np.save(tmp_path / "nchw.npy", nchw)
    np.save(tmp_path / "nhwc.npy", nchw.transpose(0, 2, 3, 1))
    np.save(tmp_path / "gray_last.npy", nhw[..., None])
    assert load_images(tmp_path / "nhw.npy").shape == (1, 7, 6)
    assert load_images(tmp_path / "gray_last.npy").shape == (1, 7, 6)
    a, b = load_images(tmp_path / "nchw.npy"), load_images(tmp_path / "nhwc.npy")
    assert a.shape == b.shape == (3, 7, 6)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    split_train, _ = split_indices(10, None, 0.2, 0)
    assert torch.equal(a.train, torch.from_numpy(nchw[split_train]))


def test_npy_float_and_int_are_quantized(tmp_path):
    x = _u8(5, 4, 4)
    np.save(tmp_path / "f.npy", x.astype(np.float32) / 255)
    np.save(tmp_path / "i.npy", x.astype(np.int64))
    for name in ("f.npy", "i.npy"):
        d = load_images(tmp_path / name)
        assert d.levels == 256
        got = sorted(t.numpy().tobytes() for t in torch.cat([d.train, d.test]))
        assert got == sorted(a.tobytes() for a in x)


@pytest.mark.parametrize(
    "array, pattern",
    [
        (np.full((4, 3, 3), 2.0), r"float64 with values in \[2.0, 2.0\].*divide by 255"),
        (np.full((4, 3, 3), -0.5, np.float32), r"float32 with values in \[-0.5, -0.5\]"),
        (np.full((4, 3, 3), np.nan), "NaN"),
        (np.full((4, 3, 3), -1, np.int16), r"int16 with values in \[-1, -1\]"),
        (np.full((4, 3, 3), 300, np.int32), r"int32 with values in \[300, 300\]"),
        (np.zeros((4, 3, 3), bool), "dtype bool"),
        (np.zeros((4, 9), np.uint8), r"shape \(4, 9\)"),
        (np.zeros((0, 3, 3), np.uint8), "empty"),
    ],
)
def test_npy_bad_arrays(tmp_path, array, pattern):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError, match=pattern):
        load_images(tmp_path / "bad.npy")


def test_npy_object_and_corrupt(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy: cannot read"):
        load_images(tmp_path / "obj.npy")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"junk\.npy: cannot read"):
        load_images(tmp_path / "junk.npy")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"junk\.npz: cannot read"):
        load_images(tmp_path / "junk.npz")


@pytest.mark.parametrize("keys", [("x", "y"), ("images", "labels"), ("arr_0", "arr_1")])
def test_npz_single_array(tmp_path, keys):
    x, y = _u8(20, 1, 5, 5), np.repeat(np.arange(4), 5)
    np.savez(tmp_path / "d.npz", **{keys[0]: x, keys[1]: y})
    d = load_images(tmp_path / "d.npz", test_fraction=0.2)
    assert d.shape == (1, 5, 5) and d.num_classes == 4
    assert torch.bincount(d.test_labels).tolist() == [1, 1, 1, 1]  # stratified
    np.savez(tmp_path / "nolabels.npz", x)  # positional: arr_0 only
    assert load_images(tmp_path / "nolabels.npz").train_labels is None


def test_npz_given_split(tmp_path):
    xtr, xte = _u8(9, 6, 5, 3), _u8(3, 6, 5, 3)
    np.savez(tmp_path / "s.npz", x_train=xtr, x_test=xte, y_train=np.arange(9) % 3, y_test=np.arange(3))
    d = load_images(tmp_path / "s.npz", test_fraction=0.5, seed=7)  # split used as given
    assert torch.equal(d.train, torch.from_numpy(xtr.transpose(0, 3, 1, 2).copy()))
    assert torch.equal(d.test, torch.from_numpy(xte.transpose(0, 3, 1, 2).copy()))
    assert d.test_labels.tolist() == [0, 1, 2]
    np.savez(tmp_path / "nolab.npz", x_train=xtr, x_test=xte)
    assert load_images(tmp_path / "nolab.npz").test_labels is None


def test_npz_levels_key_declares_fewer_levels(tmp_path):
    x = (np.arange(20 * 25).reshape(20, 1, 5, 5) % 17).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, levels=17)
    d = load_images(tmp_path / "d.npz")
    assert d.levels == 17 and int(d.train.max()) <= 16
    np.savez(tmp_path / "s.npz", x_train=x[:15], x_test=x[15:], levels=np.array([17]))
    assert load_images(tmp_path / "s.npz").levels == 17
    np.savez(tmp_path / "plain.npz", x=x)
    assert load_images(tmp_path / "plain.npz").levels == 256  # no key: 8-bit


@pytest.mark.parametrize("arrays, pattern", [
    ({"x": np.full((2, 3, 3), 17), "levels": 17}, r"image values reach 17, but levels = 17 allows 0..16"),
    ({"x": np.zeros((2, 3, 3), np.float32), "levels": 17}, "with levels = 17 they must be integers in 0..16"),
    ({"x": np.zeros((2, 3, 3), np.uint8), "levels": 1}, r"\['levels'\]: expected one integer in 2..256"),
    ({"x": np.zeros((2, 3, 3), np.uint8), "levels": 300}, "expected one integer in 2..256"),
    ({"x": np.zeros((2, 3, 3), np.uint8), "levels": 16.0}, "expected one integer in 2..256"),
    ({"x": np.zeros((2, 3, 3), np.uint8), "levels": [4, 8]}, "expected one integer in 2..256"),
])
def test_npz_bad_levels(tmp_path, arrays, pattern):
    np.savez(tmp_path / "bad.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    with pytest.raises(DataError, match=pattern):
        load_images(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        ({"x_train": np.zeros((2, 3, 3), np.uint8)}, r"not \['x_test'\]"),
        (
            {
                "x_train": np.zeros((2, 3, 3), np.uint8),
                "x_test": np.zeros((2, 3, 3), np.uint8),
                "y_train": [0, 1],
            },
            "has y_train but not",
        ),
        (
            {"x_train": np.zeros((2, 3, 3), np.uint8), "x_test": np.zeros((2, 4, 4), np.uint8)},
            "x_test images are",
        ),
        ({"foo": np.zeros((2, 3, 3), np.uint8)}, r"found keys \['foo'\]"),
        ({"x": np.zeros((3, 3, 3), np.uint8), "y": [0, 1]}, "2 labels for 3 images"),
        ({"x": np.zeros((3, 3, 3), np.uint8), "y": [0.0, 1.0, 2.0]}, "labels have dtype float64"),
        ({"x": np.zeros((3, 3, 3), np.uint8), "y": [0, -1, 2]}, "labels must be >= 0"),
        ({"x": np.zeros((3, 3, 3), np.uint8), "y": np.zeros((3, 2), int)}, r"labels have shape \(3, 2\)"),
    ],
)
def test_npz_errors(tmp_path, arrays, pattern):
    np.savez(tmp_path / "bad.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    with pytest.raises(DataError, match=pattern):
        load_images(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------------ MNIST idx


def _idx_bytes(arr, magic):
    return magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in arr.shape) + arr.tobytes()


def _write_mnist(folder, n_train=6, n_test=4, gz=False, labels=True):
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": (_u8(n_train, 28, 28), 0x803),
        "t10k-images-idx3-ubyte": (_u8(n_test, 28, 28), 0x803),
    }
    if labels:
        files["train-labels-idx1-ubyte"] = (np.arange(n_train, dtype=np.uint8) % 10, 0x801)
        files["t10k-labels-idx1-ubyte"] = (np.arange(n_test, dtype=np.uint8) % 10, 0x801)
    for name, (arr, magic) in files.items():
        raw = _idx_bytes(arr, magic)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return {name: arr for name, (arr, _) in files.items()}


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    arrays = _write_mnist(tmp_path / "mnist", gz=gz)
    d = load_images(tmp_path / "mnist", test_fraction=0.5)
    assert d.train.shape == (6, 1, 28, 28) and d.test.shape == (4, 1, 28, 28) and d.levels == 256
    assert np.array_equal(d.train[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(d.test[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert d.train_labels.tolist() == [0, 1, 2, 3, 4, 5] and d.num_classes == 6


def test_mnist_torchvision_layout_and_no_labels(tmp_path):
    _write_mnist(tmp_path / "MNIST" / "raw", labels=False)
    d = load_images(tmp_path)
    assert len(d.train) == 6 and d.train_labels is None


def test_mnist_corrupt_files(tmp_path):
    arrays = _write_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(_idx_bytes(arrays["train-images-idx3-ubyte"], 0x801))
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte: corrupt or wrong idx file: magic number 0x0+801"
    ):
        load_images(tmp_path)
    images.write_bytes(_idx_bytes(arrays["train-images-idx3-ubyte"], 0x803)[:-10])
    with pytest.raises(DataError, match="corrupt idx file: header says shape"):
        load_images(tmp_path)
    images.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="shorter than the header"):
        load_images(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataError, match="cannot read this idx file"):
        load_images(tmp_path)


def test_mnist_label_problems(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(5, np.uint8), 0x801))
    with pytest.raises(DataError, match="5 labels for 6 images"):
        load_images(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="has one idx label file but not t10k-labels-idx1-ubyte"):
        load_images(tmp_path)


@pytest.mark.parametrize("remove", ["t10k-images-idx3-ubyte", "train-images-idx3-ubyte"])
def test_mnist_half_folder_names_the_missing_file(tmp_path, remove):
    _write_mnist(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / remove).unlink()
    with pytest.raises(DataError, match=rf"raw: holds .*-images-idx3-ubyte but not {remove} \(or {remove}.gz\)"):
        load_images(tmp_path)


# ------------------------------------------------------------------------------------- CIFAR-10


def _write_cifar(folder, n=2, n_test=3):
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        m = n_test if name == "test_batch" else n
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in RNG.integers(0, 10, m)],
            b"data": _u8(m, 3072),
            b"filenames": [b"x.png"] * m,
        }
        with open(folder / name, "wb") as f:  # protocol 2 like the real files; 5 for the test batch
            pickle.dump(batch, f, protocol=5 if name == "test_batch" else 2)
        batches[name] = batch
    return batches


def test_cifar10(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    for spec in (tmp_path, tmp_path / "cifar-10-batches-py"):
        d = load_images(spec)
        assert d.train.shape == (10, 3, 32, 32) and d.test.shape == (3, 3, 32, 32)
        assert d.num_classes == 10 and d.class_names[0] == "airplane"
    first = batches["data_batch_1"][b"data"][0]
    assert np.array_equal(d.train[0, 0].numpy().ravel(), first[:1024])  # red plane first
    assert np.array_equal(d.train[0, 2, 31].numpy(), first[-32:])  # last row of blue
    assert d.test_labels.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_errors(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3: missing CIFAR-10 batch file"):
        load_images(folder)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError, match=r"data_batch_3: cannot read .*refusing to load builtins.print"):
        load_images(folder)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DataError, match=r'not a CIFAR-10 batch: expected a dict with b"data" and b"labels"'):
        load_images(folder)
    wrong_size = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(wrong_size))
    with pytest.raises(DataError, match=r"expected uint8 \(N, 3072\)"):
        load_images(folder)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read this CIFAR-10 batch"):
        load_images(folder)


# ------------------------------------------------------------------------ load_images arguments


def test_load_images_argument_errors(tmp_path):
    with pytest.raises(DataError, match=r"no such file or folder: .*nope.*embedded datasets: digits, faces"):
        load_images(str(tmp_path / "nope"))
    (tmp_path / "a.csv").write_text("1,2")
    with pytest.raises(DataError, match=r"unsupported file type '\.csv'"):
        load_images(tmp_path / "a.csv")
    for bad in (0, 1, 1.5, -0.1, "a", None):
        with pytest.raises(DataError, match="test_fraction"):
            load_images("digits", test_fraction=bad)
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(DataError, match="seed"):
            load_images("digits", seed=bad)
    with pytest.raises(DataError, match="spec must be"):
        load_images(3)
    assert issubclass(DataError, ValueError)


def test_too_few_images_to_split(tmp_path):
    np.save(tmp_path / "one.npy", _u8(1, 2, 2))
    with pytest.raises(DataError, match="at least 2 images"):
        load_images(tmp_path / "one.npy")
    np.save(tmp_path / "two.npy", _u8(2, 2, 2))
    d = load_images(tmp_path / "two.npy", test_fraction=0.01)
    assert len(d.train) == 1 and len(d.test) == 1


# ----------------------------------------------------------------------------------- ImageData


def _data(**kw):
    base = {
        "name": "t",
        "train": torch.zeros(3, 1, 2, 2, dtype=torch.uint8),
        "test": torch.zeros(2, 1, 2, 2, dtype=torch.uint8),
        "levels": 4,
    }
    base.update(kw)
    return ImageData(**base)


def test_imagedata_properties_and_frozen():
    d = _data(
        train=torch.full((3, 2, 5, 4), 3, dtype=torch.uint8), test=torch.zeros(1, 2, 5, 4, dtype=torch.uint8)
    )
    assert d.shape == (2, 5, 4) and d.dims == 40 and d.num_classes is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.levels = 5
    labelled = _data(train_labels=torch.tensor([0, 4, 1]), test_labels=torch.tensor([2, 0]))
    assert labelled.num_classes == 5


@pytest.mark.parametrize(
    "kw, pattern",
    [
        ({"train": torch.full((3, 1, 2, 2), 4, dtype=torch.uint8)}, r"value 4 >= levels \(4\)"),
        ({"test": torch.zeros(0, 1, 2, 2, dtype=torch.uint8)}, "test set is empty"),
        ({"test": torch.zeros(2, 1, 3, 2, dtype=torch.uint8)}, r"test images are \(1, 3, 2\)"),
        ({"train": torch.zeros(3, 1, 2, 2)}, "uint8"),
        ({"train": torch.zeros(3, 2, 2, dtype=torch.uint8)}, "uint8 \\(N, C, H, W\\)"),
        ({"levels": 1}, "levels"),
        ({"levels": 300}, "levels"),
        ({"train_labels": torch.zeros(3, dtype=torch.int64)}, "both"),
        (
            {
                "train_labels": torch.zeros(2, dtype=torch.int64),
                "test_labels": torch.zeros(2, dtype=torch.int64),
            },
            r"shape \(3,\)",
        ),
        ({"train_labels": torch.full((3,), -1), "test_labels": torch.zeros(2, dtype=torch.int64)}, ">= 0"),
        (
            {
                "train_labels": torch.full((3,), 2),
                "test_labels": torch.zeros(2, dtype=torch.int64),
                "class_names": ("a", "b"),
            },
            "only 2 class names",
        ),
    ],
)
def test_imagedata_validation(kw, pattern):
    with pytest.raises(DataError, match=pattern):
        _data(**kw)


# ----------------------------------------------------------------------------------- the split


def test_split_indices():
    train, test = split_indices(10, None, 0.25, 3)
    assert len(test) == 3 and sorted(np.concatenate([train, test]).tolist()) == list(range(10))
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, test = split_indices(100, labels, 0.1, 0)
    assert np.bincount(labels[test]).tolist() == [5, 3, 2]
    assert np.array_equal(split_indices(100, labels, 0.1, 0)[1], test)


# -------------------------------------------------------------------------------- transforms


def test_to_unit():
    x = torch.tensor([0, 8, 16], dtype=torch.uint8)
    assert torch.equal(to_unit(x, 17), torch.tensor([0.0, 0.5, 1.0]))
    assert to_unit(x.long(), 17, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(DataError, match="integer levels"):
        to_unit(x.float(), 17)
    with pytest.raises(DataError, match="levels"):
        to_unit(x, 1)


def test_dequantize_range_and_statistics():
    levels = 17
    x = torch.randint(0, levels, (200_000,), dtype=torch.uint8)
    y = dequantize(x, levels, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) < 1.0
    assert torch.equal(torch.floor(y * levels).to(torch.uint8), x)  # each value stays in its bin
    u = y * levels - x.float()
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    again = dequantize(x, levels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, again)
    with pytest.raises(DataError, match="integer levels"):
        dequantize(y, levels)


def test_dequantize_top_level_stays_below_one():
    # In float32, 255 + u rounds to 256 for u > 1 - 2**-17; the result must still be < 1.
    x = torch.full((1_000_000,), 255, dtype=torch.uint8)
    y = dequantize(x, 256, generator=torch.Generator().manual_seed(1))
    assert float(y.max()) < 1.0 and float(y.min()) >= 255 / 256


def test_bits_per_dim_numbers():
    d = 3 * 32 * 32
    assert bits_per_dim(d * math.log(256), d) == pytest.approx(8.0)
    t = bits_per_dim(torch.tensor([math.log(2) * 64, 0.0]), 64)
    assert torch.allclose(t, torch.tensor([1.0, 0.0]))
    assert bits_per_dim(1.0, 1) == pytest.approx(1 / math.log(2))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DataError, match="dims"):
            bits_per_dim(1.0, bad)


def test_discrete_nll_from_density():
    # A model uniform on [0, 1)^D has log p = 0: exactly log2(levels) bits/dim.
    assert bits_per_dim(discrete_nll_from_density(0.0, 64, 17), 64) == pytest.approx(math.log2(17))
    # A density that is constant on each bin, p(y) = levels * P(floor(y * levels)), makes the
    # bound exact: -log p(y) + D log(levels) = -log P(x).
    levels, probs = 4, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    x = torch.tensor([[0, 3], [2, 1]], dtype=torch.uint8)  # N=2 examples, D=2
    y = dequantize(x, levels, dtype=torch.float64)
    log_p = torch.log(levels * probs[(y * levels).floor().long()]).sum(1)
    nll = discrete_nll_from_density(log_p, 2, levels)
    assert torch.allclose(nll, -torch.log(probs[x.long()]).sum(1))


def test_dequantize_takes_the_callers_noise():
    from fastgen.data import DataError, dequantize

    x = torch.tensor([[0, 3], [16, 7]], dtype=torch.uint8)
    u = torch.tensor([[0.25, 0.5], [0.999, 0.0]])
    torch.testing.assert_close(dequantize(x, 17, noise=u), (x.float() + u) / 17)
    with pytest.raises(DataError, match="noise must have the shape"):
        dequantize(x, 17, noise=torch.zeros(3))
