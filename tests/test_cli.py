"""The pybpf command: asm, disasm, verify, run, and the bpf_conformance plugin protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_run_prints_r0_in_hex(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path, "p.s", "mov r0, 42\nexit\n")
    assert main(["run", str(source), "--count"]) == 0
    assert capsys.readouterr().out.splitlines() == ["0x2a", "instructions: 2"]


def test_run_with_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path, "p.s", "ldxh r0, [r1+1]\nexit\n")
    assert main(["run", str(source), "--mem", "01 02 03"]) == 0
    assert capsys.readouterr().out.strip() == "0x302"
    blob = tmp_path / "m.bin"
    blob.write_bytes(b"\x00\xff\xee")
    assert main(["run", str(source), "--mem-file", str(blob)]) == 0
    assert capsys.readouterr().out.strip() == "0xeeff"


def test_asm_then_run_raw_and_hex(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path, "p.s", "mov r0, 7\nexit\n")
    raw = tmp_path / "p.bin"
    assert main(["asm", str(source), "-o", str(raw)]) == 0
    assert raw.read_bytes() == bytes.fromhex("b700000007000000 9500000000000000")
    assert main(["asm", str(source)]) == 0
    hex_text = capsys.readouterr().out
    assert hex_text.splitlines() == ["b7 00 00 00 07 00 00 00", "95 00 00 00 00 00 00 00"]
    hex_file = write(tmp_path, "p.hex", hex_text)
    assert main(["run", str(raw)]) == 0
    assert main(["run", str(hex_file)]) == 0
    assert main(["run", str(raw), "--format", "raw"]) == 0
    assert capsys.readouterr().out.split() == ["0x7", "0x7", "0x7"]


def test_disasm_both_syntaxes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path, "p.s", "ldxh r0, [r1+2]\nexit\n")
    assert main(["disasm", str(source)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("ldxh r0, [r1+")
    assert main(["disasm", str(source), "--syntax", "pseudo-c"]) == 0
    assert "*(u16 *)(r1 + " in capsys.readouterr().out


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.s", "mov r0, 1\nfrob r1\nexit\n")
    assert main(["run", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pybpf: error: ") and "bad.s:2:1:" in err[0]
    loop = write(tmp_path, "loop.s", "ja -1\nexit\n")
    assert main(["run", str(loop), "--budget", "100"]) == 1
    assert "budget" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.s")]) == 1
    assert main(["run", str(write(tmp_path, "p.unknown", ""))]) == 1
    assert main(["run", str(write(tmp_path, "p.s", "exit")), "--mem", "zz"]) == 1


def test_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(write(tmp_path, "ok.s", "mov r0, 0\nexit"))]) == 0
    assert main(["verify", str(write(tmp_path, "bad.s", "mov r10, 0\nexit"))]) == 1


def test_trace_lists_executed_instructions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(write(tmp_path, "p.s", "mov r0, 3\nexit")), "--trace"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].split(":")[0].strip() == "0"


def test_repeat_reports_a_median(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(write(tmp_path, "p.s", "mov r0, 3\nexit")), "--repeat", "3"]) == 0
    assert "median time per run" in capsys.readouterr().out


def test_bundled_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["run", str(EXAMPLES / "http_filter.s"), "--mem-file", str(EXAMPLES / "http_syn.bin")])
        == 0
    )
    assert (
        main(["run", str(EXAMPLES / "http_filter.s"), "--mem-file", str(EXAMPLES / "ssh_syn.bin")])
        == 0
    )
    assert main(["run", str(EXAMPLES / "fibonacci.s")]) == 0
    assert capsys.readouterr().out.split() == ["0x1", "0x0", "0xd"]


def plugin(program_hex: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pybpf", "conformance-plugin", *args],
        input=program_hex,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_conformance_plugin_protocol() -> None:
    # ldxb r0, [r1+1]; exit -- memory as the runner formats it: two spaces after each byte
    done = plugin(
        "71  10  01  00  00  00  00  00  95  00  00  00  00  00  00  00  \n", "aa  bb  cc  "
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "bb\n", "")


def test_conformance_plugin_helpers_and_options() -> None:
    # mov r1, 2; mov r2, 3; ... call 0 (gather_bytes); exit
    code = (
        "b7 01 00 00 01 00 00 00 b7 02 00 00 02 00 00 00 b7 03 00 00 03 00 00 00 "
        "b7 04 00 00 04 00 00 00 b7 05 00 00 05 00 00 00 85 00 00 00 00 00 00 00 "
        "95 00 00 00 00 00 00 00"
    )
    for option in ("--jit", "--interpret", "--tier=interp"):
        done = plugin(code, option)
        assert (done.returncode, done.stdout) == (0, "102030405\n"), done.stderr


def test_conformance_plugin_failure_is_one_line_on_stderr() -> None:
    done = plugin("71 10 00 00 00 00 00 00 95 00 00 00 00 00 00 00")  # no memory: r1 = 0
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    done = plugin("ff 00 00 00 00 00 00 00")
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
