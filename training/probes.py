"""Quality of frozen embeddings: cosine k-NN classification and a linear probe.

Both take L2-normalised or raw features (N, D) and integer labels (N,), and return top-1 accuracy in percent.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_top1(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
             k: int = 20, temperature: float = 0.07, num_classes: int | None = None) -> float:
    """Weighted k-NN on cosine similarity (weights exp(sim / T), as in DINO's evaluation), top-1 percent."""
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    train, test = F.normalize(train.float(), dim=1), F.normalize(test.float(), dim=1)
    k = min(k, train.shape[0])
    sims, index = (test @ train.T).topk(k, dim=1)  # (Nq, k)
    votes = torch.zeros(test.shape[0], num_classes)
    votes.scatter_add_(1, train_labels[index], (sims / temperature).exp())
    return 100.0 * (votes.argmax(dim=1) == test_labels).float().mean().item()


def linear_probe_top1(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor,
                      test_labels: torch.Tensor, num_classes: int | None = None, epochs: int = 200,
                      weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Multinomial logistic regression on standardised features (full batch, L-BFGS), top-1 percent."""
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    mean, std = train.mean(dim=0), train.std(dim=0) + 1e-6
    train, test = (train.float() - mean) / std, (test.float() - mean) / std
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(train.shape[1], num_classes, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=epochs, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(train @ weight + bias, train_labels) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predictions = (test @ weight + bias).argmax(dim=1)
    return 100.0 * (predictions == test_labels).float().mean().item()
