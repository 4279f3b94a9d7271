"""Batches give, record by record, what separate runs give, on every tier.

The records are chosen to leave a native record loop in every way it can: a
helper that reads and writes the record, a packet load that misses, a loop that
runs out of budget (handed to the interpreter) and a memory fault.
"""

from __future__ import annotations

import pytest

from pybpf import VM, BudgetExceededError, MemoryAccessError, conformance_helpers
from pybpf.asm import assemble
from pybpf.tiers import available_tiers

TIERS = [name for name, reason in available_tiers() if reason is None]

# r0 = first byte; byte 1 picks a path: 1 memfrob the record, 2 ldabs past the end,
# 3 loop (byte 2) times, 4 read far past the end, else return byte 0 + length
PROGRAM = assemble("""
    mov r6, r1
    mov r7, r2
    ldxb r3, [r6+1]
    jeq r3, 1, frob
    jeq r3, 2, miss
    jeq r3, 3, spin
    jeq r3, 4, fault
    ldxb r0, [r6]
    add r0, r7
    exit
frob:
    mov r1, r6
    mov r2, r7
    call 1
    ldxb r0, [r6]
    exit
miss:
    ldabsw 1000
    exit
spin:
    ldxb r4, [r6+2]
    mov r0, 0
loop:
    add r0, 1
    jlt r0, r4, loop
    exit
fault:
    ldxdw r0, [r6+4096]
    exit
""")

RECORDS = [
    bytes([5, 0, 0, 0]),
    bytes([7, 1, 0, 0]),
    bytes([9, 2, 0, 0]),
    bytes([1, 3, 20, 0]),
    bytes([2, 3, 250, 0]),  # runs past a budget of 300 instructions
    bytes([3, 0, 0, 0]),
]


def separate_runs(tier: str, records: list[bytes]) -> list[object]:
    results: list[object] = []
    for record in records:
        vm = VM(PROGRAM, tier=tier, helpers=conformance_helpers(), budget=300)
        try:
            results.append(vm.run(bytearray(record)))
        except (BudgetExceededError, MemoryAccessError) as error:
            results.append((type(error).__name__, error.pc))
    return results


@pytest.mark.parametrize("tier", TIERS)
def test_batch_equals_separate_runs(tier: str) -> None:
    fine = [record for record in RECORDS if record[1] != 3 or record[2] < 100]
    vm = VM(PROGRAM, tier=tier, helpers=conformance_helpers(), budget=300)
    data = bytearray(b"".join(fine))
    results = list(vm.run_batch(data, record_size=4))
    assert results == separate_runs("interp", fine)
    # memfrob wrote into the caller's buffer, as a single run would
    assert data[4:8] == bytes(byte ^ 42 for byte in fine[1])


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(("bad", "error"), [(4, BudgetExceededError), (1, MemoryAccessError)])
def test_batch_failure_names_the_record(tier: str, bad: int, error: type[Exception]) -> None:
    records = list(RECORDS)
    if error is MemoryAccessError:
        records[bad] = bytes([0, 4, 0, 0])
    vm = VM(PROGRAM, tier=tier, helpers=conformance_helpers(), budget=300)
    with pytest.raises(error) as info:
        vm.run_batch(records)
    assert info.value.record_index == bad  # type: ignore[attr-defined]
    expected = separate_runs("interp", [records[bad]])[0]
    assert (type(info.value).__name__, info.value.pc) == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("tier", TIERS)
def test_stack_is_fresh_for_every_record(tier: str) -> None:
    # reads a stack slot before writing it: every record must see zero
    program = assemble("ldxdw r0, [r10-8]\nldxb r1, [r1]\nstxdw [r10-8], r1\nexit")
    vm = VM(program, tier=tier)
    assert list(vm.run_batch([b"\x07", b"\x08", b"\x09"])) == [0, 0, 0]
    escaping = assemble(
        "mov r2, r10\nadd r2, -16\nldxdw r0, [r2]\nldxb r1, [r1]\nstxdw [r2], r1\nexit"
    )
    vm = VM(escaping, tier=tier)
    assert list(vm.run_batch([b"\x07", b"\x08", b"\x09"])) == [0, 0, 0]


def test_stack_footprint_never_reaches_outside_the_frame() -> None:
    from pybpf.tiers.x86_64.analysis import stack_footprint

    inside = assemble("stxdw [r10-16], r1\nldxw r0, [r10-4]\nexit")
    assert stack_footprint(inside, 512) == (-16, 0)
    for source in ("ldxdw r0, [r10+0]\nexit", "ldxdw r0, [r10-4]\nexit", "stb [r10-513], 1\nexit"):
        assert stack_footprint(assemble(source), 512) is None, source
    constant = assemble("lddw r2, 0x10000f00\nstdw [r2+0], 7\nstxdw [r10-8], r1\nexit")
    assert stack_footprint(constant, 512) == (-512, 0)  # a store may reach the stack
    escaping = assemble("mov r2, r10\nstb [r2-600], 1\nexit")
    assert stack_footprint(escaping, 512) == (-512, 0)  # only the main frame is reachable
    assert stack_footprint(RECURSIVE_MAIN, 512) is None  # a call to pc 0 adds frames


RECURSIVE_MAIN = assemble(
    """
    jeq r6, 1, deeper
    mov r6, 1
    call local -3       # the main program again, one frame down
    exit
deeper:
    ldxdw r0, [r10-8]   # read before written: zero in a fresh run
    ldxb r1, [r1]
    stxdw [r10-8], r1
    exit
"""
)


@pytest.mark.parametrize("tier", TIERS)
def test_stack_written_through_a_constant_address_is_fresh_for_every_record(tier: str) -> None:
    top = 0x10000000 + 8 * 512  # the main frame's top, as VM.run lays the stack out
    program = assemble(f"lddw r2, {top - 256:#x}\nldxdw r0, [r2+0]\nstdw [r2+0], 7\nexit")
    assert VM(program).run() == 0
    assert list(VM(program, tier=tier).run_batch([b"", b"", b""])) == [0, 0, 0]


@pytest.mark.parametrize("tier", TIERS)
def test_recursive_main_gets_a_fresh_stack_for_every_record(tier: str) -> None:
    vm = VM(RECURSIVE_MAIN, tier=tier)
    assert list(vm.run_batch([b"\x07", b"\x08", b"\x09"])) == [0, 0, 0]


@pytest.mark.parametrize("tier", TIERS)
def test_an_access_above_the_frame_traps_in_a_batch(tier: str) -> None:
    vm = VM(assemble("ldxdw r0, [r10-4]\nexit"), tier=tier)
    with pytest.raises(MemoryAccessError) as info:
        vm.run_batch([b"\x00", b"\x01"])
    assert (info.value.pc, info.value.record_index) == (0, 0)  # type: ignore[attr-defined]
