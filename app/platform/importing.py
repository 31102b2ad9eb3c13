"""Reading import files (CSV or JSON Lines) as a stream of numbered records, and the reject file.

Shared by `cx-survey import responses`, `import orgs` and `import tasks`: the domain importers turn
records into API bodies; this module only knows files, line numbers and progress.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson


class FileFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


SUFFIXES = {".csv": FileFormat.csv, ".jsonl": FileFormat.jsonl, ".ndjson": FileFormat.jsonl}


class ImportFileError(Exception):
    """The file as a whole cannot be imported (missing, wrong format, unknown column)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One item of the file: its line number and either its fields or why it could not be read."""

    line: int
    data: dict[str, Any] | None = None
    error: str | None = None


def detect_format(path: Path, explicit: FileFormat | None) -> FileFormat:
    """The format given, or the one the file name says."""
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    if explicit is not None:
        return explicit
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(SUFFIXES))
        raise ImportFileError(
            f"{path}: cannot tell the format from the name (known: {known}); use --format"
        )
    return found


@dataclass
class ByteCounter:
    """Counts the bytes read so far, for a progress bar over the file's size."""

    done: int = 0


def _lines(handle: IO[bytes], counter: ByteCounter, bad: set[int]) -> Iterator[str]:
    """The file's lines as text; the numbers of lines that are not valid UTF-8 go to `bad`."""
    for number, raw in enumerate(handle, start=1):
        counter.done += len(raw)
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(number)
            yield raw.decode("utf-8", errors="replace")


NOT_UTF8 = "not valid UTF-8"


ColumnCheck = Callable[[list[str]], None]


def columns(known: tuple[str, ...], required: tuple[str, ...]) -> ColumnCheck:
    """A check of a CSV header: only `known` columns, every `required` one."""

    def check(header: list[str]) -> None:
        unknown = [name for name in header if name not in known]
        if unknown:
            raise ImportFileError(
                f"unknown column(s): {', '.join(unknown)}; expected {', '.join(known)}"
            )
        missing = [name for name in required if name not in header]
        if missing:
            raise ImportFileError(f"missing column(s): {', '.join(missing)}")

    return check


def read_records(
    path: Path, fmt: FileFormat, counter: ByteCounter, *, check_columns: ColumnCheck
) -> Iterator[Record]:
    """The file's records in order; CSV cells are strings, empty cells are left out."""
    bad: set[int] = set()
    with path.open("rb") as handle:
        if fmt is FileFormat.csv:
            yield from _csv_records(_lines(handle, counter, bad), check_columns, bad)
        else:
            yield from _jsonl_records(_lines(handle, counter, bad), path, bad)


def _csv_records(
    lines: Iterator[str], check_columns: ColumnCheck, bad: set[int]
) -> Iterator[Record]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    if bad:
        raise ImportFileError(f"the header is {NOT_UTF8}")
    header = [name.strip().lstrip("\ufeff") for name in header]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ImportFileError(f"duplicate column(s): {', '.join(duplicates)}")
    check_columns(header)
    previous = reader.line_num
    for row in reader:
        line = reader.line_num
        first, previous = previous + 1, line
        if not any(cell.strip() for cell in row):
            continue
        if any(number in bad for number in range(first, line + 1)):
            yield Record(line, error=NOT_UTF8)
            continue
        if len(row) != len(header):
            yield Record(line, error=f"expected {len(header)} cells, found {len(row)}")
            continue
        yield Record(line, data={k: v for k, v in zip(header, row, strict=True) if v != ""})


def _jsonl_records(lines: Iterator[str], path: Path, bad: set[int]) -> Iterator[Record]:
    first = True
    for line, raw in enumerate(lines, start=1):
        text = raw.removeprefix("\ufeff") if line == 1 else raw
        if not text.strip():
            continue
        if line in bad:
            yield Record(line, error=NOT_UTF8)
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if first:
                raise ImportFileError(
                    f"{path}: line {line} is not JSON; is this a JSON Lines file? ({exc})"
                ) from exc
            yield Record(line, error=f"not valid JSON: {exc}")
            continue
        first = False
        if not isinstance(value, dict):
            yield Record(line, error="not a JSON object")
            continue
        yield Record(line, data=value)


@dataclass
class CreateSummary:
    """What an import that creates records (orgs, tasks) did: created, left as they were
    (the same record exists), rejected."""

    records: int = 0
    created: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass
class Rejects:
    """The reject file: one JSON line per rejected record, `{line, status, reason, errors}`."""

    path: Path
    count: int = 0
    _handle: IO[bytes] | None = field(default=None, repr=False)

    def add(self, line: int, status: str, reason: str, errors: list[Any] | None = None) -> None:
        if self._handle is None:
            self._handle = self.path.open("wb")
        entry: dict[str, Any] = {"line": line, "status": status, "reason": reason}
        if errors:
            entry["errors"] = errors
        self._handle.write(orjson.dumps(entry) + b"\n")
        self.count += 1

    def __enter__(self) -> Rejects:
        self.path.unlink(missing_ok=True)  # a re-run's rejects replace the last run's
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.close()
