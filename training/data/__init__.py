"""Data for training: image-folder datasets, transforms, a resumable distributed sampler, synthetic images."""
from training.data.folders import DataError, ImageDataset, find_classes, image_files, image_folder
from training.data.sampler import ResumableSampler
from training.data.synth import write_synthetic
from training.data.transforms import eval_transform, finetune_transform, pretrain_transform

__all__ = [
    "DataError", "ImageDataset", "ResumableSampler", "eval_transform", "find_classes", "finetune_transform",
    "image_files", "image_folder", "pretrain_transform", "write_synthetic",
]
