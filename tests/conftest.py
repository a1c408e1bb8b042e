"""Shared fixtures: tiny face videos made from photos that installed packages ship.

``make test`` runs the suite on 2 processes (pytest-xdist, ``--dist loadgroup``, the scheduler below):
the tests of one file run in one process, so that its module fixtures are built once, and the files
that use the session fixture ``tiny_pipeline`` run together in one process, first, as they take
longest, then the files of the tests marked ``slow``. Each process builds its own session fixtures in
its own temporary folder and runs torch on its share of the cores.
"""

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

#: Session fixtures whose test files run in one xdist worker, before the others (they take longest).
SHARED_FIXTURES = ("tiny_pipeline",)


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, each worker's torch (and the kernels and processes it starts) on its share of the cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker: the tests that use a shared fixture first, then those marked ``slow``, so that
    their files are scheduled first (the others fill the workers in around them)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = set(SHARED_FIXTURES)
        items.sort(
            key=lambda item: (
                not shared & set(getattr(item, "fixturenames", ())),
                item.get_closest_marker("slow") is None,
            )
        )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadgroup``: each test file to one worker (its module fixtures are built once), and the files
    that use a fixture of SHARED_FIXTURES to one worker together, first.

    xdist's own loadgroup reads ``xdist_group`` marks from suffixes it adds to node ids, which pytest 9.2
    no longer lets it change (pytest-dev/pytest-xdist#1386): such a suffix is honoured when present.
    """
    import re

    from xdist.scheduler import LoadScopeScheduling

    if config.getoption("dist") != "loadgroup":
        return None
    uses = re.compile(rf"\b({'|'.join(SHARED_FIXTURES)})\b")
    shared = {}
    for path in sorted((config.rootpath / "tests").glob("test_*.py")):
        found = uses.search(path.read_text(encoding="utf-8", errors="replace"))
        if found:
            shared[path.relative_to(config.rootpath).as_posix()] = found[1]
    config.option.loadscopereorder = False  # the collection's order: the shared groups first

    class FileGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.rfind("@") > nodeid.rfind("]"):
                return nodeid.rsplit("@", 1)[-1]
            path = nodeid.split("::", 1)[0]
            return shared.get(path, path)

    return FileGroups(config, log)


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


TINY = [  # the five notebooks with tiny parameters (tests/test_notebooks.py, tests/test_browser.py)
    {"name": "01_preprocessing", "parameters": {"frames": 4, "size": 64}},
    {
        "name": "02_whitening_detector",
        "parameters": {
            "epochs": 1,
            "frame_settings": ["data.size=32", "data.batch_size=16"],
            "whitening_settings": ["model.group_size=64", "callbacks.concept_alignment.every=2"],
            "n_top": 3,
        },
    },
    {
        "name": "03_td3dcnn",
        "parameters": {
            "clip_len": 3,
            "size": 32,
            "epochs": 1,
            "ablation_keeps": [0.5],
            "settings": ["model.width=8", "data.batch_size=8", "data.clips_per_video=1", "data.eval_clips=2"],
            "frame_settings": ["data.size=32", "data.batch_size=16"],
        },
    },
    {
        "name": "04_relabel_distillation",
        "parameters": {
            "epochs": 1,
            "frame_settings": ["data.size=32", "data.batch_size=16"],
            "vae_settings": ["data.size=64", "data.batch_size=16", "model.width=8", "model.latent=16"],
            "n_images": 2,
            "n_samples": 40,
        },
    },
    {"name": "05_evaluation", "parameters": {"bootstrap": 50}},
]


def pipeline_config(folder: Path, root: Path, notebooks: list[dict]) -> Path:
    """A pipeline YAML in ``folder`` running ``notebooks`` on the ``folder``-layout dataset ``root``."""
    import yaml

    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"root": str(root), "layout": "folder"}, "notebooks": notebooks}))
    return path


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_synth: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """All five notebooks on the tiny synthetic data, with tiny parameters: (run folder, its parent).

    Run as ``fmkit pipeline`` in a subprocess whose output is not a terminal (as in CI or a log); what
    it printed is kept in the parent's ``pipeline.stdout`` and ``pipeline.stderr``.
    """
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("pipeline")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per kernel: small convolutions on shared cores
    env.pop("FMKIT_PROGRESS", None)
    config = pipeline_config(folder, tiny_synth, TINY)
    command = [sys.executable, "-m", "fmkit", "pipeline", "--config", str(config), "-o", str(folder / "run")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    (folder / "pipeline.stdout").write_text(done.stdout)
    (folder / "pipeline.stderr").write_text(done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return folder / "run", folder
