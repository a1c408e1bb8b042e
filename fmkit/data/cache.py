"""The packed crop cache: every face crop of a faces manifest decoded once into one memory-mapped ``.npy`` file.

Decoding a JPEG crop costs far more than reading its pixels, and a training run decodes
each crop once per epoch. :func:`open_cache` decodes every crop of a manifest once into
one uint8 array (N, H, W, 3) — N manifest rows, H = W the crops' ``crop_size`` px, RGB —
saved as ``.npy`` and read back with ``numpy.load(mmap_mode="r")``: the pages come from
the OS page cache, are shared by every DataLoader worker and cost no memory of their own.
:class:`fmkit.data.datasets.FrameDataset` and :class:`~fmkit.data.datasets.ClipDataset`
(``cache=``) then read a crop's pixels from the array instead of decoding its JPEG; they
store the decoded pixels themselves (no resize: the crops keep their stored size and the
transform resizes as before), so items are bit-identical with and without the cache.

Where (``data.cache`` of a training config, or the ``where`` argument):

* ``auto``: the faces folder itself, ``FACES/crops.<key>.npy``, when it is writable (it is
  fmkit's own output, written by ``fmkit preprocess``, not the raw dataset); otherwise the
  user cache, ``$XDG_CACHE_HOME/fmkit`` (default ``~/.cache/fmkit``), as
  ``crops-<folder name>-<hash of its absolute path>.<key>.npy``. It is built only when it
  fits: the crops must share one size and the disk must keep 10 % of the file (at least
  64 MiB) free after it; otherwise a warning says why and the crops are decoded as before.
* a folder: the cache file is kept there (the same ``crops-<folder name>-<hash>`` naming,
  so one folder can serve several faces folders); a cache that cannot be built there is
  an FmkitError.

Key: ``<key>`` is a hash of the manifest's contents (every column of every row, so a new
``fmkit preprocess`` run gives a new key), the crop size and the format version; a cache
of another key is stale: the new one is built (decoded in threads, written atomically
through :func:`fmkit.io.atomic_path`, under a lock on its folder so that concurrent
processes, e.g. the ranks of a torchrun job, build it once) and stale files of the same
faces folder are removed. Crops rewritten in place without a new manifest are not noticed
(``fmkit preprocess`` always rewrites the manifest).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fmkit.errors import FmkitError
from fmkit.io import atomic_path

__all__ = ["AUTO", "PackedCrops", "cache_file", "manifest_key", "open_cache"]

AUTO = "auto"
VERSION = 1
#: Free disk space an ``auto`` cache leaves: this fraction of the file, at least MIN_FREE bytes.
FREE_FRACTION, MIN_FREE = 0.10, 64 * 2**20
#: Crops decoded per chunk while building (each chunk's images are held in memory at once).
CHUNK = 256


class PackedCrops:
    """Decoded crops of a manifest, memory-mapped read-only: ``array`` (N, H, W, 3) uint8, RGB.

    ``index[crop_path]`` is the row of a crop (the manifest's row order). The array is
    opened lazily in each process: pickling (DataLoader workers under ``spawn``) sends the
    path, not the pixels.
    """

    def __init__(self, path: str | os.PathLike, crop_paths: Sequence[str]) -> None:
        self.path = Path(path)
        self.index: dict[str, int] = {str(p): k for k, p in enumerate(crop_paths)}
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        """The memory-mapped array (N, H, W, 3) uint8."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def rows(self, crop_paths: Sequence[str]) -> np.ndarray:
        """Rows (int64) of ``crop_paths``; FmkitError naming the first path the cache does not hold."""
        try:
            return np.array([self.index[str(p)] for p in crop_paths], dtype=np.int64)
        except KeyError as err:
            raise FmkitError(
                f"crop {err.args[0]} is not in the packed cache {self.path}: the cache belongs to another manifest"
            ) from None

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}


def manifest_key(df: pd.DataFrame, size: int) -> str:
    """The cache key of a manifest (its every column and row) and crop size: 16 hex digits."""
    h = hashlib.sha256(f"fmkit-crops-v{VERSION}:{size}:{','.join(map(str, df.columns))}:".encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fmkit"


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK)


