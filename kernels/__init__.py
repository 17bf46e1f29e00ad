"""Triton and PyTorch kernels: pure functions, no timing, no I/O, no imports from bench.

Import these modules only after bench.target.configure() has chosen the device: Triton reads
TRITON_INTERPRET when a kernel is decorated.
"""
