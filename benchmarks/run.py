"""Benchmarks: time per run and instructions per second of every available tier.

Run ``python benchmarks/run.py`` (``--quick`` for a short pass).  Each program's
result is checked against a Python model of it before anything is timed, so a
fast wrong answer cannot pass as a result.  Later tiers add themselves through
``pybpf.available_tiers()``; the table reports each tier's speed and its ratio to
the interpreter on the same inputs in the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pybpf
from pybpf.asm import assemble

MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    source: str
    make_input: Callable[[], bytes | None]
    expected: Callable[[bytes | None], int]


def _alu_model(_mem: bytes | None) -> int:
    r0 = 0
    for r1 in range(100_000, 0, -1):
        r0 = (r0 + r1) & MASK64
        r0 ^= 0x5A
        r0 = (r0 << 1) & MASK64
        r0 >>= 1
    return r0


ALU_LOOP = """
    mov r0, 0
    mov r1, 100000
loop:
    add r0, r1
    xor r0, 0x5a
    lsh r0, 1
    rsh r0, 1
    sub r1, 1
    jne r1, 0, loop
    exit
"""


def _packet(size: int) -> bytes:
    return bytes((index * 7 + 3) & 0xFF for index in range(size))


def _checksum_model(mem: bytes | None) -> int:
    assert mem is not None
    total = 0
    for _ in range(20):
        for offset in range(0, len(mem), 2):
            total = (total + int.from_bytes(mem[offset : offset + 2], "little")) & MASK64
    return total


MEMORY_LOOP = """
# 20 passes of a 16-bit sum over the input, spilling the running sum to the stack
    mov r0, 0
    stxdw [r10-8], r0
    mov r7, 20
pass:
    mov r3, r1
    mov r4, r1
    add r4, r2
word:
    ldxh r5, [r3]
    ldxdw r0, [r10-8]
    add r0, r5
    stxdw [r10-8], r0
    add r3, 2
    jlt r3, r4, word
    sub r7, 1
    jne r7, 0, pass
    ldxdw r0, [r10-8]
    exit
"""

BENCHMARKS = (
    Benchmark("alu-loop", "tight ALU loop, 100k iterations", ALU_LOOP, lambda: None, _alu_model),
    Benchmark(
        "memory-loop",
        "16-bit sum over 1500 bytes x20 with stack spills",
        MEMORY_LOOP,
        lambda: _packet(1500),
        _checksum_model,
    ),
)


def _time_runs(vm: pybpf.VM, mem: bytes | None, repeat: int) -> tuple[float, int]:
    """Median seconds per run over ``repeat`` runs, and instructions per run."""
    times = []
    instructions = 0
    for _ in range(repeat):
        data = bytearray(mem) if mem is not None else None
        start = time.perf_counter()
        result = vm.execute(data)
        times.append(time.perf_counter() - start)
        instructions = result.instructions
    return statistics.median(times), instructions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per benchmark and tier")
    parser.add_argument("--quick", action="store_true", help="one run each, for a smoke test")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    tiers = [name for name, reason in pybpf.available_tiers() if reason is None]

    print(f"pybpf {pybpf.__version__}, Python {platform.python_version()}, {platform.machine()}")
    print(f"median of {repeat} run(s); tiers: {', '.join(tiers)}\n")
    header = (
        f"{'benchmark':<14} {'tier':<8} {'time/run':>12} {'insns/run':>10} "
        f"{'M insn/s':>9} {'vs interp':>9}"
    )
    print(header)
    print("-" * len(header))
    for bench in BENCHMARKS:
        program = assemble(bench.source, bench.name)
        mem = bench.make_input()
        expected = bench.expected(mem)
        baseline: float | None = None
        for tier in tiers:
            vm = pybpf.VM(program, tier=tier, budget=100_000_000)
            got = vm.run(bytearray(mem) if mem is not None else None)
            if got != expected:
                print(f"{bench.name} on {tier}: r0 = {got:#x}, expected {expected:#x}")
                return 1
            seconds, instructions = _time_runs(vm, mem, repeat)
            baseline = baseline or seconds
            rate = instructions / seconds / 1e6
            print(
                f"{bench.name:<14} {tier:<8} {seconds * 1e3:>9.2f} ms {instructions:>10} "
                f"{rate:>9.2f} {baseline / seconds:>8.1f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
