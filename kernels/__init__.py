"""Triton kernels, installed as `hyperscale.kernels` (never as top-level `kernels`).

Nothing is imported here: triton is heavy and absent on some hosts (the Ray
driver, CPU-only heads); import `hyperscale.kernels.lowrank` where needed.
"""
