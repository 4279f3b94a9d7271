"""The ``pybpf`` command: assemble, disassemble, verify and run programs.

Errors print as one line on stderr (``pybpf: error: ...``) with exit status 1; a
traceback means a bug in pybpf.  ``pybpf conformance-plugin`` speaks the
bpf_conformance plugin protocol so the community suite can test every tier.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pybpf.errors import AssemblerError, BpfError
from pybpf.loader.files import ProgramFormat, parse_hex, program_from_bytes, read_program
from pybpf.program import Program
from pybpf.runtime.helpers import conformance_helpers
from pybpf.runtime.machine import DEFAULT_BUDGET, Machine
from pybpf.tiers import TIER_ALIASES, TIER_NAMES
from pybpf.vm import VM

TIER_CHOICES = (*TIER_NAMES, *TIER_ALIASES, "auto")


class UsageError(Exception):
    """A command line that names something impossible (bad hex, missing file)."""


def _format_option(value: str | None) -> ProgramFormat | None:
    return ProgramFormat(value) if value else None


def _load(args: argparse.Namespace) -> Program:
    fmt = _format_option(args.format)
    if args.file == "-":
        return program_from_bytes(sys.stdin.buffer.read(), fmt or ProgramFormat.ASM, "<stdin>")
    return read_program(args.file, fmt)


def _read_memory(args: argparse.Namespace) -> bytes | None:
    if args.mem is not None and args.mem_file is not None:
        raise UsageError("give --mem or --mem-file, not both")
    if args.mem is not None:
        try:
            return parse_hex(args.mem, "--mem")
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    if args.mem_file is not None:
        try:
            return Path(args.mem_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {args.mem_file}: {exc.strerror}") from exc
    return None


# -- subcommands --------------------------------------------------------------------


def cmd_asm(args: argparse.Namespace) -> int:
    program = _load(args)
    code = program.to_bytes()
    if args.output:
        Path(args.output).write_bytes(code)
    elif args.raw:
        sys.stdout.buffer.write(code)
    else:
        for offset in range(0, len(code), 8):
            print(code[offset : offset + 8].hex(" "))
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    from pybpf.asm import disassemble

    program = _load(args)
    if args.tier:
        text = VM(program, tier=args.tier).listing()
    else:
        text = disassemble(program, syntax=args.syntax, labels=args.labels)
    sys.stdout.write(text)
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    program = _load(args)
    VM(program, tier="interp")
    print(f"{args.file}: ok ({program.slot_count} instructions)")
    return 0


class InstructionTracer:
    """Prints each instruction before it runs, with the non-zero registers, to stderr."""

    def __init__(self, program: Program) -> None:
        from pybpf.asm import format_instruction

        self.lines = {pc: format_instruction(insn, pc) for pc, insn in program}

    def __call__(self, pc: int, machine: Machine) -> None:
        regs = " ".join(f"r{n}=0x{value:x}" for n, value in enumerate(machine.regs[:10]) if value)
        print(f"{pc:5d}: {self.lines[pc]:<32} {regs}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    program = _load(args)
    mem = _read_memory(args)
    vm = VM(
        program,
        tier=args.tier,
        budget=args.budget,
        trace=lambda line: print(line, file=sys.stderr),
    )
    observer = InstructionTracer(program) if args.trace else None
    times: list[float] = []
    result = None
    for _ in range(args.repeat):
        data = bytearray(mem) if mem is not None else None
        start = time.perf_counter_ns()
        result = vm.execute(data, observer=observer)
        times.append(time.perf_counter_ns() - start)
    assert result is not None
    print(f"0x{result.r0:x}")
    if args.count:
        print(f"instructions: {result.instructions}")
    if args.repeat > 1:
        median = statistics.median(times)
        rate = result.instructions / (median / 1e9) if median else 0.0
        print(
            f"median time per run: {median / 1000:.3f} us over {args.repeat} runs "
            f"({rate / 1e6:.2f} M instructions/s, tier {vm.tier})"
        )
    return 0


def cmd_conformance_plugin(args: argparse.Namespace) -> int:
    """bpf_conformance plugin: program hex on stdin, memory hex in argv, r0 hex on stdout."""
    # the runner's own switches: --jit is the x86-64 tier, --interpret the interpreter
    tier = args.tier or ("x86_64" if args.jit else "interp")
    try:
        program = Program.from_bytes(parse_hex(sys.stdin.read(), "program"))
        memory = parse_hex(args.memory, "memory") if args.memory else b""
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    vm = VM(program, tier=tier, helpers=conformance_helpers())
    r0 = vm.run(bytearray(memory) if memory else None)
    sys.stdout.write(f"{r0:x}\n")
    return 0


# -- argument parsing -----------------------------------------------------------------


def _add_program_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="program file (assembly, raw bytecode or hex); - for stdin")
    parser.add_argument(
        "--format",
        choices=[fmt.value for fmt in ProgramFormat],
        help="how FILE is encoded (default: from its suffix: .s/.asm, .bin/.bpf/.raw, .hex/.txt)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pybpf", description="A user-space eBPF runtime.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    asm = sub.add_parser("asm", help="assemble a program to bytecode (hex by default)")
    _add_program_arguments(asm)
    asm.add_argument("-o", "--output", help="write raw bytecode to this file")
    asm.add_argument("--raw", action="store_true", help="write raw bytecode to stdout")
    asm.set_defaults(handler=cmd_asm)

    disasm = sub.add_parser("disasm", help="disassemble a program")
    _add_program_arguments(disasm)
    disasm.add_argument(
        "--syntax", choices=("asm", "pseudo-c"), default="asm", help="output syntax"
    )
    disasm.add_argument("--labels", action="store_true", help="name jump targets with labels")
    disasm.add_argument(
        "--tier",
        choices=TIER_CHOICES,
        help="show what this tier generates (Python source, machine code) instead",
    )
    disasm.set_defaults(handler=cmd_disasm)

    verify = sub.add_parser("verify", help="run the load-time checks on a program")
    _add_program_arguments(verify)
    verify.set_defaults(handler=cmd_verify)

    run = sub.add_parser("run", help="run a program and print r0")
    _add_program_arguments(run)
    run.add_argument("--mem", help="input memory as hex bytes (r1 = its address, r2 = length)")
    run.add_argument("--mem-file", help="input memory from a binary file")
    run.add_argument("--tier", default="interp", choices=TIER_CHOICES, help="execution tier")
    run.add_argument(
        "--budget", type=int, default=DEFAULT_BUDGET, help="instruction budget per run"
    )
    run.add_argument("--count", action="store_true", help="also print the instruction count")
    run.add_argument("--trace", action="store_true", help="print every instruction to stderr")
    run.add_argument(
        "--repeat", type=int, default=1, help="run N times and print the median time per run"
    )
    run.set_defaults(handler=cmd_run)

    plugin = sub.add_parser(
        "conformance-plugin", help="bpf_conformance plugin: program hex on stdin, r0 on stdout"
    )
    plugin.add_argument("memory", nargs="?", default="", help="input memory as hex bytes")
    plugin.add_argument("--jit", action="store_true", help="run on the x86-64 tier")
    plugin.add_argument("--interpret", action="store_true", help="run on the interpreter")
    plugin.add_argument("--tier", choices=TIER_CHOICES, help="execution tier")
    plugin.set_defaults(handler=cmd_conformance_plugin)
    return parser


def _describe(exc: BaseException, args: argparse.Namespace) -> str:
    if isinstance(exc, AssemblerError):
        source = getattr(args, "file", None) or "<input>"
        return f"{source}:{exc.line}:{exc.column}: {exc.message}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "repeat", 1) < 1:
        parser.error("--repeat must be at least 1")
    try:
        status: int = args.handler(args)
    except (BpfError, UsageError, ValueError) as exc:
        print(f"pybpf: error: {_describe(exc, args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pybpf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
