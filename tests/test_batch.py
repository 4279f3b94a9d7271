"""VM.run_batch and pybpf.batch: input forms, in-place writes, errors, every tier."""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from typing import Any

import pytest

import pybpf
from pybpf import VM, FixedMbuffVM, MemoryAccessError
from pybpf.asm import assemble
from pybpf.batch import BatchInput, prepare_batch
from pybpf.runtime.machine import Machine

TIERS = [
    pytest.param(name, marks=[pytest.mark.skip(reason=f"tier {name}: {reason}")] if reason else [])
    for name, reason in pybpf.available_tiers()
]

# r0 = first byte + length * 256; then the first byte is overwritten with 0xee
FIRST_PLUS_LENGTH = assemble(
    """
    ldxb r0, [r1]
    lsh r2, 8
    add r0, r2
    stb [r1], 0xee
    exit
    """
)
RETURN_LENGTH = assemble("mov r0, r2\nexit")

# r0 = 1 for IPv4 TCP to port 80 (the example filter's logic), else 0; any length is safe
FILTER = assemble(
    """
    mov r0, 0
    jlt r2, 34, out
    ldxh r3, [r1+12]
    jne r3, 0x0008, out
    ldxb r3, [r1+23]
    jne r3, 6, out
    ldxb r3, [r1+14]
    and r3, 0xf
    lsh r3, 2
    mov r4, r3
    add r4, 18
    jgt r4, r2, out
    add r3, r1
    ldxh r3, [r3+16]
    jne r3, 0x5000, out
    mov r0, 1
out:
    exit
    """
)


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def _expected(records: list[bytes]) -> list[int]:
    return [record[0] + 256 * len(record) for record in records]


RECORDS = [b"\x01\x02", b"\x03", b"\x05\x06\x07"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: RECORDS, id="list-of-bytes"),
        pytest.param(lambda: tuple(RECORDS), id="tuple"),
        pytest.param(lambda: [bytearray(r) for r in RECORDS], id="list-of-bytearrays"),
        pytest.param(lambda: [memoryview(r) for r in RECORDS], id="list-of-memoryviews"),
        pytest.param(lambda: iter(RECORDS), id="iterator"),
    ],
)
def test_sequence_of_records(tier: str, make: Callable[[], Any]) -> None:
    out = VM(FIRST_PLUS_LENGTH, tier=tier).run_batch(make())
    assert isinstance(out, array) and out.typecode == "Q"
    assert list(out) == _expected(RECORDS)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_single_buffer_with_record_size(tier: str, kind: type) -> None:
    data = kind(b"\x01\x02\x03\x04\x05\x06")
    out = VM(FIRST_PLUS_LENGTH, tier=tier).run_batch(data, record_size=2)
    assert list(out) == [1 + 512, 3 + 512, 5 + 512]


def test_record_size_counts_bytes_of_wider_items() -> None:
    data = array("H", [0x0201, 0x0403])
    assert list(VM(FIRST_PLUS_LENGTH).run_batch(data, record_size=2)) == [1 + 512, 3 + 512]


def test_writes_land_in_a_single_writable_buffer(tier: str) -> None:
    data = bytearray(b"\x01\x02\x03\x04")
    VM(FIRST_PLUS_LENGTH, tier=tier).run_batch(data, record_size=2)
    assert data == bytearray(b"\xee\x02\xee\x04")


def test_writes_land_in_each_writable_record(tier: str) -> None:
    first, second = bytearray(b"\x01\x02"), bytearray(b"\x03")
    frozen = b"\x05"
    VM(FIRST_PLUS_LENGTH, tier=tier).run_batch([first, frozen, second])
    assert (first, second, frozen) == (bytearray(b"\xee\x02"), bytearray(b"\xee"), b"\x05")


def test_bytes_inputs_are_not_modified() -> None:
    data = b"\x01\x02\x03\x04"
    VM(FIRST_PLUS_LENGTH).run_batch(data, record_size=2)
    assert data == b"\x01\x02\x03\x04"


def test_read_only_records_reject_stores_and_stay_unchanged(tier: str) -> None:
    data = bytearray(b"\x01\x02")
    with pytest.raises(MemoryAccessError) as info:
        VM(FIRST_PLUS_LENGTH, tier=tier).run_batch(data, record_size=1, mem_writable=False)
    assert (info.value.pc, info.value.write, info.value.record_index) == (3, True, 0)  # type: ignore[attr-defined]
    assert data == bytearray(b"\x01\x02")


