"""Media types of PS3.18 8.7: parsing Content-Type and Accept, tolerant of quoting and case."""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import parse_options_header


@dataclass(frozen=True)
class MediaRange:
    type: str  # lower-case "type/subtype", may be "*/*" or "type/*"
    params: dict[str, str] = field(default_factory=dict)  # lower-case names, unquoted values
    q: float = 1.0

    def matches(self, media_type: str) -> bool:
        if self.type in ("*/*", media_type):
            return True
        major, _, minor = self.type.partition("/")
        return minor == "*" and media_type.startswith(major + "/")


def parse_media_type(value: str) -> MediaRange:
    main, params = parse_options_header(value)
    decoded = {
        k.decode("latin-1").lower(): v.decode("latin-1").strip().strip('"')
        for k, v in params.items()
    }
    q = 1.0
    if "q" in decoded:
        try:
            q = float(decoded.pop("q"))
        except ValueError:
            q = 0.0
    return MediaRange(main.decode("latin-1").strip().lower(), decoded, q)


def parse_accept(header: str | None) -> list[MediaRange]:
    """Accept's media ranges, highest quality first; no header means ``*/*``."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_type(part) for part in _split_outside_quotes(header) if part.strip()]
    ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)


def _split_outside_quotes(header: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts
