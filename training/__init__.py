"""LoMaR training: the model, pretraining, fine-tuning and evaluation (needs torch and timm)."""
