"""Runs reuse a VM's machine and tier state; each must still start as a fresh run would.

Every case runs on every available tier and, where a result or an error is
involved, checks it against the interpreter's.
"""

from __future__ import annotations

import threading

import pytest

from pybpf import VM, MemoryAccessError
from pybpf.asm import assemble
from pybpf.runtime.helpers import HelperRegistry
from pybpf.runtime.machine import Machine
from pybpf.runtime.memory import INPUT_BASE, MemoryRegion
from pybpf.tiers import available_tiers

TIERS = [name for name, reason in available_tiers() if reason is None]

_STACK_TOP = 0x1000_0000 + 512 * 8
"""r10 of the main frame with the default stack size and call depth."""


def _error(vm: VM, mem: bytes | bytearray | None) -> tuple[int, int, int, bool]:
    with pytest.raises(MemoryAccessError) as info:
        vm.run(mem)
    error = info.value
    return error.pc, error.address, error.size, error.write


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(
    "source",
    [
        # through r10, in the main frame
        "ldxdw r0, [r10-8]\nldxdw r1, [r10-512]\nor r0, r1\nstdw [r10-8], 0x55\n"
        "stdw [r10-512], 0x66\nexit",
        # through a constant address, without r10
        f"lddw r2, {_STACK_TOP - 512:#x}\nldxdw r0, [r2]\nstdw [r2], 7\nexit",
        # in a callee's frame, through r10 and through a pointer passed down
        "mov r1, r10\ncall local f\nexit\n"
        "f:\nldxdw r0, [r10-8]\nldxdw r2, [r1-8]\nor r0, r2\nstdw [r10-8], 9\n"
        "stdw [r1-8], 9\nexit",
    ],
)
def test_a_run_sees_a_zeroed_stack_whatever_the_last_one_wrote(tier: str, source: str) -> None:
    vm = VM(assemble(source), tier=tier)
    assert [vm.run(bytearray(8)) for _ in range(3)] == [0, 0, 0]


@pytest.mark.parametrize("tier", TIERS)
def test_a_run_that_traps_after_dirtying_the_stack_leaves_no_trace(tier: str) -> None:
    source = "ldxdw r0, [r10-8]\nstdw [r10-8], 0x55\ncall local f\nexit\nf:\nstdw [r10-8], 1\n"
    vm = VM(assemble(source + "ldxb r2, [r1+8]\nexit"), tier=tier)
    with pytest.raises(MemoryAccessError):
        vm.run(bytearray(4))
    assert vm.run(bytearray(16)) == 0


@pytest.mark.parametrize("tier", TIERS)
def test_a_shorter_input_traps_where_the_interpreter_traps(tier: str) -> None:
    program = assemble("ldxb r0, [r1+63]\nldxw r3, [r1+60]\nstb [r1+63], 1\nexit")
    vm, reference = VM(program, tier=tier), VM(program)
    for length in (64, 63, 62, 0, 64, 16, 64):
        mem = bytearray(length)
        if length == 64:
            assert vm.run(mem) == 0
            assert mem[63] == 1
        else:
            assert _error(vm, mem) == _error(reference, bytearray(length))
    assert _error(vm, bytearray(64)[:60]) == (0, INPUT_BASE + 63, 1, False)


@pytest.mark.parametrize("tier", TIERS)
def test_writability_of_the_input_is_decided_per_run(tier: str) -> None:
    vm = VM(assemble("stb [r1], 7\nmov r0, 1\nexit"), tier=tier)
    mem = bytearray(4)
    for writable in (False, True, False, True):
        if writable:
            assert vm.run(mem, mem_writable=True) == 1
            assert mem[0] == 7
            mem[0] = 0
        else:
            with pytest.raises(MemoryAccessError) as info:
                vm.run(mem, mem_writable=False)
            assert (info.value.pc, info.value.write) == (0, True)
            assert mem[0] == 0


@pytest.mark.parametrize("tier", TIERS)
def test_an_input_is_mapped_only_in_the_run_that_passes_it(tier: str) -> None:
    vm = VM(assemble(f"lddw r1, {INPUT_BASE:#x}\nldxb r0, [r1]\nexit"), tier=tier)
    assert vm.run(b"\x05") == 5
    assert _error(vm, None)[:2] == (2, INPUT_BASE)
    with pytest.raises(MemoryAccessError):
        vm.run(mbuff=bytearray(4))
    assert vm.run(b"\x06") == 6


