"""Loading programs from files."""

from pybpf.loader.files import ProgramFormat, parse_hex, read_program

__all__ = ["ProgramFormat", "parse_hex", "read_program"]
