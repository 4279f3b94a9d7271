"""Benchmarks: time per run of every available tier, against native C and the interpreter.

Run ``python benchmarks/run.py`` (``--quick`` for a smoke pass on the interp and
pycode tiers).  Each program lives in ``programs/NAME.s`` with a C twin in
``programs/NAME.c``.  Every tier's result, and the C twin's, is checked against a
Python model before anything is timed, so a fast wrong answer fails the run.
When ``gcc`` is on PATH the C twins are compiled now (``-O2``) and timed in a C
loop (``programs/driver.c``), which gives the physical limit.  The report has
three parts: time per run of each program on each tier, compile time per 1000
eBPF instructions, and the per-packet cost of a filter run with ``VM.run`` once
per packet versus one ``VM.run_batch`` call.  ``--json PATH`` saves the numbers.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pybpf
from pybpf.asm import assemble
from pybpf.batch import BatchInput, prepare_batch
from pybpf.program import Program
from pybpf.runtime.machine import MachineConfig
from pybpf.tiers import get_tier
from pybpf.verifier.structural import check_structure

PROGRAMS = Path(__file__).resolve().parent / "programs"
MASK64 = (1 << 64) - 1
BUDGET = 100_000_000
FLOOR_PROGRAM = assemble("mov r0, 0\nexit", "floor")
"""A program that does nothing: its batch per record is the cost of the batch itself."""
QUICK_TIERS = ("interp", "pycode")


# -- the programs, their inputs and their Python models ---------------------------------


@dataclass(frozen=True)
class Benchmark:
    """One program: its inputs (one run per record) and a model of r0 for a record."""

    name: str
    measures: str
    records: Callable[[], list[bytes]]
    model: Callable[[bytes], int]
    batch: bool = False
    """Also time ``VM.run_batch`` over all records (the per-packet section)."""

    @property
    def symbol(self) -> str:
        """The C twin's function name."""
        return self.name.replace("-", "_")

    def source(self, suffix: str) -> Path:
        return PROGRAMS / f"{self.name}{suffix}"


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def _read_u64(mem: bytes) -> int:
    return int.from_bytes(mem[:8], "little")


def _alu_model(mem: bytes) -> int:
    r0 = 0
    for n in range(_read_u64(mem), 0, -1):
        r0 = ((((r0 + n) & MASK64) ^ 0x5A) << 1 & MASK64) >> 1
    return r0


def _primes_model(mem: bytes) -> int:
    """A sieve, not trial division: the model should not share the program's method."""
    limit = _read_u64(mem)
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for n in range(2, math.isqrt(limit - 1) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve)


