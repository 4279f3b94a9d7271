"""The ``.data`` format guards itself: malformed files are rejected with their file and
line, and a case whose expectations are wrong fails instead of passing silently."""

from __future__ import annotations

import pytest

from datafile import (
    ERROR_KINDS,
    TRAP_KINDS,
    CaseMismatch,
    DataCase,
    DataFileError,
    Outcome,
    check_case,
    parse_text,
    run_case,
)
from pybpf import BudgetExceededError, TrapKind

PATH = "topic/case.data"

MOV_R0_1 = "b7 00 00 00 01 00 00 00"
EXIT = "95 00 00 00 00 00 00 00"
NULL_LOAD = "b7 02 00 00 00 00 00 00\n71 20 00 00 00 00 00 00\n" + EXIT
"""mov r2, 0; ldxb r0, [r2+0]; exit: faults at pc 1."""
STORE_7 = "b7 00 00 00 00 00 00 00\n72 01 00 00 07 00 00 00\n" + EXIT
"""mov r0, 0; stb [r1+0], 7; exit."""


def parse(text: str) -> DataCase:
    return parse_text(text, PATH, "topic/case")


def raw_case(program: str, tail: str) -> DataCase:
    return parse(f"-- raw\n{program}\n{tail}")


# -- parsing -------------------------------------------------------------------------


def test_parses_every_section() -> None:
    case = parse(
        "# what this pins\n"
        "# and why\n"
        "-- asm\n"
        "mov r0, 1   # comment\n"
        "exit\n"
        "-- mem\n"
        "00 01  # first\n"
        "02 03\n"
        "-- region 0x40000000 ro\n"
        "aa bb\n"
        "-- region 0x50000000 rw\n"
        "cc\n"
        "-- options\n"
        "budget=100\n"
        "max-call-depth=3\n"
        "stack-size=1024\n"
        "mem=readonly\n"
        "helpers=conformance\n"
        "-- error memory-access 0x3\n"
        "-- mem-after\n"
        "00 01 02 03\n"
    )
    assert case.name == "topic/case"
    assert case.comment == "what this pins\nand why"
    assert case.asm is not None and case.asm.splitlines()[0] == "mov r0, 1   # comment"
    assert case.asm_line == 4
    assert case.raw is None
    assert case.mem == bytes([0, 1, 2, 3])
    assert [(r.vm_start, r.writable, r.data) for r in case.regions] == [
        (0x40000000, False, b"\xaa\xbb"),
        (0x50000000, True, b"\xcc"),
    ]
    options = case.options
    assert (options.budget, options.max_call_depth, options.stack_size) == (100, 3, 1024)
    assert (options.mem_writable, options.helpers) == (False, "conformance")
    assert case.result is None
    assert case.error is not None and (case.error.kind, case.error.pc) == ("memory-access", 3)
    assert case.mem_after == bytes([0, 1, 2, 3])


def test_result_is_a_u64() -> None:
    assert raw_case(EXIT, "-- result\n-1").result == (1 << 64) - 1
    assert raw_case(EXIT, "-- result\n0xffffffffffffffff").result == (1 << 64) - 1
    assert raw_case(EXIT, "-- result\n42").result == 42


def test_error_pc_is_optional_and_raw_may_be_empty() -> None:
    case = parse("-- raw\n-- error verify\n")
    assert case.raw == b""
    assert case.error is not None and (case.error.kind, case.error.pc) == ("verify", None)


