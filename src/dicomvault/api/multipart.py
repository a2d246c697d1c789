"""multipart/related (RFC 2387): a streaming reader for STOW-RS and a writer for WADO-RS.

The reader feeds python-multipart's streaming parser chunk by chunk; part bodies go straight to a
sink (a spool file), so no body is ever held whole in memory.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from python_multipart.multipart import MultipartParser


class PartSink(Protocol):
    def write(self, chunk: bytes | memoryview) -> None: ...


@dataclass
class Part:
    headers: dict[str, str] = field(default_factory=dict)
    sink: PartSink | None = None
    error: Exception | None = None  # raised by the sink while writing (e.g. size cap)
    complete: bool = False


class MultipartReader:
    """Push body chunks in with ``feed``; completed parts come out of ``take_completed``.

    ``open_sink(headers)`` is called when a part's headers are complete and returns where its body
    goes. An exception from a sink is recorded on the part (the rest of that part is skipped).
    """

    def __init__(self, boundary: str, open_sink: Callable[[dict[str, str]], PartSink]) -> None:
        self._open_sink = open_sink
        self._parts: list[Part] = []
        self._current: Part | None = None
        self._field = bytearray()
        self._value = bytearray()
        self.finished = False
        self._parser = MultipartParser(
            boundary.encode("latin-1"),
            {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_end": self._on_end,
            },
            max_header_count=32,
        )

    def feed(self, chunk: bytes) -> None:
        self._parser.write(chunk)

    def take_completed(self) -> list[Part]:
        done = [p for p in self._parts if p.complete]
        self._parts = [p for p in self._parts if not p.complete]
        return done

    def abandoned(self) -> list[Part]:
        """Parts begun but never closed (truncated body): their sinks must be discarded."""
        left = self._parts
        self._parts = []
        return left

    # -- parser callbacks ------------------------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._current = Part()
        self._parts.append(self._current)

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        assert self._current is not None
        name = self._field.decode("latin-1").strip().lower()
        self._current.headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        assert self._current is not None
        try:
            self._current.sink = self._open_sink(self._current.headers)
        except Exception as exc:
            self._current.error = exc

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current
        if part is None or part.error is not None or part.sink is None:
            return
        try:
            part.sink.write(memoryview(data)[start:end])
        except Exception as exc:
            part.error = exc

    def _on_part_end(self) -> None:
        if self._current is not None:
            self._current.complete = True
            self._current = None

    def _on_end(self) -> None:
        self.finished = True


def new_boundary() -> str:
    return "dicomvault-" + secrets.token_hex(16)


def part_header(boundary: str, content_type: str, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("latin-1")


async def multipart_stream(
    boundary: str, parts: AsyncIterator[tuple[str, AsyncIterator[bytes]]]
) -> AsyncIterator[bytes]:
    """Write (content type, body chunks) pairs as one multipart/related body."""
    first = True
    async for content_type, body in parts:
        yield (b"" if first else b"\r\n") + part_header(boundary, content_type)
        first = False
        async for chunk in body:
            yield chunk
    yield (b"" if first else b"\r\n") + closing(boundary)
