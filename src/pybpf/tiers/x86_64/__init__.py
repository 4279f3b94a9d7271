"""The x86-64 JIT tier: eBPF lowered to machine code run from executable memory.

``encoder`` owns the instruction encoder (a small table-driven assembler with labels).
Nothing here is imported by ``pybpf`` itself; the tier loads only when asked for.
"""
