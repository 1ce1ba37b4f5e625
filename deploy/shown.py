"""Text as people read it (terminal, journal, summaries, the live page): credentials in
URLs masked, control characters escaped.

A camera URL carries its password (``rtsp://admin:secret@10.0.0.21/stream``); a source
named by its URL, an error quoting it or a startup line must not write it out. A file
name or label may hold a newline or a terminal escape; printed raw it forges a line of
output (an event that never happened) or a journal priority.
"""

from __future__ import annotations

import re

# scheme://...@ within one blank-free token: everything between :// and the token's last
# @ is the userinfo (a password may hold @ or / unencoded)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^\s]*)@")


def shown_url(text) -> str:
    """``text`` with the userinfo of every URL in it written ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group(1)}***@", str(text))


def one_line(text) -> str:
    """``text`` with control characters (newlines, escapes, C1 codes) shown as escapes."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(text) -> str:
    """Both: a name or message as a log line or summary writes it."""
    return one_line(shown_url(text))