def _checksum_model(mem: bytes) -> int:
    total = sum(int.from_bytes(mem[i : i + 2], "little") for i in range(0, len(mem), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total ^ 0xFFFF


def _sort_model(mem: bytes) -> int:
    count = min(len(mem) // 4, 64)
    values = sorted(int.from_bytes(mem[i * 4 : i * 4 + 4], "little") for i in range(count))
    digest = 0
    for value in values:
        digest = (digest * 31 + value) & MASK64
    return digest


def _calls_model(mem: bytes) -> int:
    acc = 0
    for n in range(_read_u64(mem), 0, -1):
        acc = (((acc ^ n) * 0x2545F491) + (acc >> 7)) & MASK64
    return acc


def _filter_model(packet: bytes) -> int:
    """Unfragmented IPv4 TCP to port 80, parsed field by field."""
    if len(packet) < 34 or packet[12:14] != b"\x08\x00" or packet[23] != 6:
        return 0
    if int.from_bytes(packet[20:22], "big") & 0x1FFF:
        return 0
    ihl = (packet[14] & 0xF) * 4
    if ihl < 20 or 14 + ihl + 4 > len(packet):
        return 0
    return int(int.from_bytes(packet[14 + ihl + 2 : 14 + ihl + 4], "big") == 80)


def _packets(count: int, seed: int = 1) -> list[bytes]:
    """Ethernet frames of 64-128 bytes: about 40% IPv4 TCP to port 80, the rest not."""
    rng = random.Random(seed)
    packets = []
    for _ in range(count):
        packet = bytearray(rng.randbytes(rng.randrange(64, 129)))
        kind = rng.random()
        ethertype, protocol, port, fragment = b"\x08\x00", 6, 80, 0x4000  # DF set
        if kind < 0.1:
            ethertype = b"\x86\xdd"  # IPv6
        elif kind < 0.2:
            protocol = 17  # UDP
        elif kind < 0.3:
            fragment = 0x2000 | rng.randrange(1, 0x2000)  # MF set, offset not zero
        elif kind < 0.6:
            port = rng.choice((22, 443, 8080, 0x5000))
        ihl = rng.choice((5, 5, 5, 6, 8))
        packet[12:14] = ethertype
        packet[14] = 0x40 | ihl
        packet[20:22] = fragment.to_bytes(2, "big")
        packet[23] = protocol
        packet[14 + ihl * 4 + 2 : 14 + ihl * 4 + 4] = port.to_bytes(2, "big")
        packets.append(bytes(packet))
    return packets


def _random_u32s(count: int, seed: int = 2) -> bytes:
    rng = random.Random(seed)
    return b"".join(rng.getrandbits(32).to_bytes(4, "little") for _ in range(count))


FILTER_PACKETS = 10_000

BENCHMARKS = (
    Benchmark(
        "alu-loop",
        "tight ALU loop, 100k iterations of add/xor/lsh/rsh",
        lambda: [_u64(100_000)],
        _alu_model,
    ),
    Benchmark(
        "primes",
        "primes below 8000 by trial division (div, mod)",
        lambda: [_u64(8000)],
        _primes_model,
    ),
    Benchmark(
        "checksum",
        "RFC 1071 16-bit one's complement sum over 1500 bytes (ldxh)",
        lambda: [random.Random(3).randbytes(1500)],
        _checksum_model,
    ),
    Benchmark(
        "sort",
        "insertion sort of 64 random u32 on the stack, then a checksum",
        lambda: [_random_u32s(64)],
        _sort_model,
    ),
    Benchmark(
        "calls",
        "40k bpf-to-bpf calls of a 6-instruction function",
        lambda: [_u64(40_000)],
        _calls_model,
    ),
    Benchmark(
        "filter",
        f"Ethernet/IPv4/TCP port-80 filter, once per packet over {FILTER_PACKETS:,} packets",
        lambda: _packets(FILTER_PACKETS),
        _filter_model,
        batch=True,
    ),
)


# -- measuring ------------------------------------------------------------------------


class WrongResult(Exception):
    """A tier (or a C twin) returned something other than the model's answer."""


@dataclass(frozen=True)
class Settings:
    repeat: int
    """Timed samples per measurement; the median is reported."""
    min_sample_s: float
    """Calls faster than this are looped within one sample, so timer overhead vanishes."""


@dataclass
class Timing:
    """One program on one tier (or the C twin): nanoseconds per run of one record."""

    program: str
    tier: str
    ns_per_run: float
    instructions_per_run: float
    """eBPF instructions one run executes (the pycode tier's exact count)."""
    samples_ns: list[float]


@dataclass
class BatchTiming:
    """One program on one tier: per-record cost of ``run`` in a loop and of ``run_batch``."""

    program: str
    tier: str
    run_ns: float
    batch_ns: float
    prepared_ns: float
    """``run_batch`` on records gathered beforehand with ``prepare_batch``."""
    floor_ns: float
    """The same prepared ``run_batch`` of :data:`FLOOR_PROGRAM`: what the batch costs
    per record beyond the program itself."""


@dataclass
class SteadyTiming:
    """Per-run time inside one prepared ``run_batch`` of many copies of the inputs: the
    generated code's own speed, Python's per-call overhead excluded as in the C driver."""

    program: str
    tier: str
    runs: int
    ns_per_run: float


STEADY_STATE_TARGET_NS = 20_000_000
"""How long the copies of one steady-state batch should take in all."""


@dataclass
class CompileTiming:
    tier: str
    instructions: int
    ns: float
    """Median time to construct a VM from a new program object: load-time checks, the
    program's analyses (basic blocks...) and compilation."""
    compile_ns: float
    """Median time of the tier's compilation alone, of a checked program."""
    best_compile_ns: float
    """The fastest of those samples: what compiling costs when the machine is quiet."""


@dataclass
class Report:
    """Everything one run of this script measured; ``--json`` writes it as is."""

    environment: dict[str, Any]
    runs: list[Timing] = field(default_factory=list)
    batches: list[BatchTiming] = field(default_factory=list)
    steady: list[SteadyTiming] = field(default_factory=list)
    compiles: list[CompileTiming] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Tier and program pairs not measured because the tier refused the program."""


def sample_ns(call: Callable[[], object], first_s: float, settings: Settings) -> list[float]:
    """Nanoseconds per ``call``, one entry per sample.

    ``first_s`` is how long one call took when its result was checked; calls faster
    than ``settings.min_sample_s`` run in a loop inside each sample.
    """
    loops = max(1, math.ceil(settings.min_sample_s / max(first_s, 1e-9)))
    samples = []
    for _ in range(settings.repeat):
        start = time.perf_counter_ns()
        for _ in range(loops):
            call()
        samples.append((time.perf_counter_ns() - start) / loops)
    return samples


def check(label: str, got: Sequence[int], expected: Sequence[int]) -> None:
    """Raise :class:`WrongResult` naming the first record whose r0 differs from the model."""
    for index, (value, wanted) in enumerate(zip(got, expected, strict=True)):
        if value != wanted:
            raise WrongResult(
                f"{label}: record {index} gave r0 = {value:#x}, the model says {wanted:#x}"
            )


def checked_samples(
    label: str, call: Callable[[], Sequence[int]], expected: list[int], settings: Settings
) -> list[float]:
    """Run ``call`` once and check it against the model, then time it; ns per record."""
    start = time.perf_counter()
    check(label, call(), expected)
    first = time.perf_counter() - start
    return [ns / len(expected) for ns in sample_ns(call, first, settings)]


# -- native C -----------------------------------------------------------------------------

GCC_FLAGS = ("-O2", "-shared", "-fPIC")
C_TIER = "gcc -O2"
"""The tier column's name for the C twins."""


class NativeTwin:
    """A C twin linked with ``driver.c`` into a shared library, called through ctypes.

    The driver loops over the records (and repeats) in C and measures with
    ``clock_gettime``, so one ctypes call covers thousands of kernel calls.
    """

    def __init__(self, bench: Benchmark, workdir: Path) -> None:
        library = workdir / f"{bench.name}.so"
        sources = [str(bench.source(".c")), str(PROGRAMS / "driver.c")]
        command = ["gcc", *GCC_FLAGS, f"-DKERNEL={bench.symbol}", "-o", str(library), *sources]
        subprocess.run(command, check=True, capture_output=True, text=True)
        self._bench = ctypes.CDLL(str(library)).bench_batch
        self._bench.argtypes = [
            ctypes.c_void_p,  # records back to back
            ctypes.c_void_p,  # offsets, u64[count]
            ctypes.c_void_p,  # lengths, u64[count]
            ctypes.c_uint64,  # count
            ctypes.c_uint64,  # repeat
            ctypes.c_void_p,  # out, u64[count]
        ]
        self._bench.restype = ctypes.c_uint64

    def run(self, batch: BatchInput, repeat: int) -> tuple[array[int], int]:
        """r0 of every record, and the nanoseconds ``repeat`` passes over the batch took."""
        out = array("Q", [0]) * len(batch)
        data = (ctypes.c_char * len(batch.buffer)).from_buffer(batch.buffer)
        elapsed = self._bench(
            ctypes.addressof(data),
            batch.offsets.buffer_info()[0],
            batch.lengths.buffer_info()[0],
            len(batch),
            repeat,
            out.buffer_info()[0],
        )
        del data  # release the export, so the buffer may be resized or freed
        return out, int(elapsed)

    def samples(self, batch: BatchInput, expected: list[int], settings: Settings) -> list[float]:
        """Check once, then ns per record, one entry per sample."""
        out, first_ns = self.run(batch, 1)
        check("C twin", out, expected)
        repeat = max(1, math.ceil(settings.min_sample_s * 1e9 / max(first_ns, 1)))
        return [self.run(batch, repeat)[1] / repeat / len(batch) for _ in range(settings.repeat)]


def compile_twins(benches: Sequence[Benchmark], workdir: Path) -> dict[str, NativeTwin]:
    """Every C twin, compiled now; none when gcc is not on PATH."""
    if shutil.which("gcc") is None:
        return {}
    twins = {}
    for bench in benches:
        try:
            twins[bench.name] = NativeTwin(bench, workdir)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"gcc failed on {bench.source('.c')}:\n{exc.stderr}") from exc
    return twins


# -- the three measurements -------------------------------------------------------------


def measure_program(
    bench: Benchmark,
    tiers: Sequence[str],
    twin: NativeTwin | None,
    settings: Settings,
    report: Report,
) -> None:
    """Check and time ``bench`` on its C twin and every tier (and ``run_batch`` if flagged)."""
    program = assemble(bench.source(".s").read_text(), bench.name)
    inputs = bench.records()
    expected = [bench.model(record) for record in inputs]
    records = [bytearray(record) for record in inputs]  # mapped in place: no copy per run
    reference = pybpf.VM(program, tier="pycode", budget=BUDGET)
    instructions = sum(reference.execute(r).instructions for r in records) / len(records)

    def record(tier: str, samples: list[float]) -> float:
        median = statistics.median(samples)
        report.runs.append(Timing(bench.name, tier, median, instructions, samples))
        return median

    if twin is not None:
        record(C_TIER, twin.samples(prepare_batch(inputs), expected, settings))
    for tier in tiers:
        try:
            vm = pybpf.VM(program, tier=tier, budget=BUDGET)
        except (pybpf.TierUnavailableError, pybpf.InvalidProgramError) as exc:
            report.refused.append(f"{bench.name} on {tier}: {exc}")
            continue
        label = f"{bench.name} on {tier}"
        run_ns = record(
            tier, checked_samples(label, partial(_run_each, vm, records), expected, settings)
        )
        if not bench.batch:
            copies = max(1, min(1000, int(STEADY_STATE_TARGET_NS // (run_ns * len(inputs)))))
            prepared_copies = prepare_batch(list(inputs) * copies)
            samples = checked_samples(
                f"{label}, {copies} copies in one run_batch",
                partial(vm.run_batch, prepared_copies),
                expected * copies,
                settings,
            )
            per_run = statistics.median(samples)  # checked_samples gives ns per record
            report.steady.append(SteadyTiming(bench.name, tier, copies * len(inputs), per_run))
        if bench.batch:
            batch = partial(vm.run_batch, inputs)
            samples = checked_samples(f"{label}, run_batch", batch, expected, settings)
            prepared_inputs = prepare_batch(inputs)
            prepared = partial(vm.run_batch, prepared_inputs)
            ready = checked_samples(f"{label}, prepared run_batch", prepared, expected, settings)
            floor_vm = pybpf.VM(FLOOR_PROGRAM, tier=tier, budget=BUDGET)
            floor = checked_samples(
                f"{FLOOR_PROGRAM.name} on {tier}, prepared run_batch",
                partial(floor_vm.run_batch, prepared_inputs),
                [0] * len(inputs),
                settings,
            )
            report.batches.append(
                BatchTiming(
                    bench.name,
                    tier,
                    run_ns,
                    statistics.median(samples),
                    statistics.median(ready),
                    statistics.median(floor),
                )
            )


def _run_each(vm: pybpf.VM, records: list[bytearray]) -> list[int]:
    return [vm.run(record) for record in records]


def straight_line_program(length: int, seed: int = 4) -> pybpf.Program:
    """A generated ``length``-instruction program without loops: ALU operations, stack
    loads and stores, and short forward branches, so it has many basic blocks."""
    rng = random.Random(seed)
    lines = [f"mov r{n}, {n}" for n in range(10)]
    templates = (
        "add r{d}, r{s}",
        "xor r{d}, {imm}",
        "mul r{d}, {imm}",
        "lsh r{d}, 3",
        "stxdw [r10-{slot}], r{s}",
        "ldxdw r{d}, [r10-{slot}]",
        "jgt r{d}, r{s}, +1",
    )
    while len(lines) < length - 1:
        lines.append(
            rng.choice(templates).format(
                d=rng.randrange(10),
                s=rng.randrange(10),
                imm=rng.randrange(1, 1000),
                slot=8 * rng.randrange(1, 64),
            )
        )
    lines.append("exit")
    return assemble("\n".join(lines), f"straight-line-{length}")


def _time_once(work: Callable[[], object]) -> int:
    """Nanoseconds ``work`` takes, with the cyclic garbage collector paused, as
    ``timeit`` does: a collection's cost depends on every object the process holds,
    not on the work timed."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        work()
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


def measure_compiles(tiers: Sequence[str], size: int, settings: Settings, report: Report) -> None:
    """Median times to construct a VM, and to compile alone, for a generated
    ``size``-instruction program; each sample takes a new program object, so nothing
    one sample derives from the program (blocks, targets) serves the next (timed as
    :func:`_time_once` does)."""
    program = straight_line_program(size)
    expected = pybpf.VM(program).run()  # also warms up imports shared by the tiers
    config = MachineConfig()
    for tier in tiers:
        try:
            check(f"{program.name} on {tier}", [pybpf.VM(program, tier=tier).run()], [expected])
        except (pybpf.TierUnavailableError, pybpf.InvalidProgramError) as exc:
            report.refused.append(f"{program.name} on {tier}: {exc}")
            continue
        totals, compiles = [], []
        for _ in range(max(11, settings.repeat)):
            fresh = Program(program.instructions, program.name)
            totals.append(_time_once(partial(pybpf.VM, fresh, tier=tier)))
            fresh = Program(program.instructions, program.name)
            check_structure(fresh)
            compiles.append(_time_once(partial(get_tier(tier).compile, fresh, config)))
        report.compiles.append(
            CompileTiming(
                tier, size, statistics.median(totals), statistics.median(compiles), min(compiles)
            )
        )


# -- printing -----------------------------------------------------------------------------


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}x" if value < 100 else f"{value:,.0f}x"


def _ns(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """The first two columns (names) left-aligned, the numbers right-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if index < 2 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    print(f"{title}\n{line(header)}\n{'-' * len(line(header))}")
    for row in rows:
        print(line(row))
    print()


def print_report(report: Report) -> None:
    for name, measures in report.environment["programs"].items():
        print(f"{name:<10} {measures}")
    print()
    by_key = {(t.program, t.tier): t for t in report.runs}
    rows = []
    for timing in report.runs:
        native = by_key.get((timing.program, C_TIER))
        interp = by_key.get((timing.program, "interp"))
        ns = timing.ns_per_run
        rows.append(
            [
                timing.program,
                timing.tier,
                _ns(ns),
                _ratio(ns / native.ns_per_run if native else None),
                _ratio(interp.ns_per_run / ns if interp else None),
                f"{timing.instructions_per_run / ns * 1e3:,.1f}",
            ]
        )
    header = ["program", "tier", "ns/run", "vs C", "vs interp", "M insn/s"]
    print_table("time per run (per packet for filter)", header, rows)

    rows = []
    for steady in report.steady:
        native = by_key.get((steady.program, C_TIER))
        rows.append(
            [
                steady.program,
                steady.tier,
                f"{steady.runs:,}",
                _ns(steady.ns_per_run),
                _ratio(steady.ns_per_run / native.ns_per_run if native else None),
            ]
        )
    if rows:
        header = ["program", "tier", "runs", "ns/run", "vs C"]
        title = "steady state: per run inside one prepared run_batch (no per-call overhead)"
        print_table(title, header, rows)
        for tier in dict.fromkeys(steady.tier for steady in report.steady):
            ratios = [
                steady.ns_per_run / by_key[steady.program, C_TIER].ns_per_run
                for steady in report.steady
                if steady.tier == tier and (steady.program, C_TIER) in by_key
            ]
            if ratios:
                mean = statistics.geometric_mean(ratios)
                print(f"{tier}: geometric mean {mean:.2f}x C, worst {max(ratios):.2f}x")
        print()

    rows = []
    for entry in report.batches:
        native = by_key.get((entry.program, C_TIER))
        rows.append(
            [
                entry.program,
                entry.tier,
                _ns(entry.run_ns),
                _ns(entry.batch_ns),
                _ns(entry.prepared_ns),
                _ns(entry.floor_ns),
                _ratio(entry.run_ns / entry.prepared_ns),
                _ratio(entry.prepared_ns / native.ns_per_run if native else None),
            ]
        )
    header = [
        "program",
        "tier",
        "run ns",
        "run_batch ns",
        "prepared ns",
        "floor ns",
        "gain",
        "vs C",
    ]
    print_table("per-record cost: VM.run in a loop vs one VM.run_batch", header, rows)

    rows = [
        [
            f"{c.instructions} insns",
            c.tier,
            f"{c.ns / 1e6:,.1f}",
            f"{c.ns / c.instructions / 1e3:,.2f}",
            f"{c.compile_ns / 1e6:,.1f}",
            f"{c.compile_ns / c.instructions / 1e3:,.2f}",
            f"{c.best_compile_ns / c.instructions / 1e3:,.2f}",
        ]
        for c in report.compiles
    ]
    header = ["program", "tier", "VM ms", "per 1000", "compile ms", "per 1000", "best"]
    title = "compile time: VM construction (checks, analyses, compilation) and compilation alone"
    print_table(title, header, rows)
    for line in report.refused:
        print(f"not measured: {line}")


# -- the command --------------------------------------------------------------------------


def _environment(
    benches: Sequence[Benchmark], tiers: Sequence[str], with_c: bool, settings: Settings
) -> dict[str, Any]:
    gcc = ""
    if with_c:
        version = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=True)
        gcc = version.stdout.splitlines()[0]
    return {
        "pybpf": pybpf.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "gcc": gcc,
        "tiers": list(tiers),
        "programs": {bench.name: bench.measures for bench in benches},
        "repeat": settings.repeat,
        "min_sample_s": settings.min_sample_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed samples per measurement")
    parser.add_argument("--quick", action="store_true", help="smoke pass: interp and pycode")
    parser.add_argument("--tiers", help="comma-separated tiers (default: every available one)")
    parser.add_argument("--programs", help="comma-separated programs (default: all)")
    parser.add_argument("--no-c", action="store_true", help="skip the C twins")
    parser.add_argument("--compile-size", type=int, default=2000, metavar="N")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the raw numbers")
    args = parser.parse_args(argv)

    quick = Settings(repeat=1, min_sample_s=0.01)
    settings = quick if args.quick else Settings(repeat=args.repeat, min_sample_s=0.05)
    available = [name for name, reason in pybpf.available_tiers() if reason is None]
    if args.tiers:
        tiers = args.tiers.split(",")
    else:
        tiers = [tier for tier in available if not args.quick or tier in QUICK_TIERS]
    known = {bench.name for bench in BENCHMARKS}
    names = args.programs.split(",") if args.programs else sorted(known)
    wrong = [t for t in tiers if t not in available] + [n for n in names if n not in known]
    if wrong:
        parser.error(f"unknown or unavailable here: {', '.join(wrong)}")
    benches = [bench for bench in BENCHMARKS if bench.name in names]

    with tempfile.TemporaryDirectory(prefix="pybpf-bench-") as workdir:
        twins = {} if args.no_c else compile_twins(benches, Path(workdir))
        report = Report(_environment(benches, tiers, bool(twins), settings))
        env = report.environment
        print(f"pybpf {env['pybpf']}, Python {env['python']}, {env['machine']}, {env['cpus']} CPUs")
        print(f"C twins: {env['gcc'] or 'none (no gcc)'}; median of {settings.repeat} sample(s)\n")
        try:
            for bench in benches:
                print(f"measuring {bench.name}...", file=sys.stderr, flush=True)
                measure_program(bench, tiers, twins.get(bench.name), settings, report)
            measure_compiles(tiers, args.compile_size, settings, report)
        except WrongResult as exc:
            print(f"WRONG RESULT: {exc}", file=sys.stderr)
            return 1
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
