"""Shared fixtures: tiny face videos made from photos that installed packages ship."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

os.environ.setdefault("MPLBACKEND", "Agg")


def face_frames(n: int = 6, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames (size × size RGB) of scikit-image's astronaut, drifting slowly."""
    import cv2
    from skimage import data

    img = data.astronaut()[0:320, 96:416]  # 320 × 320 around the face
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(n):
        dx, dy = 6 * np.sin(t / 3), 4 * np.cos(t / 4)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = cv2.warpAffine(img, m, (320, 320), borderMode=cv2.BORDER_REFLECT)
        frame = cv2.resize(moved, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        frames.append(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a module: small CPU convolutions run much faster so on shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def face_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``folder``-layout dataset: 2 real face videos, 1 fake, 1 faceless video, 1 corrupt file."""
    from fmkit.data.video import write_video

    root = tmp_path_factory.mktemp("faces_ds")
    write_video(root / "real" / "a.mp4", face_frames(seed=0))
    write_video(root / "real" / "b.mp4", face_frames(seed=1))
    fake = [f.copy() for f in face_frames(seed=2)]
    for f in fake:
        f[30:50, 35:60] = f[30:50, 35:60] // 2 + 60  # a crude manipulated patch
    write_video(root / "fake" / "patch" / "a_x.mp4", fake)
    noise = np.random.default_rng(3).integers(0, 255, (6, 96, 96, 3), dtype=np.uint8)
    write_video(root / "real" / "noface.mp4", list(noise))
    (root / "real" / "corrupt.mp4").write_bytes(b"this is not a video" * 100)
    return root


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ``fmkit synth`` dataset: 3 identities, 4 frames of 96 px per video."""
    from fmkit.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth") / "data", videos=3, frames=4, size=96, seed=0, progress=False)


@pytest.fixture(scope="session")
def synth_faces(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The faces folder of ``tiny_synth``: 4 crops of 64 px per video, with ground-truth masks."""
    from fmkit.data.index import build_index
    from fmkit.data.preprocess import preprocess

    out = tmp_path_factory.mktemp("synth_faces")
    preprocess(
        build_index(tiny_synth, "folder").df, out, root=tiny_synth, cfg={"frames": 4, "size": 64}, progress=False
    )
    return out


class PixelVAE:
    """A stand-in VAE for explanation tests: the identity on a coarse grid of cell means, so that latent
    perturbations move known image regions (encode: z = (cell means − 0.5) / s with std 1; decode
    upsamples the cells)."""

    def __init__(self, size: int = 32, grid: int = 8, s: float = 0.1) -> None:
        self.size, self.grid, self.s = size, grid, s

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = ((F.adaptive_avg_pool2d(x, self.grid) - 0.5) / self.s).flatten(1)
        return mu, torch.zeros_like(mu)

    def decode(self, z: Tensor) -> Tensor:
        cells = 0.5 + self.s * z.view(-1, 3, self.grid, self.grid)
        return F.interpolate(cells, size=(self.size, self.size), mode="nearest").clamp(0, 1)


def run_ranks(fn: Callable[[], object], out: Path, world: int = 2, timeout: float = 180) -> None:
    """Run ``fn`` in ``world`` forked processes with the environment torchrun gives its ranks (gloo on CPU).

    A rank that raises writes its traceback to ``out/rank<r>.err``; every rank must exit 0.
    """
    import socket
    import traceback

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def rank_main(rank: int) -> None:
        os.environ.update(
            {
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(world),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            }
        )
        torch.set_num_threads(1)  # as DataLoader workers do after a fork
        try:
            fn()
        except BaseException:
            (out / f"rank{rank}.err").write_text(traceback.format_exc())
            raise

    fork = torch.multiprocessing.get_context("fork")
    procs = [fork.Process(target=rank_main, args=(r,)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
        if p.is_alive():
            p.kill()
    errors = "".join(f.read_text() for f in out.glob("rank*.err"))
    assert [p.exitcode for p in procs] == [0] * world, errors[-3000:]
