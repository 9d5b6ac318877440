"""What ZeRO-3 needs from this model, and one DeepSpeed CPU fix. Imported by workers only.

ZeRO-3 partitions every parameter and gathers a module's own parameters around
that module's forward. The trainable parameters here are read elsewhere: the
hypernetwork indexes its condition tables inside the adapter source, and the
shared / per-annotator LoRA sources hand their A and B tensors to the backbone's
wrapped layers, which run after the source's forward has returned. Registering
every trainable parameter as an external parameter of the root model keeps each
one gathered for the whole forward and backward of a step; they are small next
to the frozen backbone, whose parameters stay partitioned module by module.
(Marking the sources as ZeRO-3 "leaf modules" instead was measured to leave the
hypernetwork's parameters un-updated after a step, on DeepSpeed 0.19.8.)
"""

from __future__ import annotations

from torch import nn


def register_trainable_as_external(model: nn.Module) -> int:
    """`model`: a PerspectivistModel (anything with trainable_parameters())."""
    import deepspeed

    params = model.trainable_parameters()
    for p in params:
        deepspeed.zero.register_external_parameter(model, p)
    return len(params)


def patch_cpu_zero_grad() -> None:
    """DeepSpeed 0.19.8: stage-3 `zero_grad` calls `record_stream` on gradients that its
    CPU accelerator reports as "on accelerator"; CPU tensors have no streams
    ("RuntimeError: unknown parameter type"). Dropping the spent gradients first is
    what `zero_grad(set_to_none=True)` does anyway, minus the stream bookkeeping.
    Measured after the fix: ZeRO-3 losses equal ZeRO-2's to float32 reduction order
    (tests/cluster/test_distributed.py)."""
    from deepspeed.runtime.zero.stage3 import DeepSpeedZeroOptimizer_Stage3 as Stage3

    if getattr(Stage3.zero_grad, "_hyperscale_cpu_fix", False):
        return
    original = Stage3.zero_grad

    def zero_grad(self, set_to_none=True):
        if set_to_none:
            for group in self.fp16_groups:
                for p in group:
                    p.grad = None
        return original(self, set_to_none)

    zero_grad._hyperscale_cpu_fix = True
    Stage3.zero_grad = zero_grad
