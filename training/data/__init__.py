"""Data for training: image-folder datasets, transforms, a resumable distributed sampler, synthetic images."""
from training.data.folders import DataError, ImageDataset, find_classes, image_files, image_folder
from training.data.sampler import ResumableSampler
from training.data.synth import write_synthetic
from training.data.transforms import EvalTransform, finetune_transform, pretrain_transform

__all__ = [
    "DataError", "EvalTransform", "ImageDataset", "ResumableSampler", "find_classes", "finetune_transform",
    "image_files", "image_folder", "pretrain_transform", "write_synthetic",
]