def _stem(root: Path, folder: Path) -> str:
    """``crops`` inside the faces folder; ``crops-<name>-<path hash>`` elsewhere (a folder shared by several)."""
    root, folder = root.resolve(), folder.resolve()
    if folder == root:
        return "crops"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in root.name) or "faces"
    return f"crops-{name}-{digest}"


def cache_file(root: str | os.PathLike, where: str | os.PathLike, key: str) -> Path:
    """The cache file of faces folder ``root`` for ``where`` (``auto`` or a folder) and ``key``."""
    root = Path(root)
    if str(where) == AUTO:
        folder = root if _writable(root) else _user_cache()
    else:
        folder = Path(where).expanduser()
    return folder / f"{_stem(root, folder)}.{key}.npy"


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (flock on its descriptor; no lock where unsupported)."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _fresh(path: Path, shape: tuple[int, ...]) -> bool:
    """``path`` holds a uint8 array of ``shape`` (a readable .npy header)."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.dtype == np.uint8 and arr.shape == shape


def _build(paths: Sequence[str], root: Path, path: Path, size: int, progress: bool) -> None:
    """Decode every crop into ``path`` (N, size, size, 3) uint8, atomically."""
    from fmkit.data.datasets import read_rgb  # datasets imports this module

    with atomic_path(path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        threads = min(8, os.cpu_count() or 1)
        bar = tqdm(total=len(paths), desc="packing crops", disable=not progress)
        with ThreadPoolExecutor(threads) as pool, bar:
            for start in range(0, len(paths), CHUNK):
                chunk = paths[start : start + CHUNK]
                for k, (p, img) in enumerate(zip(chunk, pool.map(lambda p: read_rgb(root / p), chunk)), start):
                    if img.shape != (size, size, 3):
                        raise FmkitError(
                            f"crop {root / p} is {img.shape[1]}x{img.shape[0]} px, not the manifest's crop_size "
                            f"{size}: the packed cache needs every crop at its crop_size (use data.cache: null)"
                        )
                    arr[k] = img
                bar.update(len(chunk))
        arr.flush()
        del arr


def _fail(where: str | os.PathLike, message: str) -> None:
    """FmkitError for an explicit cache folder; a warning (decode JPEGs instead) for ``auto``."""
    if str(where) != AUTO:
        raise FmkitError(message)
    warnings.warn(f"{message}; decoding the JPEG crops instead (data.cache: auto)", stacklevel=3)


def open_cache(
    df: pd.DataFrame, root: str | os.PathLike, where: str | os.PathLike | None, *, progress: bool = False
) -> PackedCrops | None:
    """The packed cache of manifest ``df`` (crop paths relative to the faces folder ``root``), built when missing.

    ``where``: None (no cache: returns None), ``auto`` or a folder (see the module doc).
    ``auto`` returns None with a warning when the cache cannot be built (crops of several
    sizes, too little disk space, no writable folder); a folder raises FmkitError then.
    An empty manifest has no cache (None).
    """
    if where is None or not len(df):
        return None
    root = Path(root)
    sizes = pd.unique(df["crop_size"])
    if len(sizes) != 1:
        _fail(where, f"the crops of {root} have several sizes ({', '.join(map(str, sorted(sizes)))} px)")
        return None
    size = int(sizes[0])
    paths = df["crop_path"].astype(str).tolist()
    path = cache_file(root, where, manifest_key(df, size))
    shape = (len(paths), size, size, 3)
    if _fresh(path, shape):
        return PackedCrops(path, paths)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(where, f"cannot create the packed cache folder {path.parent}: {exc.strerror or exc}")
        return None
    if not _writable(path.parent):
        _fail(where, f"the packed cache folder {path.parent} is not writable")
        return None
    need = int(np.prod(shape)) + 128
    free = shutil.disk_usage(path.parent).free
    if free < need + max(int(need * FREE_FRACTION), MIN_FREE):
        _fail(
            where,
            f"the packed cache of {root} needs {need / 2**20:.0f} MiB and {path.parent} has "
            f"{free / 2**20:.0f} MiB free (10 % of the file, at least 64 MiB, is kept free)",
        )
        return None
    with _folder_lock(path.parent):
        if not _fresh(path, shape):  # another process may have built it while we waited
            _build(paths, root, path, size, progress)
        for stale in path.parent.glob(f"{_stem(root, path.parent)}.*.npy"):
            if stale != path:
                stale.unlink(missing_ok=True)
    return PackedCrops(path, paths)
