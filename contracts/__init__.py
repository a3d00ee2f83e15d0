"""The rules training, export and serving share, in one place each: image preprocessing (`preprocessing`) and
the dataset folder convention (`datasets`).

Importable with the core dependencies only (numpy, Pillow): no torch, no web framework, so every package (and a
Triton model's Python stub) can depend on it without pulling in the others.
"""
