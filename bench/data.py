"""Does the data keep up with the model? Images/s and compute efficiency per input path.

Generates a folder of JPEGs of varying sizes (ImageNet-like), then trains the same model with
the same step on batches from:
  (a) stock: torchvision ImageFolder + RandomResizedCrop + flip + ToTensor + Normalize through
      a DataLoader (workers, pinned memory, persistent workers, prefetch);
  (b) torchstyle --decode gpu: workers read bytes only; batched decode_jpeg, random-resized
      crop, flip and normalisation on the device, on a side stream;
  (c) device-only upper bound: one batch already on the device, reused.
and, for in-memory data, a CIFAR-shaped ResNet-18 epoch:
  (d) torchstyle --data-on-device (uint8 set on the device, crop+flip as batched device ops);
  (e) the same loop with its batch already on the device.
Prints images/s, compute efficiency (share of time the device did not wait for data) and
each path's rate as a share of its upper bound. Paths run interleaved, best of --repeats.

GPU: python bench/data.py   (ResNet-50, bf16, channels_last, 224 px, batch 256)
CPU smoke run: python bench/data.py --cpu-smoke   (tiny sizes; figures say nothing about GPUs;
               the default without CUDA)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torchstyle.data import DevicePrefetcher, EpochBatchSampler, TensorImageDataset, make_loader
from torchstyle.data.device import DeviceBatches
from torchstyle.data.folder import ImageFolderDataset, scan_split
from torchstyle.data.jpeg import DecodeOnDevice, EncodedImageFolder, collate_encoded
from torchstyle.engine.meters import EfficiencyMeter


def make_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs of 2 classes, sides 200 to 500 px, smooth noise (realistic file sizes)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = rng.integers(200, 500, size=2)
        small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((int(w), int(h)), Image.BILINEAR)
        path = root / "train" / f"c{i % 2}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=90)
    return root


class Stepper:
    """One optimizer step of the benchmark model on a batch (the same for every path)."""

    def __init__(self, arch: str, device: torch.device, amp: str, num_classes: int) -> None:
        self.model = getattr(torchvision.models, arch)(num_classes=num_classes).to(device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.loss = nn.CrossEntropyLoss()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.to(memory_format=torch.channels_last)
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        ):
            loss = self.loss(self.model(x), y)
        loss.backward()
        self.opt.step()


def run(batches, step: Stepper, steps: int, warmup: int) -> tuple[float, float]:
    """Trains ``steps`` steps after ``warmup``; returns (images/s, compute efficiency)."""
    meter = EfficiencyMeter(step.device)
    it = iter(batches)
    for _ in range(warmup):
        x, y = next(it)
        step(x, y)
    if step.device.type == "cuda":
        torch.cuda.synchronize()
    meter.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        meter.fetch_begin()
        x, y = next(it)
        meter.fetch_end(x.shape[0])
        step(x, y)
    efficiency, _ = meter.report()
    if step.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * x.shape[0] / (time.perf_counter() - t0), efficiency


def forever(make_iterable):
    """Cycles through epochs of an iterable factory."""
    epoch = 0
    while True:
        yield from make_iterable(epoch)
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--amp", default="bf16", choices=("off", "bf16", "fp16"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--cifar-images", type=int, default=50_000)
    parser.add_argument("--cifar-batch", type=int, default=256)
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="tiny sizes, to check the script runs on a CPU"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("no CUDA device: running the tiny CPU smoke version (--cpu-smoke)")
        args.cpu_smoke = True
    if args.cpu_smoke:
        args.images, args.size, args.batch, args.arch, args.amp = 64, 64, 16, "resnet18", "off"
        args.steps, args.warmup, args.repeats, args.workers = 4, 1, 1, 2
        args.cifar_images, args.cifar_batch = 512, 64
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    print(
        f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, {os.cpu_count()} CPUs, "
        f"{args.arch} {args.amp} channels_last, {args.size}px, batch {args.batch}, {args.workers} workers"
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = make_jpegs(Path(tmp), args.images)
        classes, samples = scan_split(root / "train")
        step = Stepper(args.arch, device, args.amp, len(classes))
        source = ImageFolderDataset(
            samples, channels=3, image_size=args.size, augment="rrc-flip", train=True, seed=0
        )

        tv = torchvision.transforms
        stock_ds = torchvision.datasets.ImageFolder(
            str(root / "train"),
            tv.Compose(
                [
                    tv.RandomResizedCrop(args.size),
                    tv.RandomHorizontalFlip(),
                    tv.ToTensor(),
                    tv.Normalize([0.5] * 3, [0.5] * 3),
                ]
            ),
        )
        stock_loader = torch.utils.data.DataLoader(
            stock_ds, batch_size=args.batch, shuffle=True, drop_last=True, num_workers=args.workers,
            pin_memory=device.type == "cuda", persistent_workers=True, prefetch_factor=4,
        )  # fmt: skip

        def stock(epoch):
            return DevicePrefetcher(stock_loader, device)

        sampler = EpochBatchSampler(
            len(samples), batch_size=args.batch, shuffle=True, drop_last=True
        )
        encoded = make_loader(
            EncodedImageFolder(source),
            sampler,
            workers=args.workers,
            pin_memory=False,
            collate_fn=collate_encoded,
        )
        decoder = DecodeOnDevice(source, device)

        def gpu_decode(epoch):
            sampler.set_epoch(epoch)
            return DevicePrefetcher(encoded, device, transform=decoder)

        fixed = (
            torch.randn(args.batch, 3, args.size, args.size, device=device),
            torch.randint(0, 2, (args.batch,), device=device),
        )

        def device_only(epoch):
            return iter(lambda: fixed, None)

        results: dict[str, list[tuple[float, float]]] = {
            "stock": [],
            "decode-gpu": [],
            "device-only": [],
        }
        for _ in range(args.repeats):
            for name, factory in (
                ("stock", stock),
                ("decode-gpu", gpu_decode),
                ("device-only", device_only),
            ):
                results[name].append(run(forever(factory), step, args.steps, args.warmup))
        best = {k: max(v) for k, v in results.items()}
        top = best["device-only"][0]
        print(f"\nJPEG folder, {args.images} images ({args.size}px random-resized crops)")
        for name, (rate, eff) in best.items():
            print(
                f"  {name:12s} {rate:9.1f} images/s   compute efficiency {eff:.2f}   {rate / top:.2f} of device-only"
            )

    # CIFAR-shaped in-memory data: --data-on-device against a batch already on the device.
    g = torch.Generator().manual_seed(0)
    cifar = TensorImageDataset(
        torch.randint(0, 256, (args.cifar_images, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (args.cifar_images,), generator=g),
        augment="crop-flip",
    )
    cstep = Stepper("resnet18", device, args.amp, 10)
    csampler = EpochBatchSampler(
        args.cifar_images, batch_size=args.cifar_batch, shuffle=True, drop_last=True
    )
    on_device = DeviceBatches(cifar, csampler, device)

    def data_on_device(epoch):
        csampler.set_epoch(epoch)
        return on_device

    cfixed = (
        torch.randn(args.cifar_batch, 3, 32, 32, device=device),
        torch.randint(0, 10, (args.cifar_batch,), device=device),
    )
    csteps = max(1, min(args.steps * 4, args.cifar_images // args.cifar_batch))
    cres: dict[str, list[tuple[float, float]]] = {"data-on-device": [], "device-only": []}
    for _ in range(args.repeats):
        cres["data-on-device"].append(run(forever(data_on_device), cstep, csteps, args.warmup))
        cres["device-only"].append(
            run(forever(lambda e: iter(lambda: cfixed, None)), cstep, csteps, args.warmup)
        )
    cbest = {k: max(v) for k, v in cres.items()}
    ctop = cbest["device-only"][0]
    print(
        f"\nCIFAR-shaped ResNet-18, {args.cifar_images} images, batch {args.cifar_batch}, crop+flip"
    )
    for name, (rate, eff) in cbest.items():
        print(
            f"  {name:14s} {rate:9.1f} images/s   compute efficiency {eff:.2f}   {rate / ctop:.3f} of device-only"
        )


if __name__ == "__main__":
    main()
