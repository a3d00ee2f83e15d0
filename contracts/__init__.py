"""The rules training, export and serving share, in one place each: image preprocessing (`preprocessing`), the
dataset folder convention (`datasets`), the model repository (`model_repository`), model cards (`model_card`) and
training output file names (`checkpoints`).

Importable with the core dependencies only (numpy, Pillow): no torch, no web framework, so every package can depend
on it without pulling in the others.
"""
