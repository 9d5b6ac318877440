"""The Triton kernels compile for Hopper (sm_90) without a GPU.

The interpreter accepts code the compiler rejects (an early return in the wrong
place, a tl.dot dimension under 16, mixed dtypes in a dot), so on CPU-only
hosts this is the check that the kernels would build at all. It runs
`triton.compile` down to a cubin with the bundled ptxas, in a subprocess
because this test session decorates kernels for the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent('''
    import json, sys, triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import hyperscale.kernels.lowrank as K

    def source(fn, pointers, constexprs):
        names = fn.arg_names
        signature = {n: pointers.get(n, "i32") for n in names}
        signature.update({n: "constexpr" for n in constexprs})
        return ASTSource(fn=fn, signature=signature,
                         constexprs={(names.index(k),): v for k, v in constexprs.items()})

    rows = {"order_ptr": "*i64", "tile_adapter_ptr": "*i32", "tile_lo_ptr": "*i32", "tile_hi_ptr": "*i32",
            "seg_lo_ptr": "*i32", "seg_hi_ptr": "*i32", "scale": "fp32"}
    built = []
    # bf16 and fp32 take different dot paths (tensor-core mma vs IEEE fp32);
    # fp16 compiles like bf16. BLOCK_R 16 and 64 bracket r = 1..64.
    for dt, block_r in (("bf16", 16), ("bf16", 64), ("fp32", 16)):
        flags = dict(PRECISION="ieee" if dt == "fp32" else "tf32", UPCAST=False)
        variants = [
            (K._shrink_kernel, {"x_ptr": "*" + dt, "w_ptr": "*" + dt, "h_ptr": "*fp32"},
             dict(BLOCK_N=K.BLOCK_N, BLOCK_K=K.BLOCK_K, BLOCK_R=block_r)),
            *[(K._expand_kernel, {"h_ptr": "*fp32", "w_ptr": "*" + dt, "base_ptr": "*" + dt, "y_ptr": "*" + dt},
               dict(HAS_BASE=hb, BLOCK_N=K.BLOCK_N, BLOCK_D=K.BLOCK_D, BLOCK_R=block_r)) for hb in (True, False)],
            *[(K._segment_outer_kernel, {"p_ptr": "*fp32", "q_ptr": "*" + dt, "g_ptr": ("*" + dt) if det else "*fp32"},
               dict(DETERMINISTIC=det, BLOCK_N=K.BLOCK_N, BLOCK_D=K.BLOCK_D, BLOCK_R=block_r)) for det in (True, False)],
        ]
        for fn, pointers, consts in variants:
            k = triton.compile(source(fn, {**rows, **pointers}, {**consts, **flags}), target=GPUTarget("cuda", 90, 32))
            built.append([fn.__name__, dt, block_r, len(k.asm["cubin"])])
    json.dump(built, sys.stdout)
''')


def test_kernels_compile_to_cubin(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    import json

    built = json.loads(proc.stdout)
    assert len(built) == 3 * 5  # (dtype, rank pad) pairs x kernel variants
    assert all(size > 0 for *_, size in built)