@pytest.mark.parametrize(
    ("inputs", "record_size"),
    [([], None), ((), None), (b"", 4), (bytearray(), 1)],
    ids=["list", "tuple", "bytes", "bytearray"],
)
def test_empty_batch(tier: str, inputs: Any, record_size: int | None) -> None:
    out = VM(FIRST_PLUS_LENGTH, tier=tier).run_batch(inputs, record_size=record_size)
    assert out == array("Q")


def test_first_failing_record_raises_with_its_index(tier: str) -> None:
    records = [bytearray(b"\x01"), bytearray(), bytearray(b"\x02")]
    with pytest.raises(MemoryAccessError) as info:
        VM(FIRST_PLUS_LENGTH, tier=tier).run_batch(records)
    error = info.value
    assert (error.kind, error.pc, error.write) == (pybpf.TrapKind.MEMORY_ACCESS, 0, False)
    assert error.record_index == 1  # type: ignore[attr-defined]
    assert any("record 1" in note for note in error.__notes__)
    # stores made before the fault are visible, as with run()
    assert records[0] == bytearray(b"\xee")


def test_equals_per_record_run(tier: str) -> None:
    rng = random.Random(7)
    packets = []
    for index in range(300):
        packet = bytearray(rng.randbytes(rng.randrange(0, 100)))
        if index % 3 == 0 and len(packet) >= 40:  # IPv4 TCP, half of them to port 80
            packet[12:14], packet[14], packet[23] = b"\x08\x00", 0x45, 6
            packet[36:38] = b"\x00\x50" if rng.random() < 0.5 else b"\x01\xbb"
        packets.append(bytes(packet))
    vm = VM(FILTER, tier=tier)
    expected = [vm.run(packet) for packet in packets]
    assert 0 < sum(expected) < len(packets)
    assert list(vm.run_batch(packets)) == expected
    assert list(VM(FILTER).run_batch(packets)) == expected  # and equal to the interpreter


# r0 = the stack word a run finds (0 on a fresh stack), then the record's length is
# left in it: a run or record that saw an earlier one's stack would return non-zero
STACK_WITNESS = assemble("ldxdw r0, [r10-8]\nadd r0, r2\nstxdw [r10-8], r2\nsub r0, r2\nexit")


def test_runs_and_batches_on_one_vm_start_from_a_clean_machine(tier: str) -> None:
    vm = VM(STACK_WITNESS, tier=tier)
    records = [b"abc", b"", b"abcdefgh"]
    for _ in range(3):
        assert vm.run(b"abcd") == 0
        assert list(vm.run_batch(records)) == [0, 0, 0]
        assert list(vm.run_batch(prepare_batch(records, writable=False))) == [0, 0, 0]
    assert vm.run(bytearray(b"ab")) == 0


def test_fixed_mbuff_vm_sets_bounds_for_every_record(tier: str) -> None:
    program = assemble("ldxdw r2, [r1+8]\nldxdw r3, [r1]\nmov r0, r2\nsub r0, r3\nexit")
    vm = FixedMbuffVM(program, mbuff_size=16, data_offset=0, data_end_offset=8, tier=tier)
    assert list(vm.run_batch([b"ab", b"", b"abcde"])) == [2, 0, 5]


def test_helpers_see_each_record() -> None:
    def first_byte(machine: Machine, r1: int, *_: int) -> int:
        return machine.read(r1, 1)[0]

    vm = VM(assemble("call 77\nexit"))
    vm.register_helper(77, first_byte)
    assert list(vm.run_batch(b"\x07\x08\x09", record_size=1)) == [7, 8, 9]


