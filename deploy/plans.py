"""Several sources from one command line: ``NAME=SOURCE`` and per-source option values.

``edgecnn run camera|vibration`` takes ``--source`` once per source. A source may be
named (``--source line1=rtsp://cam1/stream``): the name goes into its events and summary
instead of the source text. A per-source option (``--roi``, ``--tiles``, ``--grid``,
``--hop``, ...) given once applies to every source; given once per source, the i-th value
goes to the i-th source; ``none`` leaves that source without it.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Sequence

from .errors import InputError

# NAME= is a name only when NAME looks like one: URLs (rtsp://h/p?a=b) and GStreamer
# pipelines (... ! video/x-raw,width=200 ! appsink) have ':' '/' ',' or spaces before
# their first '='.
_NAME = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)=(.+)", re.S)
NONE = "none"


def named_source(text: str) -> tuple[str | None, str]:
    """(name or None, source) of one ``--source`` value; an existing file whose name
    contains '=' stays a plain source."""
    match = _NAME.fullmatch(text)
    if match is None or os.path.exists(text):
        return None, text
    return match.group(1), match.group(2)


def per_source(values: Sequence[str], count: int, option: str,
               parse: Callable[[str], Any] = str) -> list[Any]:
    """One parsed value (or None) per source from the values of a repeatable option:
    none given -> None each, one -> the same for all, one per source -> in order."""
    if not values:
        return [None] * count
    if len(values) not in (1, count):
        raise InputError(f"{option} was given {len(values)} times for {count} sources; "
                         f"give it once (for every source) or once per --source")
    parsed = [None if str(v).strip().lower() == NONE else parse(v) for v in values]
    return parsed * count if len(parsed) == 1 else parsed


def check_unique_names(names: Sequence[str]) -> None:
    """Refuse two sources that would log under the same name."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"two sources are named {name!r}: their events could not be "
                             "told apart; name them with --source NAME=SOURCE")
        seen.add(name)


def check_live_sources_once(texts: Sequence[str]) -> None:
    """Refuse one camera, stream or sensor given as two sources: the second cannot open a
    device or UDP port the first holds (it reported a wrong reason, "connection refused",
    and never connected), and a network camera would send everything twice. A file may be
    read twice (two bundles on one recording)."""
    seen: dict[str, str] = {}
    for text in texts:
        text = str(text).strip()
        if text == "-" or os.path.isfile(text):
            continue
        key = _live_key(text)
        if key in seen:
            also = "" if seen[key] == text else f" (also as {seen[key]!r})"
            raise InputError(f"{text!r} is given as two sources{also}: one camera, stream or "
                             "sensor is read once (several regions of it: --tiles, --grid "
                             "or one --roi per source of a file)")
        seen[key] = text


_LOOPBACK = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def _live_key(text: str) -> str:
    """One key per device or endpoint however it is written: camera 01 is camera 1;
    TCP://LocalHost:019030 is tcp://127.0.0.1:19030."""
    from urllib.parse import urlsplit

    if text.isdigit():
        return f"device {int(text)}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    if not parts.scheme or not parts.hostname:
        return text
    host = "127.0.0.1" if parts.hostname in _LOOPBACK else parts.hostname
    return f"{parts.scheme.lower()}://{host}:{port}{parts.path}?{parts.query}"

