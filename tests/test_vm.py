"""The Python API: VM flavours, regions, helpers, verifier hook, program replacement."""

from __future__ import annotations

import pytest

import pybpf
from pybpf import (
    VM,
    FixedMbuffVM,
    HelperError,
    HelperRegistry,
    MemoryAccessError,
    Program,
    UnknownHelperError,
    VerifierError,
)
from pybpf.asm import assemble
from pybpf.runtime.machine import Machine

RETURN_R1 = assemble("mov r0, r1\nexit")
RETURN_R2 = assemble("mov r0, r2\nexit")


def test_no_data_flavour_starts_with_r1_zero() -> None:
    assert VM(RETURN_R1).run() == 0


def test_raw_memory_flavour_passes_address_and_length() -> None:
    vm = VM(RETURN_R2)
    assert vm.run(b"\x00" * 37) == 37
    assert VM(RETURN_R1).run(b"abc") == vm.input_address


def test_raw_memory_is_written_in_place() -> None:
    vm = VM(assemble("stb [r1+1], 0x7f\nmov r0, 0\nexit"))
    data = bytearray(b"\x00\x00\x00")
    vm.run(data)
    assert data == bytearray(b"\x00\x7f\x00")


def test_bytes_input_is_copied_not_mutated() -> None:
    data = b"\x00\x00"
    VM(assemble("stb [r1], 1\nexit")).run(data)
    assert data == b"\x00\x00"


def test_read_only_input_rejects_stores() -> None:
    vm = VM(assemble("stb [r1], 1\nexit"))
    with pytest.raises(MemoryAccessError) as info:
        vm.run(bytearray(4), mem_writable=False)
    assert (info.value.pc, info.value.write) == (0, True)


def test_metadata_buffer_flavour_points_r1_at_the_buffer() -> None:
    # the program follows a data pointer stored at offset 8 of the metadata buffer
    program = assemble("ldxw r2, [r1+8]\nldxb r0, [r2+1]\nexit")
    vm = VM(program)
    mbuff = bytearray(16)
    mbuff[8:12] = vm.input_address.to_bytes(4, "little")
    assert vm.run(b"\x10\x20\x30", mbuff=mbuff) == 0x20


def test_fixed_metadata_buffer_flavour_writes_bounds() -> None:
    # r0 = data_end - data, read from the VM-maintained metadata buffer
    program = assemble("ldxdw r2, [r1+0x40]\nldxdw r3, [r1+0x50]\nmov r0, r3\nsub r0, r2\nexit")
    vm = FixedMbuffVM(program, mbuff_size=0x60, data_offset=0x40, data_end_offset=0x50)
    assert vm.run(b"\x00" * 11) == 11
    assert vm.run(b"\x00" * 3) == 3


def test_fixed_metadata_buffer_offsets_are_checked() -> None:
    with pytest.raises(ValueError):
        FixedMbuffVM(RETURN_R1, mbuff_size=8, data_offset=4, data_end_offset=0)


def test_extra_regions_are_mapped_with_their_permissions() -> None:
    vm = VM(assemble("lddw r1, 0x50000000\nldxw r0, [r1+4]\nexit"))
    vm.add_region(
        "table",
        bytearray(b"\x01\x00\x00\x00\x2a\x00\x00\x00"),
        vm_start=0x5000_0000,
        writable=False,
    )
    assert vm.run() == 42
    vm.set_program(assemble("lddw r1, 0x50000000\nstw [r1], 1\nexit"))
    with pytest.raises(MemoryAccessError) as info:
        vm.run()
    assert info.value.pc == 2


def test_extra_regions_get_free_slots_and_may_not_clash() -> None:
    vm = VM(RETURN_R1)
    first = vm.add_region("a", bytearray(8))
    second = vm.add_region("b", bytearray(8))
    assert first.base != second.base
    with pytest.raises(ValueError):
        vm.add_region("c", bytearray(8), vm_start=first.base + 4)
    with pytest.raises(ValueError):
        vm.add_region("d", bytearray(8), vm_start=vm.input_address)
    with pytest.raises(ValueError):
        vm.add_region("e", bytearray(8), vm_start=0x10)


