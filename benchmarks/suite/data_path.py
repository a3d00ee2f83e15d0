"""(e) The pretraining input pipeline: CPU decode + RandomResizedCrop + flip + to-tensor per worker (one thread, the
real dataset and transform), the workers that 2,500 img/s needs, and batched nvJPEG decode (+ the same
augmentation on the GPU, `--decode gpu`) img/s.

The images: scikit-image's photographs cut to 500x375 (ImageNet's typical size), JPEG quality 90."""
from __future__ import annotations

import io
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.model_throughput import images_per_second
from benchmarks.suite.common import Recorder, Settings
from training.data import image_files, pretrain_transform
from training.data.gpu_decode import EncodedBatch, EncodedImageDataset, decode_images

TARGET_IMG_S = 2500.0
SIZE, MIN_SCALE = 224, 0.2
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "cat", "coins")


def sources() -> list[Image.Image]:
    """Photographs (scikit-image's bundled ones; smooth random images if it is missing)."""
    try:
        import skimage.data

        return [Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB") for name in PHOTOS]
    except Exception:  # noqa: BLE001 (not installed, or a photograph it would have to download)
        rng = np.random.default_rng(0)
        small = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(8)]
        return [Image.fromarray(array).resize((640, 480), Image.BICUBIC) for array in small]


def write_jpegs(folder: Path, count: int) -> list[Path]:
    """`count` 500x375 JPEGs: a random 500x375 window of a photograph scaled to cover it."""
    rng = np.random.default_rng(0)
    photos, paths = sources(), []
    for index in range(count):
        photo = photos[index % len(photos)]
        scale = max(500 / photo.width, 375 / photo.height) * rng.uniform(1.0, 1.5)
        big = photo.resize((math.ceil(photo.width * scale), math.ceil(photo.height * scale)), Image.BICUBIC)
        left, top = int(rng.integers(0, big.width - 499)), int(rng.integers(0, big.height - 374))
        buffer = io.BytesIO()
        big.crop((left, top, left + 500, top + 375)).save(buffer, "JPEG", quality=90)
        path = folder / f"{index:05d}.jpg"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def cpu_per_worker(folder: Path, seconds: float, size: int = SIZE) -> tuple[float, float]:
    """One data-loading worker (one thread) running the training dataset's __getitem__ back to back:
    (images per wall-clock second, images per CPU second of this process). On a shared machine the second is the
    one that counts workers: it does not drop when other processes take the cores."""
    dataset = image_files(folder, pretrain_transform(size, MIN_SCALE))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        dataset[0]
        done, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while done < len(dataset) or time.perf_counter() - start < seconds:
            dataset[done % len(dataset)]
            done += 1
        return done / (time.perf_counter() - start), done / (time.process_time() - cpu_start)
    finally:
        torch.set_num_threads(threads)


def run(settings: Settings, record: Recorder) -> None:
    device = torch.device(settings.device)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        write_jpegs(folder, settings.data_images)
        wall, per_cpu_second = cpu_per_worker(folder, settings.data_seconds)
        workers = math.ceil(TARGET_IMG_S / per_cpu_second)
        record.add(path="cpu: PIL decode + RandomResizedCrop + flip + to tensor", device="cpu (1 thread)",
                   img_per_s=round(wall, 1), img_per_cpu_s=round(per_cpu_second, 1), workers_for_2500=workers)
        record.summary.update(cpu_img_per_cpu_s=round(per_cpu_second, 1), cpu_workers_for_2500_img_s=workers)
        dataset = EncodedImageDataset(image_files(folder, None).samples, SIZE, MIN_SCALE)
        items = [dataset[i][0] for i in range(len(dataset))]  # what the workers deliver: the files' bytes
        batch = (items * math.ceil(256 / len(items)))[:256 if not settings.quick else len(items)]
        label = "gpu: nvJPEG" if device.type == "cuda" else "cpu smoke run of the --decode gpu code"
        decode = images_per_second(lambda: decode_images(batch, device), len(batch), device, 1, settings.steps)
        record.add(path=f"{label} batched decode", device=settings.device, batch=len(batch),
                   img_per_s=round(decode, 1))
        full = images_per_second(lambda: EncodedBatch(batch, SIZE, MIN_SCALE).to(device), len(batch), device, 1,
                          settings.steps)
        record.add(path=f"{label} decode + RandomResizedCrop + flip", device=settings.device, batch=len(batch),
                   img_per_s=round(full, 1))
        record.summary.update(gpu_decode_img_s=round(decode, 1), gpu_decode_augment_img_s=round(full, 1))
    record.summary["target"] = f"{TARGET_IMG_S:.0f} img/s at {SIZE} px"
    record.flush()