@pytest.mark.parametrize("tier", TIERS)
def test_bytes_inputs_are_never_written(tier: str) -> None:
    vm = VM(assemble("stb [r1], 7\nldxb r0, [r1]\nexit"), tier=tier)
    data = bytes(range(1, 17))
    assert vm.run(data) == 7
    assert data == bytes(range(1, 17))
    with pytest.raises(MemoryAccessError):
        vm.run(data, mem_writable=False)
    assert data == bytes(range(1, 17))
    view = memoryview(data)
    assert vm.run(view) == 7
    assert data == bytes(range(1, 17))


@pytest.mark.parametrize("tier", TIERS)
def test_callers_buffers_can_be_resized_once_a_run_returns(tier: str) -> None:
    vm = VM(assemble("ldxb r0, [r1]\nexit"), tier=tier)
    mem = bytearray(b"\x03")
    assert vm.run(mem) == 3
    mem.extend(b"\x00" * 100)  # raises BufferError if a run still exports it
    with pytest.raises(MemoryAccessError):
        vm.run(mem[:0])
    mem.clear()
    with pytest.raises(MemoryAccessError):
        vm.run(mem)
    mem.append(4)
    view = memoryview(mem)
    assert vm.run(view) == 4
    view.release()
    mem.append(5)
    meta = bytearray(b"\x06")
    assert vm.run(mbuff=meta) == 6
    meta.extend(b"\x00")


@pytest.mark.parametrize("tier", TIERS)
def test_regions_added_removed_and_resized_between_runs(tier: str) -> None:
    vm = VM(assemble("lddw r1, 0x40000000\nldxb r0, [r1+2]\nexit"), tier=tier)
    assert _error(vm, b"")[:2] == (2, 0x4000_0002)
    data = bytearray(b"\x01\x02")
    vm.add_region("extra", data)
    assert _error(vm, b"")[:2] == (2, 0x4000_0002)  # past its end
    data.append(9)  # the region is the caller's buffer: a resize shows in the next run
    assert vm.run(b"") == 9
    data[2] = 8
    assert vm.run(b"") == 8
    vm.remove_region("extra")
    assert _error(vm, b"")[:2] == (2, 0x4000_0002)
    vm.add_region("again", b"\x00\x00\x07", writable=False)
    assert vm.run(b"") == 7
    data.clear()  # no longer mapped, never exported after a run


@pytest.mark.parametrize("tier", TIERS)
def test_a_region_a_helper_maps_lasts_only_for_its_run(tier: str) -> None:
    def map_scratch(machine: Machine, *_: int) -> int:
        machine.memory.map(MemoryRegion("scratch", 0x5000_0000, bytearray(b"\x2a")))
        return 0

    def read_scratch(machine: Machine, *_: int) -> int:
        return machine.read(0x5000_0000, 1)[0]

    vm = VM(assemble("call 90\ncall 92\nexit"), tier=tier, helpers=HelperRegistry())
    vm.register_helper(90, map_scratch)
    vm.register_helper(92, read_scratch)
    assert vm.run() == 42
    vm.register_helper(90, lambda machine, *_: 0)
    assert _error(vm, None)[:2] == (1, 0x5000_0000)


@pytest.mark.parametrize("tier", TIERS)
def test_a_helper_may_run_the_same_vm_again(tier: str) -> None:
    depth = []

    def reenter(machine: Machine, *_: int) -> int:
        if depth:
            return 100
        depth.append(1)
        try:
            inner = vm.execute(bytearray(b"\x05"))
        finally:
            depth.clear()
        assert inner.instructions == 10
        return inner.r0

    source = (
        "ldxb r6, [r1]\nstb [r10-1], 9\ncall 80\nldxb r7, [r1]\nldxb r8, [r10-1]\n"
        "add r0, r6\nadd r0, r7\nadd r0, r8\nstb [r1], 0x33\nexit"
    )
    vm = VM(assemble(source), tier=tier, helpers=HelperRegistry())
    vm.register_helper(80, reenter)
    mem = bytearray(b"\x01")
    # the inner run: 100 + 5 + 5 + 9; the outer one adds 1 + 1 + 9
    assert vm.run(mem) == 119 + 11
    assert mem == bytearray(b"\x33")
    assert vm.execute(bytearray(b"\x02")).instructions == 10


