"""A readable listing of generated machine code, interleaved with its eBPF source.

Machine instructions are decoded with capstone when it is installed (``pip install
pybpf[test]`` brings it); without it each eBPF instruction shows its bytes in hex.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pybpf.program import Program
from pybpf.tiers.x86_64.compiler import NativeCode


def _decoder() -> Callable[[bytes, int], Iterator[str]] | None:
    try:
        import capstone
    except ImportError:
        return None
    engine = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)

    def decode(code: bytes, address: int) -> Iterator[str]:
        for insn in engine.disasm(code, address):
            yield f"{insn.address:#014x}  {insn.mnemonic} {insn.op_str}".rstrip()

    return decode


def _hex_lines(code: bytes, address: int) -> Iterator[str]:
    for start in range(0, len(code), 16):
        yield f"{address + start:#014x}  {code[start : start + 16].hex(' ')}"


def native_listing(program: Program, native: NativeCode, base: int) -> str:
    """eBPF instructions, each followed by the machine code that implements it."""
    from pybpf.asm import format_instruction

    decode = _decoder() or _hex_lines
    # (offset, pc, heading): each instruction's code, and each counted loop's copy
    starts = sorted(
        [(offset, pc, "") for pc, offset in native.offsets.items()]
        + [(offset, pc, _COPY_HEADING) for offset, pc in native.counted_copies.items()]
    )
    lines = [f"; {len(native.code)} bytes of x86-64 at {base:#x}; entry +{native.entry:#x}"]
    if starts:
        lines.append("; prologue")
        lines.extend("    " + line for line in decode(native.code[: starts[0][0]], base))
    ends = [offset for offset, _pc, _heading in starts[1:]]
    stubs_start = len(native.code)
    for (offset, pc, heading), end in zip(starts, [*ends, None], strict=True):
        insn = program.by_pc[pc]
        if insn is None:
            continue
        lines.append(
            heading.format(pc=pc) if heading else f"{pc:5d}: {format_instruction(insn, pc)}"
        )
        stop = end if end is not None else _end_of_last(native, offset)
        stubs_start = stop if end is None else stubs_start
        lines.extend("    " + line for line in decode(native.code[offset:stop], base + offset))
    if native.batch_entry >= stubs_start:
        lines.append("; record loop (run_batch)")
        loop = native.code[native.batch_entry : native.stubs_offset]
        lines.extend("    " + line for line in decode(loop, base + native.batch_entry))
        stubs_start = native.stubs_offset
    lines.append(f"; {native.stubs} trap stubs and the exit path")
    lines.extend("    " + line for line in decode(native.code[stubs_start:], base + stubs_start))
    return "\n".join(lines)


_COPY_HEADING = (
    "; the loop at {pc}, counted: its passes and walks tested once, then a copy without the meter"
)


def _end_of_last(native: NativeCode, offset: int) -> int:
    """Where the last instruction's code ends: at the record loop, which follows the
    functions (a jump never falls into it)."""
    return native.batch_entry if native.batch_entry > offset else len(native.code)