MALFORMED = {
    "unknown section": ("-- raw\n95 00 00 00 00 00 00 00\n-- resutl\n0\n", 3),
    "dashes alone": ("-- raw\n--\n", 2),
    "text before sections": ("mov r0, 1\n-- raw\n-- result\n0\n", 1),
    "bad hex token": ("-- raw\nb7 0\n-- result\n0\n", 2),
    "non-hex token": ("-- raw\n" + EXIT + "\n-- mem\n00\nzz\n-- result\n0\n", 5),
    "four-digit token": ("-- raw\nb700\n-- result\n0\n", 2),
    "unknown option": ("-- raw\n" + EXIT + "\n-- options\nbudgit=3\n-- result\n0\n", 4),
    "option without value": ("-- raw\n" + EXIT + "\n-- options\nbudget\n-- result\n0\n", 4),
    "option not a number": ("-- raw\n" + EXIT + "\n-- options\nbudget=lots\n-- result\n0\n", 4),
    "option zero": ("-- raw\n" + EXIT + "\n-- options\nstack-size=0\n-- result\n0\n", 4),
    "option twice": ("-- raw\n" + EXIT + "\n-- options\nbudget=1\nbudget=2\n-- result\n0\n", 5),
    "bad mem option": ("-- raw\n" + EXIT + "\n-- mem\n00\n-- options\nmem=ro\n-- result\n0\n", 6),
    "bad helper set": ("-- raw\n" + EXIT + "\n-- options\nhelpers=all\n-- result\n0\n", 4),
    "readonly without mem": ("-- raw\n" + EXIT + "\n-- options\nmem=readonly\n-- result\n0\n", 3),
    "result and error": ("-- raw\n" + EXIT + "\n-- result\n0\n-- error verify\n", 5),
    "neither result nor error": ("-- raw\n" + EXIT + "\n-- mem\n00\n", 4),
    "asm and raw": ("-- asm\nexit\n-- raw\n" + EXIT + "\n-- result\n0\n", 6),
    "no program": ("-- result\n0\n", 2),
    "empty asm": ("-- asm\n# nothing\n-- result\n0\n", 1),
    "second mem": ("-- raw\n" + EXIT + "\n-- mem\n00\n-- mem\n01\n-- result\n0\n", 5),
    "two results": ("-- raw\n" + EXIT + "\n-- result\n1\n2\n", 3),
    "result not a number": ("-- raw\n" + EXIT + "\n-- result\nzero\n", 4),
    "result too wide": ("-- raw\n" + EXIT + "\n-- result\n0x10000000000000000\n", 4),
    "result argument": ("-- raw\n" + EXIT + "\n-- result 5\n", 3),
    "unknown error kind": ("-- raw\n" + EXIT + "\n-- error segfault 0\n", 3),
    "error pc not a number": ("-- raw\n" + EXIT + "\n-- error verify one\n", 3),
    "error negative pc": ("-- raw\n" + EXIT + "\n-- error verify -1\n", 3),
    "error extra words": ("-- raw\n" + EXIT + "\n-- error verify 1 2\n", 3),
    "error without kind": ("-- raw\n" + EXIT + "\n-- error\n", 3),
    "error with a body": ("-- raw\n" + EXIT + "\n-- error verify\n0\n", 4),
    "mem-after without mem": ("-- raw\n" + EXIT + "\n-- result\n0\n-- mem-after\n00\n", 5),
    "mem-after wrong length": (
        "-- raw\n" + EXIT + "\n-- mem\n00 00\n-- result\n0\n-- mem-after\n00\n",
        7,
    ),
    "mem-after of a load error": (
        "-- raw\n" + EXIT + "\n-- mem\n00\n-- error decode\n-- mem-after\n00\n",
        6,
    ),
    "instructions with an error": (
        "-- raw\n" + EXIT + "\n-- error decode\n-- instructions\n1\n",
        4,
    ),
    "instructions negative": ("-- raw\n" + EXIT + "\n-- result\n0\n-- instructions\n-1\n", 6),
    "instructions two values": (
        "-- raw\n" + EXIT + "\n-- result\n0\n-- instructions\n1 2\n",
        5,
    ),
    "region permission": ("-- raw\n" + EXIT + "\n-- region 0x40000000 rx\n00\n-- result\n0\n", 3),
    "region without address": ("-- raw\n" + EXIT + "\n-- region ro\n00\n-- result\n0\n", 3),
    "region at zero": ("-- raw\n" + EXIT + "\n-- region 0 rw\n00\n-- result\n0\n", 3),
    "region beyond 32 bits": (
        "-- raw\n" + EXIT + "\n-- region 0x100000000 rw\n00\n-- result\n0\n",
        3,
    ),
    "regions overlap": (
        "-- raw\n" + EXIT + "\n-- region 0x40000000 rw\n00 00\n-- region 0x40000001 ro\n00\n"
        "-- result\n0\n",
        5,
    ),
}


