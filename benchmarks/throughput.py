"""Training and inference throughput of every registered model, and the data-loading speed-up of the packed crop cache.

In one process, on ``--device`` (cpu, cuda or auto), prints:

* **the machine**: CPU model (/proc/cpuinfo), logical cores and those this process may
  use, torch threads, torch and CUDA versions, the GPU's name and memory;
* **per model** (``fmkit.models.list_models()``, each built from its recipe in
  ``configs/train/``; frame models and the VAE on random images 3 x crop x crop, video
  models on clips 3 x T x crop x crop, ``--crop``, ``--clip-len``): parameters, FLOPs per
  sample (``torch.utils.flop_counter.FlopCounterMode``, a multiply-add = 2 FLOPs; it
  counts matrix products and convolutions: inference = one eval forward, training = one
  training forward + backward, so temporal dropout's dropped frames are not counted),
  training samples/s (forward, backward and an Adam step of the loss the engine
  optimises: the model's ``training_step`` where it has one, BCE on its logits otherwise,
  ``fmkit.engine.loop.LossModule``), inference samples/s (eval forward without
  gradients), each the median of ``--rounds`` timing rounds in which every variant runs
  one training step and one inference batch on the same batch, in turn (order reversed
  every round; one warm-up round dropped), and peak memory (see ``MEMORY``);
* **variants**: ``fp32`` (eager, float32); on a GPU also ``amp+cl`` (``torch.autocast``
  bfloat16, or float16 with a GradScaler where bfloat16 is unsupported, and
  ``channels_last`` / ``channels_last_3d`` weights and inputs) with the achieved TFLOP/s
  and the fraction of the device's peak (``--peak-tflops``; default from ``PEAK_TFLOPS``,
  NVIDIA's dense bf16 tensor-core datasheet figures, printed); ``--compile`` adds each
  variant wrapped in ``torch.compile`` (a failure is reported per model, not raised).
  Every variant's throughput is also given as a ratio to its model's eager fp32 one
  (median times' ratio, 95 % interval resampling rounds);
* **data loading**: items/s of a DataLoader pass (``fmkit.engine.data.eval_loader``,
  ``--loader-workers``, batches of ``--loader-batch``, the evaluation transform to
  ``--crop`` px) over every face crop (FrameDataset) and every evenly spaced clip
  (ClipDataset) of a faces folder, decoding the JPEG crops or reading the packed cache
  (``fmkit.data.cache``, built in a temporary folder first; build time and size printed;
  torch on one thread, as in a DataLoader worker),
  alternating in rounds like the models, and the speed-up (cache / JPEG items/s) with a
  95 % interval over rounds and a verdict against 1 (the cache must be faster). The JPEG
  files are in the OS page cache after the warm-up round, so this measures decoding, not
  the disk.

    python benchmarks/throughput.py [--device cpu|cuda|auto] [--models M ...] [--crop 64 --clip-len 8]
        [--batch N --clip-batch N --rounds 5] [--compile] [--peak-tflops T] [--faces FACES | --videos 12 ...]
        [--json OUT.json]

The data are ``--faces`` or a small synthetic set (``benchmarks/common.py``'s demo options,
with smaller defaults: 12 real videos, 3 fakes each, 8 frames, 64 px crops). A smoke run:
``--rounds 2 --batch 4 --clip-batch 2 --clip-len 4 --videos 3 --loader-rounds 3`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from common import (
    add_demo_data_arguments,
    alternating_rounds,
    call_flops,
    count_flops,
    cuda_sync,
    demo_faces,
    median_seconds,
    ratio_interval,
)
from torch import nn

from fmkit.config import train_config
from fmkit.data.cache import open_cache
from fmkit.data.datasets import ClipDataset, FrameDataset
from fmkit.data.schema import read_faces
from fmkit.data.transforms import build_transform
from fmkit.engine.data import eval_loader, release_loaders
from fmkit.engine.loop import LossModule, split_loss
from fmkit.engine.trainer import resolve_device
from fmkit.io import write_json
from fmkit.metrics import verdict
from fmkit.models import create_model, list_models

#: Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by a substring of the device name (first match), from
#: NVIDIA's datasheets: H100/H200 SXM 989, H100 PCIe 756, H100/H200 NVL 835, A100 312, L40S 362, L4 121.
PEAK_TFLOPS = (
    ("H200 NVL", 835.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H200", 989.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)
MEMORY = {
    "cuda": "peak memory = parameters + Adam state (summed over their tensors) + the peak growth of allocated "
    "memory during one training step and one inference batch (torch.cuda.max_memory_allocated after "
    "reset_peak_memory_stats)",
    "cpu": "peak memory = parameters + Adam state (summed over their tensors) + the peak growth of the resident "
    "set during one training step and one inference batch (VmHWM of /proc/self/status after resetting it "
    "through /proc/self/clear_refs, free heap first returned to the OS by malloc_trim; not tracemalloc, "
    "which does not see torch's allocations)",
}
TARGET_CACHE_SPEEDUP = 1.0  # packed-cache items/s over JPEG-decoding items/s, at least this


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    d = add_demo_data_arguments(ap)
    d.add_argument("--faces", type=Path, default=None, help="a faces folder to load (default: synthesize one)")
    d.add_argument("--no-loading", action="store_true", help="skip the data-loading measurement")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers of the loading measurement")
    d.add_argument("--loader-batch", type=int, default=32, help="items per batch of the loading measurement")
    d.add_argument("--loader-rounds", type=int, default=5, help="alternating loading rounds (+1 warm-up)")
    ap.set_defaults(videos=12, workers=1)
    m = ap.add_argument_group("models")
    m.add_argument("--models", nargs="+", default=None, help="registered models to measure (default: all)")
    m.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    m.add_argument("--clip-len", type=int, default=8, help="frames per clip T of the video models")
    m.add_argument("--batch", type=int, default=None, help="images per batch (default: 16 on CPU, 256 on CUDA)")
    m.add_argument("--clip-batch", type=int, default=None, help="clips per batch (default: 4 on CPU, 32 on CUDA)")
    m.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (+1 warm-up)")
    m.add_argument("--compile", action="store_true", help="also measure each variant under torch.compile")
    m.add_argument("--peak-tflops", type=float, default=None, help="device peak TFLOP/s (default: PEAK_TFLOPS)")
    m.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the ratio intervals")
    m.add_argument("--json", type=Path, default=None, help="also write every table to this JSON file")
    return ap.parse_args()


# --- the machine -------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine(device: torch.device) -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_GiB=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    """The peak FLOP/s the fractions use and where it comes from."""
    if given is not None:
        return given, "--peak-tflops"
    if device.type != "cuda":
        return None, "no GPU"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value, f"NVIDIA datasheet, dense bf16 tensor cores ({key})"
    return None, f"unknown for {name}: pass --peak-tflops"


# --- memory ------------------------------------------------------------------------------


def _proc_status_kib(field_name: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _proc_status_kib("VmHWM") is not None


def peak_growth(device: torch.device, work: Callable[[], None]) -> float:
    """Bytes of memory growth at the peak of ``work()`` (see ``MEMORY``); NaN where it cannot be measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        work()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - before)
    if not _reset_peak_rss():
        work()
        return float("nan")
    before = _proc_status_kib("VmRSS")
    work()
    return float(max(_proc_status_kib("VmHWM") - before, 0) * 1024)


