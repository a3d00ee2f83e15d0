# `make serve` and `make test` set up .venv on first use (idempotent: a second run installs nothing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages

.PHONY: install serve test test-fast bench default-models clean

install: $(STAMP) $(SYSTEM_STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,test]'
	touch $@

# Chromium for the web-page test; installed only where missing (needs root and Debian's apt).
$(SYSTEM_STAMP):
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else echo "warning: chromium/chromedriver missing; the browser test will be skipped"; fi; \
	fi
	mkdir -p $(VENV) && touch $@

serve: install
	$(BIN)/lomar serve

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not e2e"

bench: install
	$(BIN)/python benchmarks/model_throughput.py

# Rebuild the built-in models in model_repository/ from scratch, offline (about 30 minutes on 2 CPU cores):
# a tiny LoMaR (ViT-Tiny/16, depth 6) pretrained and fine-tuned on views of scikit-image's sample photographs.
DEFAULT_RUN := runs/default
default-models: install
	$(BIN)/lomar data photos --out $(DEFAULT_RUN)/photos --per-class 80 --val-per-class 10 --size 224
	$(BIN)/lomar pretrain --data-dir $(DEFAULT_RUN)/photos/train --output-dir $(DEFAULT_RUN)/pretrain \
		--model lomar_tiny_patch16 --model-option depth=6 --image-size 224 --epochs 16 --batch-size 64 \
		--blr 1.5e-3 --warmup-epochs 2 --num-workers 1 --device cpu --amp none --save-every-epochs 1
	$(BIN)/lomar finetune --init $(DEFAULT_RUN)/pretrain/checkpoint-last.pth --data-dir $(DEFAULT_RUN)/photos \
		--output-dir $(DEFAULT_RUN)/finetune --image-size 224 --epochs 12 --warmup-epochs 1 --batch-size 32 \
		--blr 2e-3 --layer-decay 0.75 --drop-path 0.05 --mixup 0 --cutmix 0 --smoothing 0.1 \
		--auto-augment rand-m7-mstd0.5 --reprob 0 --num-workers 2 --device cpu --amp none
	$(BIN)/lomar export --checkpoint $(DEFAULT_RUN)/finetune/checkpoint-best.pth --task classify \
		--out model_repository --name lomar_classifier
	$(BIN)/lomar export --checkpoint $(DEFAULT_RUN)/pretrain/checkpoint-last.pth --task reconstruct \
		--out model_repository --name lomar_reconstruction

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