@pytest.mark.parametrize(("text", "line"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_rejects_malformed_file_with_its_line(text: str, line: int) -> None:
    with pytest.raises(DataFileError) as info:
        parse(text)
    assert str(info.value.path) == PATH
    assert info.value.line == line
    assert str(info.value).startswith(f"{PATH}:{line}: ")


def test_assembler_errors_point_at_the_file_line() -> None:
    case = parse("# header\n-- asm\nmov r0, 1\nbogus r0\nexit\n-- result\n1\n")
    with pytest.raises(DataFileError) as info:
        case.program()
    assert info.value.line == 4


def test_every_trap_kind_has_a_spelling() -> None:
    spelled = {kind.name.lower().replace("_", "-") for kind in TrapKind}
    assert spelled == set(TRAP_KINDS)
    assert set(TRAP_KINDS) < set(ERROR_KINDS)


# -- wrong expectations must fail ----------------------------------------------------

WRONG = {
    "wrong r0": (f"{MOV_R0_1}\n{EXIT}", "-- result\n2\n"),
    "wrong instruction count": (f"{MOV_R0_1}\n{EXIT}", "-- result\n1\n-- instructions\n3\n"),
    "result expected, trap happened": (NULL_LOAD, "-- result\n0\n"),
    "trap expected, result happened": (f"{MOV_R0_1}\n{EXIT}", "-- error memory-access\n"),
    "wrong trap kind": (NULL_LOAD, "-- error budget-exceeded\n"),
    "wrong trap pc": (NULL_LOAD, "-- error memory-access 0\n"),
    "decode expected, program fine": (f"{MOV_R0_1}\n{EXIT}", "-- error decode\n"),
    "verify expected, decode happened": ("ff 00 00 00 00 00 00 00\n" + EXIT, "-- error verify\n"),
    "decode expected, verify happened": (MOV_R0_1, "-- error decode\n"),
    "wrong load pc": ("ff 00 00 00 00 00 00 00\n" + EXIT, "-- error decode 1\n"),
    "wrong memory after": (
        STORE_7,
        "-- mem\n00\n-- result\n0\n-- mem-after\n00\n",
    ),
}

RIGHT = {
    "right r0": (f"{MOV_R0_1}\n{EXIT}", "-- result\n1\n"),
    "right trap": (NULL_LOAD, "-- error memory-access 1\n"),
    "right trap, any pc": (NULL_LOAD, "-- error memory-access\n"),
    "right decode": ("ff 00 00 00 00 00 00 00\n" + EXIT, "-- error decode 0\n"),
    "right verify": (MOV_R0_1, "-- error verify\n"),
    "right instruction count": (f"{MOV_R0_1}\n{EXIT}", "-- result\n1\n-- instructions\n2\n"),
    "right memory after": (
        STORE_7,
        "-- mem\n00\n-- result\n0\n-- mem-after\n07\n",
    ),
}


@pytest.mark.parametrize(("program", "tail"), list(WRONG.values()), ids=list(WRONG))
def test_wrong_expectation_fails(program: str, tail: str) -> None:
    case = raw_case(program, tail)
    outcome = run_case(case, "interp")
    with pytest.raises(CaseMismatch):
        check_case(case, outcome, "interp")


@pytest.mark.parametrize(("program", "tail"), list(RIGHT.values()), ids=list(RIGHT))
def test_right_expectation_passes(program: str, tail: str) -> None:
    case = raw_case(program, tail)
    check_case(case, run_case(case, "interp"), "interp")


def test_budget_pc_is_exact_only_on_the_reference_tier() -> None:
    case = raw_case(f"{MOV_R0_1}\n{EXIT}", "-- error budget-exceeded 1\n")
    late = Outcome(None, BudgetExceededError(pc=0, budget=1), None)
    check_case(case, late, "x86_64")
    with pytest.raises(CaseMismatch):
        check_case(case, late, "interp")
    wrong_kind = raw_case(f"{MOV_R0_1}\n{EXIT}", "-- error memory-access 1\n")
    with pytest.raises(CaseMismatch):
        check_case(wrong_kind, late, "x86_64")