class _Recorder:
    """A compiled program with a batch fast path, standing in for a native tier."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[BatchInput] = []

    def run(self, machine: Machine) -> int:
        result: int = self.inner.run(machine)
        return result

    def run_batch(self, vm: VM, batch: BatchInput, out: array[int]) -> None:
        self.batches.append(batch)
        for index in range(len(batch)):
            out[index] = 1000 + index


def _install_recorder(vm: VM) -> _Recorder:
    recorder = _Recorder(vm._compiled)
    vm._compiled = recorder
    return recorder


def test_a_compiled_batch_runner_takes_the_whole_batch() -> None:
    vm = VM(FIRST_PLUS_LENGTH)
    recorder = _install_recorder(vm)
    assert list(vm.run_batch(RECORDS)) == [1000, 1001, 1002]
    (batch,) = recorder.batches
    assert (batch.buffer.tobytes(), list(batch.offsets), list(batch.lengths)) == (
        b"\x01\x02\x03\x05\x06\x07",
        [0, 2, 3],
        [2, 1, 3],
    )


def test_a_subclass_overriding_execute_keeps_the_generic_path() -> None:
    vm = FixedMbuffVM(RETURN_LENGTH, mbuff_size=8, data_offset=0, data_end_offset=0)
    recorder = _install_recorder(vm)
    assert list(vm.run_batch([b"", b""])) == [8, 8]
    assert recorder.batches == []


# -- prepare_batch ---------------------------------------------------------------------


def test_prepare_batch_lays_records_back_to_back() -> None:
    batch = prepare_batch([b"ab", b"", b"cde"])
    assert (batch.offsets.typecode, batch.lengths.typecode) == ("Q", "Q")
    assert (list(batch.offsets), list(batch.lengths)) == ([0, 2, 2], [2, 0, 3])
    assert batch.buffer.tobytes() == b"abcde" and batch.writable
    assert [batch.record(i).tobytes() for i in range(len(batch))] == [b"ab", b"", b"cde"]


def test_prepare_batch_read_only_shares_memory() -> None:
    data = bytearray(b"abcd")
    batch = prepare_batch(data, 2, writable=False)
    assert not batch.writable and batch.buffer.readonly
    data[0] = ord("z")
    assert batch.record(0).tobytes() == b"zb"


@pytest.mark.parametrize(
    ("inputs", "record_size", "error"),
    [
        ("text", None, TypeError),
        ([b"ok", "text"], None, TypeError),
        ([b"ok", 5], None, TypeError),
        ([b"ab"], 2, TypeError),
        (b"abc", None, TypeError),
        (b"abc", 2, ValueError),
        (b"abc", 0, ValueError),
        (memoryview(bytes(8)).cast("B", (2, 2, 2)), None, ValueError),
    ],
    ids=[
        "str",
        "str-record",
        "int-record",
        "record-size-with-list",
        "no-record-size",
        "not-a-multiple",
        "zero-record-size",
        "3-d",
    ],
)
def test_prepare_batch_rejects(inputs: Any, record_size: int | None, error: type) -> None:
    with pytest.raises(error):
        prepare_batch(inputs, record_size)


# -- NumPy (optional) ------------------------------------------------------------------


def _numpy() -> Any:
    return pytest.importorskip("numpy")


def test_numpy_rows_are_records_and_writes_land(tier: str) -> None:
    np = _numpy()
    packets = np.arange(12, dtype=np.uint8).reshape(4, 3)
    out = VM(FIRST_PLUS_LENGTH, tier=tier).run_batch(packets)
    assert list(out) == [0 + 768, 3 + 768, 6 + 768, 9 + 768]
    assert packets[:, 0].tolist() == [0xEE] * 4 and packets[:, 1].tolist() == [1, 4, 7, 10]
    assert np.frombuffer(out, dtype=np.uint64).tolist() == list(out)


def test_numpy_read_only_array_is_copied() -> None:
    np = _numpy()
    packets = np.ones((2, 2), dtype=np.uint8)
    packets.flags.writeable = False
    assert list(VM(FIRST_PLUS_LENGTH).run_batch(packets)) == [513, 513]
    assert packets.tolist() == [[1, 1], [1, 1]]


def test_numpy_record_size_must_match_rows() -> None:
    np = _numpy()
    packets = np.zeros((2, 4), dtype=np.uint8)
    assert len(VM(RETURN_LENGTH).run_batch(packets, record_size=4)) == 2
    with pytest.raises(ValueError):
        VM(RETURN_LENGTH).run_batch(packets, record_size=2)


def test_numpy_empty_and_non_contiguous() -> None:
    np = _numpy()
    assert len(VM(RETURN_LENGTH).run_batch(np.zeros((0, 64), dtype=np.uint8))) == 0
    assert list(VM(RETURN_LENGTH).run_batch(np.zeros((3, 0), dtype=np.uint8))) == [0, 0, 0]
    with pytest.raises(ValueError, match="contiguous"):
        VM(RETURN_LENGTH).run_batch(np.zeros((4, 4), dtype=np.uint8)[:, :2])
