"""Bounds on every untrusted input, in one place (spec/format.md, "Limits").

A reader refuses input over a bound with a FormatError before it allocates for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    bundle_line_max: int = 8 * 1024 * 1024  # bytes, one DSSE envelope line
    bundle_lines_max: int = 64  # envelopes in one bundle
    json_depth_max: int = 64  # nesting of arrays/objects in any JSON document
    record_max: int = 4 * 1024 * 1024  # bytes, one msgpack record
    records_max: int = 10_000_000  # records in one sidecar log
    msgpack_depth_max: int = 16  # nesting inside one record
    # Deliberately below the safetensors crate's 100 MB (MAX_HEADER_SIZE) cap: a Python
    # reader decodes the header to str and parses it, and a 100 MiB header of 4-byte UTF-8
    # characters peaks at ~633 MiB RSS. 16 MiB keeps that peak near 100 MiB and still
    # holds ~100,000 tensor entries, far more than any model this project trains.
    safetensors_header_max: int = 16 * 1024 * 1024  # bytes
    safetensors_tensors_max: int = 1_000_000  # entries in one header
    tensor_ndim_max: int = 16
    policy_max: int = 4 * 1024 * 1024  # bytes of policy TOML
    key_file_max: int = 64 * 1024  # bytes of a PEM key file
    dataset_line_max: int = 16 * 1024 * 1024  # bytes, one JSONL example
    steps_max: int = 10_000_000  # steps claimed by a run
    folder_entries_max: int = 100_000  # entries (files and folders) under a run/release folder
    folder_depth_max: int = 8  # nesting levels of folders under a run/release folder


DEFAULT_LIMITS = Limits()