def state_bytes(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    tensors = list(model.parameters()) + [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


# --- models ------------------------------------------------------------------------------


@dataclass
class Variant:
    """One model in one mode: its modules, optimizer and batch."""

    model_name: str
    mode: str  # fp32 | amp+cl
    compiled: bool
    kind: str  # frame | clip
    model: nn.Module
    step: Callable[[Any], Any]
    infer: Callable[[torch.Tensor], Any]
    opt: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    error: str | None = None
    first_s: float = float("nan")

    @property
    def name(self) -> str:
        return f"{self.model_name}/{self.mode}{'/compile' if self.compiled else ''}"


def model_spec(name: str, crop: int) -> tuple[dict[str, Any], str]:
    """A model's keyword arguments (its recipe's; ``size`` set to ``crop``) and kind (``frame`` or ``clip``)."""
    cfg = train_config(name)
    kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
    if "size" in kwargs:
        kwargs["size"] = crop
    return kwargs, cfg["data"]["kind"]


def make_variant(
    name: str, mode: str, compiled: bool, args: argparse.Namespace, device: torch.device, batch: dict[str, int]
) -> Variant:
    kwargs, kind = model_spec(name, args.crop)
    torch.manual_seed(args.seed)
    model = create_model(name, **kwargs).to(device)
    g = torch.Generator().manual_seed(args.seed)
    n = batch[kind]
    shape = (n, 3, args.clip_len, args.crop, args.crop) if kind == "clip" else (n, 3, args.crop, args.crop)
    x = torch.rand(shape, generator=g).to(device)
    y = (torch.arange(n) % 2).float().to(device)
    amp_dtype = scaler = None
    if mode == "amp+cl":
        fmt = torch.channels_last_3d if kind == "clip" else torch.channels_last
        model = model.to(memory_format=fmt)
        x = x.contiguous(memory_format=fmt)
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if amp_dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    step: Callable[[Any], Any] = LossModule(model)
    infer: Callable[[torch.Tensor], Any] = model
    if compiled:
        step, infer = torch.compile(step), torch.compile(model)
    return Variant(name, mode, compiled, kind, model, step, infer, opt, x, y, amp_dtype, scaler)


def _autocast(v: Variant, device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=v.amp_dtype) if v.amp_dtype is not None else contextlib.nullcontext()


def train_step(v: Variant, device: torch.device) -> None:
    v.model.train()
    with _autocast(v, device):
        loss, _ = split_loss(v.step((v.x, v.y)))
    v.opt.zero_grad(set_to_none=True)
    if v.scaler is not None:
        v.scaler.scale(loss).backward()
        v.scaler.step(v.opt)
        v.scaler.update()
    else:
        loss.backward()
        v.opt.step()


def infer_step(v: Variant, device: torch.device) -> None:
    v.model.eval()
    with torch.no_grad(), _autocast(v, device):
        v.infer(v.x)


def time_variants(variants: list[Variant], rounds: int, device: torch.device) -> pd.DataFrame:
    """Seconds of one training step (``<variant> train``) and one inference batch (``<variant> infer``) of each
    variant, in turn (:func:`common.alternating_rounds`: order reversed every round; round -1 is the warm-up, with
    compilation, kept for ``first_s``). A variant whose step or batch raises is dropped with its error."""
    fns: dict[str, Callable[[], object]] = {}
    for v in variants:
        fns[f"{v.name} train"] = partial(train_step, v, device)
        fns[f"{v.name} infer"] = partial(infer_step, v, device)
    errors: dict[str, str] = {}  # torch.compile may fail on a model: report it, go on
    times = alternating_rounds(fns, rounds, sync=cuda_sync(device), errors=errors, keep_warmup=True)
    for v in variants:
        v.error = errors.get(f"{v.name} train") or errors.get(f"{v.name} infer")
        if v.error is None:
            own = times["name"].isin([f"{v.name} train", f"{v.name} infer"]) & (times["round"] < 0)
            v.first_s = float(times.loc[own, "seconds"].sum())
    return times


def flops_per_sample(v: Variant) -> tuple[float, float]:
    """(inference, training) FLOPs per sample of an eager variant's batch; inference as served, after one
    uncounted batch (a whitening model builds its eval matrix once per running statistics)."""
    n = v.x.shape[0]
    infer_step(v, v.x.device)
    infer = count_flops(v.model, v.x)
    v.model.train()
    train = call_flops(lambda: split_loss(LossModule(v.model)((v.x, v.y)))[0].backward())
    v.opt.zero_grad(set_to_none=True)
    return infer / n, train / n


def measure_models(args: argparse.Namespace, device: torch.device) -> tuple[pd.DataFrame, list[str]]:
    cuda = device.type == "cuda"
    batch = {"frame": args.batch or (256 if cuda else 16), "clip": args.clip_batch or (32 if cuda else 4)}
    names = args.models or list_models()
    modes = ["fp32", "amp+cl"] if cuda else ["fp32"]
    variants, notes = [], []
    for name in names:
        for mode in modes:
            for compiled in (False, True) if args.compile else (False,):
                variants.append(make_variant(name, mode, compiled, args, device, batch))
    print(f"timing {len(variants)} variants, {args.rounds} rounds (+1 warm-up) ...", flush=True)
    times = time_variants(variants, args.rounds, device)
    seconds = median_seconds(times)
    flops = {v.model_name: flops_per_sample(v) for v in variants if v.mode == "fp32" and not v.compiled}
    peak, source = peak_tflops(device, args.peak_tflops)
    base = {v.model_name: v for v in variants if v.mode == "fp32" and not v.compiled}
    rows = []
    for v in variants:
        if v.error is not None:
            notes.append(f"{v.name}: failed, {v.error}")
            continue
        n = v.x.shape[0]
        mem = state_bytes(v.model, v.opt) + peak_growth(
            device, lambda v=v: (train_step(v, device), infer_step(v, device))
        )
        f_infer, f_train = flops[v.model_name]
        train_s, infer_s = n / seconds[f"{v.name} train"], n / seconds[f"{v.name} infer"]
        row = {
            "model": v.model_name,
            "input": "x".join(map(str, v.x.shape[1:])),
            "variant": v.mode + ("+compile" if v.compiled else ""),
            "batch": n,
            "params_M": sum(p.numel() for p in v.model.parameters()) / 1e6,
            "GFLOP_infer": f_infer / 1e9,
            "GFLOP_train": f_train / 1e9,
            "train_per_s": train_s,
            "infer_per_s": infer_s,
            "peak_MiB": mem / 2**20,
        }
        b = base[v.model_name]
        for phase in ("train", "infer"):
            if v is b:
                row[f"{phase}_x"], row[f"{phase}_lo"], row[f"{phase}_hi"] = 1.0, 1.0, 1.0
            else:
                # throughput over the eager fp32 one = its seconds over this variant's
                ratio = ratio_interval(times, f"{b.name} {phase}", f"{v.name} {phase}", args.bootstrap, args.seed)
                row[f"{phase}_x"], row[f"{phase}_lo"], row[f"{phase}_hi"] = ratio
        if cuda:
            row["train_TFLOPs"] = f_train * train_s / 1e12
            row["infer_TFLOPs"] = f_infer * infer_s / 1e12
            if peak is not None and v.mode == "amp+cl":
                row["train_%peak"] = 100 * row["train_TFLOPs"] / peak
                row["infer_%peak"] = 100 * row["infer_TFLOPs"] / peak
        if v.compiled:
            notes.append(f"{v.name}: warm-up round (compilation + first step and batch) {v.first_s:.1f} s")
        rows.append(row)
    if cuda:
        notes.append(f"peak FLOP/s used for %peak: {peak} TFLOP/s ({source})" if peak else f"%peak: {source}")
    return pd.DataFrame(rows), notes


# --- data loading ------------------------------------------------------------------------


def loading_datasets(faces: Path, args: argparse.Namespace, cache: Any) -> dict[str, Any]:
    transform = build_transform(args.crop, train=False)
    clips = ClipDataset(
        faces, clip_len=args.clip_len, clips_per_video=4, transform=transform, short_videos="skip", cache=cache
    )
    return {"frames": FrameDataset(faces, transform=transform, cache=cache), f"clips of {args.clip_len}": clips}


def loader_pass(ds: Any, args: argparse.Namespace) -> None:
    for _ in eval_loader(ds, args.loader_batch, args.loader_workers):
        pass


def measure_loading(faces: Path, args: argparse.Namespace, tmp: Path) -> tuple[pd.DataFrame, str]:
    df = read_faces(faces)
    start = time.perf_counter()
    cache = open_cache(df, faces, tmp / "packed", progress=False)
    built = time.perf_counter() - start
    size = cache.path.stat().st_size
    note = (
        f"packed cache: {len(df)} crops of {cache.array.shape[1]} px, {size / 2**20:.1f} MiB, built in {built:.1f} s "
        f"({len(df) / built:.0f} crops/s); loader: eval_loader, {args.loader_workers} workers, batches of "
        f"{args.loader_batch}, evaluation transform to {args.crop} px; torch on 1 thread "
        f"in the main process as in a worker; {args.loader_rounds} rounds (+1 warm-up)"
    )
    with warnings.catch_warnings():  # short videos: counted in the note
        warnings.simplefilter("ignore")
        sources = {"jpeg": loading_datasets(faces, args, None), "cache": loading_datasets(faces, args, cache)}
    skipped = len(sources["jpeg"][f"clips of {args.clip_len}"].skipped)
    note += f"; {skipped} video(s) with fewer than {args.clip_len} crops left out of the clips"
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker (torch's threaded copies stall on busy cores)
    for what in sources["jpeg"]:
        passes = {src: partial(loader_pass, sources[src][what], args) for src in ("jpeg", "cache")}
        times = alternating_rounds(passes, args.loader_rounds)
        seconds = median_seconds(times)
        n = len(sources["jpeg"][what])
        speedup, lo, hi = ratio_interval(times, "jpeg", "cache", args.bootstrap, args.seed)  # cache / jpeg items/s
        rows.append(
            {
                "items": what,
                "n": n,
                "jpeg_items_per_s": n / seconds["jpeg"],
                "cache_items_per_s": n / seconds["cache"],
                "speedup": speedup,
                "lo": lo,
                "hi": hi,
                "target": TARGET_CACHE_SPEEDUP,
                "verdict": verdict(lo, hi, TARGET_CACHE_SPEEDUP),
            }
        )
    release_loaders()
    torch.set_num_threads(threads)
    return pd.DataFrame(rows), note


# --- main --------------------------------------------------------------------------------


def show(title: str, table: pd.DataFrame) -> None:
    print(title)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"))
    print()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    device = resolve_device(args.device)
    machine = describe_machine(device)
    print("machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()))
    print()
    models, notes = measure_models(args, device)
    show(
        f"models on {device} (samples/s: median of {args.rounds} alternating rounds; GFLOP per sample, a "
        "multiply-add = 2 FLOPs; *_x: throughput over the model's eager fp32, 95 % interval over rounds)",
        models,
    )
    print(MEMORY[device.type])
    for note in notes:
        print(note)
    print()
    report: dict[str, Any] = {
        "machine": machine,
        "args": vars(args),
        "notes": notes,
        "models": models.to_dict("records"),
    }
    if not args.no_loading:
        with tempfile.TemporaryDirectory() as tmp:
            faces = args.faces or demo_faces(args, Path(tmp))[0]
            loading, note = measure_loading(faces, args, Path(tmp))
        source = faces if args.faces else "the synthetic faces"
        show(f"data loading of {source}: JPEG decoding vs the packed cache (items/s: median of rounds)", loading)
        print(note)
        print(f"verdicts: {loading['verdict'].value_counts().to_dict()}")
        report.update(loading=loading.to_dict("records"), notes=notes + [note])
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        write_json(report, args.json)


if __name__ == "__main__":
    main()
