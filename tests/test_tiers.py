"""Tier selection, coverage of the ISA by every tier, and the safety promises of each."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pybpf import VM, BudgetExceededError, MemoryAccessError, conformance_helpers
from pybpf.asm import assemble
from pybpf.cli import main
from pybpf.isa import INSTRUCTIONS
from pybpf.tiers import available_tiers, get_tier

TIERS = [name for name, reason in available_tiers() if reason is None]
NATIVE = pytest.mark.skipif("x86_64" not in TIERS, reason="x86-64 tier unavailable here")


def test_every_tier_lowers_or_refuses_every_row() -> None:
    from pybpf.tiers.interp import LOWERINGS, REFUSED
    from pybpf.tiers.x86_64.compiler import LOWERED_OPS

    for row in INSTRUCTIONS:
        assert (row.op in LOWERINGS) != (row.op in REFUSED), row.mnemonic
        assert (row.op in LOWERED_OPS) != (row.op in REFUSED), row.mnemonic


@pytest.mark.parametrize("tier", TIERS)
def test_infinite_loop_stops_on_the_budget(tier: str) -> None:
    vm = VM(assemble("ja -1\nexit"), tier=tier, budget=10_000)
    with pytest.raises(BudgetExceededError) as info:
        vm.run()
    assert info.value.pc == 0


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(
    "address", [0, 8, 0x7FFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFF8, 0x1_2000_0000, 0x0FFF_FFF8]
)
def test_wild_pointers_trap_and_the_process_survives(tier: str, address: int) -> None:
    for source, pc in (
        (f"lddw r1, {address:#x}\nldxdw r0, [r1]\nexit", 2),
        (f"lddw r1, {address:#x}\nstdw [r1], 7\nexit", 2),
        (f"lddw r1, {address:#x}\nmov r2, 1\nlock fetch add [r1], r2\nexit", 3),
    ):
        vm = VM(assemble(source), tier=tier)
        with pytest.raises(MemoryAccessError) as info:
            vm.run(bytearray(16))
        assert (info.value.pc, info.value.address) == (pc, address)


@NATIVE
def test_native_faults_in_a_child_process_do_not_crash_it() -> None:
    # the same wild accesses, in a fresh interpreter: it must exit normally
    code = (
        "import pybpf\n"
        "from pybpf.asm import assemble\n"
        "for a in (0, 0xdeadbeef, 0x7fffffffffff):\n"
        "    try:\n"
        "        pybpf.VM(assemble(f'lddw r1, {a}\\nldxdw r0, [r1]\\nexit'), tier='x86_64').run()\n"
        "    except pybpf.MemoryAccessError:\n"
        "        pass\n"
        "print('alive')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "alive"), done.stderr


def test_auto_picks_the_fastest_available_tier() -> None:
    fastest = "x86_64" if "x86_64" in TIERS else "pycode"
    assert get_tier("auto").name == fastest
    assert VM(assemble("mov r0, 1\nexit"), tier="auto").run() == 1


@pytest.mark.parametrize("tier", TIERS)
def test_disasm_shows_what_each_tier_generates(
    tier: str, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    source = Path(str(tmp_path)) / "p.s"
    source.write_text("mov r0, 1\nadd r0, 2\nexit\n")
    assert main(["disasm", str(source), "--tier", tier]) == 0
    out = capsys.readouterr().out
    marker = {"interp": "add64 r0, 2", "pycode": "def f0(", "x86_64": "2: exit"}[tier]
    assert marker in out


@NATIVE
def test_conformance_plugin_jit_switch_uses_the_native_tier() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pybpf", "conformance-plugin", "--jit"],
        input="b7 00 00 00 2a 00 00 00 95 00 00 00 00 00 00 00",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "2a\n")


@pytest.mark.parametrize("tier", TIERS)
def test_helper_exceptions_surface_after_native_frames_return(tier: str) -> None:
    from pybpf import HelperError, HelperRegistry

    def explode(machine: object, *_: int) -> int:
        raise ZeroDivisionError("inside a helper")

    helpers = HelperRegistry()
    helpers.register(9, explode)
    vm = VM(assemble("call local f\nexit\nf:\ncall 9\nexit"), tier=tier, helpers=helpers)
    with pytest.raises(HelperError) as info:
        vm.run()
    assert info.value.pc == 2 and isinstance(info.value.__cause__, ZeroDivisionError)
    # and the VM is still usable afterwards
    ok = VM(
        assemble("mov r1, 2\nmov r2, 0\ncall 3\nexit"), tier=tier, helpers=conformance_helpers()
    )
    assert ok.run() == 1


def test_x86_tier_reports_why_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from pybpf.tiers.x86_64 import executable

    monkeypatch.setattr(executable.platform, "machine", lambda: "aarch64")
    reason = executable.unavailable_reason()
    assert reason is not None and "aarch64" in reason