@pytest.mark.parametrize("tier", TIERS)
def test_trace_output_belongs_to_its_own_run(tier: str) -> None:
    source = "stw [r10-4], 0x216968\nmov r1, r10\nadd r1, -4\nmov r2, 4\ncall 6\nexit"
    vm = VM(assemble(source), tier=tier)
    assert vm.execute().trace == ("hi!",)
    assert vm.execute().trace == ("hi!",)


@pytest.mark.parametrize("tier", TIERS)
def test_a_trap_in_a_callee_does_not_widen_the_next_runs_stack(tier: str) -> None:
    below_main_frame = _STACK_TOP - 512 - 8
    source = (
        "jeq r2, 0, probe\ncall local f\nexit\n"
        f"probe:\nlddw r3, {below_main_frame:#x}\nldxdw r0, [r3]\nexit\n"
        "f:\njeq r2, 1, stop\nldxb r0, [r1+100]\nexit\nstop:\ncall 91\nexit"
    )

    def stop(machine: Machine, *_: int) -> int:
        machine.stop(3)
        return 0

    program = assemble(source)
    vm, reference = (VM(program, tier=name, helpers=HelperRegistry()) for name in (tier, "interp"))
    for machine in (vm, reference):
        machine.register_helper(91, stop)
    probe = _error(reference, b"")
    assert probe[:2] == (5, below_main_frame)
    with pytest.raises(MemoryAccessError):
        vm.run(bytearray(4))  # traps inside f, one frame down
    assert _error(vm, b"") == probe
    assert vm.run(bytearray(1)) == 3  # stops inside f
    assert _error(vm, b"") == probe


@pytest.mark.parametrize("tier", TIERS)
def test_replacing_the_program_keeps_runs_clean(tier: str) -> None:
    deep = "call local f\nexit\nf:\nldxdw r0, [r10-8]\nstdw [r10-8], 5\nexit"
    vm = VM(assemble(deep), tier=tier)
    assert vm.run() == 0
    vm.set_program(assemble("ldxdw r0, [r10-8]\nstdw [r10-8], 6\nexit"))
    assert vm.run() == 0
    vm.set_program(assemble(deep))
    assert [vm.run(), vm.run()] == [0, 0]


@pytest.mark.parametrize("tier", TIERS)
def test_concurrent_runs_of_one_vm_stay_apart(tier: str) -> None:
    source = "ldxb r6, [r1]\nstxb [r10-1], r6\nmov r0, 0\nadd r0, 1\nldxb r0, [r10-1]\nexit"
    vm = VM(assemble(source), tier=tier)
    failures: list[str] = []

    def work(value: int) -> None:
        mem = bytearray([value])
        for _ in range(300):
            result = vm.run(mem)
            if result != value:
                failures.append(f"{value}: {result}")

    threads = [threading.Thread(target=work, args=(value,)) for value in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize("tier", TIERS)
def test_a_helper_may_replace_the_program_mid_run(tier: str) -> None:
    deep = assemble("call local f\nexit\nf:\nldxdw r0, [r10-8]\nstdw [r10-8], 5\nexit")

    def swap(machine: Machine, *_: int) -> int:
        vm.set_program(deep)
        return 0

    vm = VM(assemble("stdw [r10-8], 4\ncall 93\nldxdw r0, [r10-8]\nexit"), tier=tier)
    vm.register_helper(93, swap)
    assert vm.run() == 4
    assert [vm.run(), vm.run()] == [0, 0]


@pytest.mark.parametrize("tier", TIERS)
def test_a_region_across_two_slots_then_gone_leaves_nothing_mapped(tier: str) -> None:
    # a region the x86-64 table cannot describe makes that tier run the interpreter;
    # the runs after it must not find any of its rows still open
    vm = VM(assemble("lddw r1, 0x4ffffffc\nldxw r0, [r1+4]\nexit"), tier=tier)
    assert _error(vm, b"")[:2] == (2, 0x5000_0000)
    vm.add_region("wide", b"\x00\x00\x00\x00\x2a\x00\x00\x00", vm_start=0x4FFF_FFFC)
    assert vm.run(b"") == 42
    vm.remove_region("wide")
    assert _error(vm, b"")[:2] == (2, 0x5000_0000)
    vm.add_region("low", bytearray(8), vm_start=0x4FFF_FFF0)
    assert _error(vm, b"")[:2] == (2, 0x5000_0000)
