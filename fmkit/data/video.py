"""Video reading and writing with PyAV (torchvision 0.29 has no video I/O).

Frames are ``uint8`` RGB arrays of shape (H, W, 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from fmkit.errors import FmkitError
from fmkit.io import atomic_path


@dataclass(frozen=True)
class VideoInfo:
    """What the container says of a video: frame count, frames per second and size (px)."""

    num_frames: int
    fps: float
    width: int
    height: int


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise FmkitError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise FmkitError(f"unreadable video {path}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise FmkitError(f"no video stream in {path}")
    return container


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps and size of a video; the count is decoded when the header lacks it."""
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        n = stream.frames
        if not n:
            try:
                n = sum(1 for _ in container.decode(stream))
            except av.error.FFmpegError as exc:
                raise FmkitError(f"corrupt video {path}: {exc}") from None
        return VideoInfo(int(n), fps, stream.codec_context.width, stream.codec_context.height)


def read_frames(path: str | os.PathLike, indices: Sequence[int] | None = None) -> list[np.ndarray]:
    """Decode the frames at ``indices`` (sorted, 0-based; all frames when None) in one pass.

    Raises FmkitError naming the file when it cannot be opened or decoded, or when it
    holds no decodable frame.
    """
    wanted = None if indices is None else {int(i) for i in indices}
    last = None if indices is None else max(wanted, default=-1)
    frames: list[np.ndarray] = []
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                if wanted is None or i in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if last is not None and i >= last:
                    break
        except av.error.FFmpegError as exc:
            if not frames:
                raise FmkitError(f"corrupt video {path}: {exc}") from None
    if not frames:
        raise FmkitError(f"no decodable frame in {path}")
    return frames


def sample_indices(num_frames: int, k: int) -> list[int]:
    """``k`` frame indices spread evenly over the whole video (all frames if it has fewer)."""
    if num_frames <= k:
        return list(range(num_frames))
    return [int(round(x)) for x in np.linspace(0, num_frames - 1, k)]


def window_indices(num_frames: int, windows: int, window_len: int) -> list[list[int]]:
    """Frame indices of ``windows`` windows of ``window_len`` consecutive frames spread evenly over a video.

    The video is cut into as many equal parts as there are windows and each window is centred
    in its part (window ``i`` starts at ``⌊((2i+1)·n − W·L) / 2W⌋``), so the windows never
    overlap, keep clear of the video's first and last frames when there is room, and stay
    within its ``num_frames`` frames. A video shorter than ``windows × window_len`` frames
    gets fewer windows, ``⌊n / L⌋`` (overlapping windows would share crops, and a crop has one
    window); one shorter than a window is a single window of all its frames.
    """
    if windows < 1 or window_len < 1:
        raise FmkitError(f"windows and window_len must be at least 1, got {windows} and {window_len}")
    if num_frames <= 0:
        return []
    length = min(window_len, num_frames)
    count = max(1, min(windows, num_frames // length))
    starts = [((2 * i + 1) * num_frames - count * length) // (2 * count) for i in range(count)]
    return [list(range(s, s + length)) for s in starts]


def write_video(
    path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 25.0, codec: str = "libx264", crf: int = 18
) -> Path:
    """Encode RGB frames (H, W, 3 uint8; even H and W for H.264) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                h, w = frame.shape[:2]
                stream = container.add_stream(codec, rate=int(round(fps)))
                stream.width, stream.height = w, h
                stream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": str(crf), "preset": "veryfast"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise FmkitError(f"no frames to write to {path}")
        for packet in stream.encode():
            container.mux(packet)
    return path
