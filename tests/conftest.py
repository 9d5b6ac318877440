"""Test-session environment: offline hub, offline wandb, Triton interpreter on CPU.

These must be set before transformers, wandb or triton are imported anywhere.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


# Without a GPU the Triton kernels run in the interpreter (numpy under the hood),
# checked against their torch reference; triton reads this at decoration time.
if not _has_cuda():
    os.environ.setdefault("TRITON_INTERPRET", "1")