def test_helpers_register_by_number_and_see_memory() -> None:
    def add_first_byte(machine: Machine, ptr: int, extra: int, *_: int) -> int:
        return machine.read(ptr, 1)[0] + extra

    vm = VM(assemble("mov r2, 100\ncall 77\nexit"), helpers=HelperRegistry())
    vm.register_helper(77, add_first_byte)
    assert vm.run(b"\x05") == 105
    assert vm.helpers.by_name("add_first_byte").number == 77


def test_unknown_helper_traps_at_the_call() -> None:
    vm = VM(assemble("mov r0, 0\ncall 999\nexit"), helpers=HelperRegistry())
    with pytest.raises(UnknownHelperError) as info:
        vm.run()
    assert info.value.pc == 1


def test_a_failing_helper_becomes_a_helper_error() -> None:
    def broken(machine: Machine, *_: int) -> int:
        raise RuntimeError("boom")

    vm = VM(assemble("call 1\nexit"), helpers=HelperRegistry())
    vm.register_helper(1, broken)
    with pytest.raises(HelperError) as info:
        vm.run()
    assert info.value.pc == 0
    assert isinstance(info.value.__cause__, RuntimeError)


def test_helper_memory_faults_name_the_call() -> None:
    def poke(machine: Machine, ptr: int, *_: int) -> int:
        machine.write(ptr, b"\x01")
        return 0

    vm = VM(assemble("mov r1, 16\ncall 3\nexit"), helpers=HelperRegistry())
    vm.register_helper(3, poke)
    with pytest.raises(MemoryAccessError) as info:
        vm.run()
    assert info.value.pc == 1


def test_trace_printk_formats_like_the_kernel() -> None:
    source = """
        lddw r1, 0x0a64252078252073
        stxdw [r10-16], r1
        mov r1, 0
        stxdw [r10-8], r1
        mov r1, r10
        add r1, -16
        mov r2, 9
        mov r3, 255
        mov r4, -1
        call 6
        exit
    """
    lines: list[str] = []
    result = VM(assemble(source), trace=lines.append).execute()
    assert result.trace == ("s ff -1",)
    assert lines == ["s ff -1"]
    assert result.r0 == len("s ff -1\n")


def test_prandom_is_reproducible_from_the_seed() -> None:
    program = assemble("call 7\nexit")
    assert VM(program, seed=3).run() == VM(program, seed=3).run()


def test_verifier_hook_runs_on_load_and_on_replacement() -> None:
    seen: list[int] = []

    def no_helper_calls(program: Program) -> None:
        seen.append(len(program))
        for pc, insn in program:
            if insn.spec.mnemonic == "call":
                raise VerifierError("helper calls are not allowed here", pc)

    vm = VM(RETURN_R1, verifier=no_helper_calls)
    with pytest.raises(VerifierError) as info:
        vm.set_program(assemble("mov r0, 0\ncall 5\nexit"))
    assert info.value.pc == 1
    assert vm.program == RETURN_R1  # a refused program does not replace the old one
    assert seen == [2, 3]


def test_set_verifier_checks_the_current_program() -> None:
    def refuse_all(program: Program) -> None:
        raise VerifierError("no")

    vm = VM(RETURN_R1)
    with pytest.raises(VerifierError):
        vm.set_verifier(refuse_all)


def test_program_replacement_changes_the_result() -> None:
    vm = VM(assemble("mov r0, 1\nexit"))
    vm.set_program(assemble("mov r0, 2\nexit"))
    assert vm.run() == 2


def test_raw_bytes_are_accepted_as_a_program() -> None:
    assert VM(assemble("mov r0, 9\nexit").to_bytes()).run() == 9


def test_instruction_count_and_observer() -> None:
    vm = VM(assemble("mov r0, 1\nlddw r1, 5\nadd r0, r1\nexit"))
    pcs: list[int] = []
    result = vm.execute(observer=lambda pc, machine: pcs.append(pc))
    assert (result.r0, result.instructions) == (6, 4)
    assert pcs == [0, 1, 3, 4]


def test_unknown_tier_is_a_clear_error() -> None:
    with pytest.raises(pybpf.TierUnavailableError):
        VM(RETURN_R1, tier="quantum")


def test_every_error_is_a_bpf_error() -> None:
    for name in pybpf.__all__:
        obj = getattr(pybpf, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, pybpf.BpfError), name
