"""How a vibration recording gets its class: CWRU file names, a CSV manifest, or a regex.

Each rule maps a file's path relative to the dataset root to a class name, or None when it
cannot tell (the loader then skips the file with a warning); ``expects`` says what it wanted.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path, PurePosixPath

from edgecnn.deploy.errors import DataError, InputError, SourceError
from edgecnn.deploy.recordings import read_text_file
from edgecnn.deploy.spec import sample_rate_problem

CWRU_CLASSES = ("normal", "IR007", "IR014", "IR021", "B007", "B014", "B021",
                "OR007@6", "OR014@6", "OR021@6")
_CWRU_FAULT = re.compile(r"^(?:12k|48k)_Drive_End_(?P<label>IR\d{3}|B\d{3}|OR\d{3}@6)"
                         r"_(?P<load>[0-3])_(?P<number>\d+)\.mat$", re.IGNORECASE)
_CWRU_NORMAL = re.compile(r"^normal_(?P<load>[0-3])_(?P<number>\d+)\.mat$", re.IGNORECASE)
MANIFEST_NAME = "labels.csv"


def cwru_label(file_name: str) -> str | None:
    """CWRU class from a file name: ``12k_Drive_End_OR007@6_1_131.mat`` -> ``OR007@6``,
    ``normal_0_97.mat`` -> ``normal``; None for anything outside the 10-class task."""
    name = PurePosixPath(file_name).name
    if _CWRU_NORMAL.match(name):
        return "normal"
    match = _CWRU_FAULT.match(name)
    if not match:
        return None
    label = match.group("label").upper()
    return label if label in CWRU_CLASSES else None


class CwruRule:
    """The CWRU 12k/48k drive-end naming scheme (any motor load 0-3)."""

    name = "cwru"
    expects = ("a CWRU name such as 12k_Drive_End_IR007_1_106.mat or normal_0_97.mat, "
               f"for one of the classes {', '.join(CWRU_CLASSES)}")

    def label(self, rel: str) -> str | None:
        return cwru_label(rel)

    def sample_rate(self, rel: str) -> float | None:
        return None


class PatternRule:
    """A regular expression with a named group ``label``, searched in the file name."""

    name = "pattern"

    def __init__(self, pattern: str | re.Pattern) -> None:
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise InputError(f"label pattern {pattern!r} is not a valid regular expression: "
                             f"{exc}") from None
        if "label" not in self.regex.groupindex:
            raise InputError(f"label pattern {self.regex.pattern!r} needs a named group "
                             "(?P<label>...) that captures the class name")
        self.expects = f"a file name matching {self.regex.pattern!r}"

    def label(self, rel: str) -> str | None:
        match = self.regex.search(PurePosixPath(rel).name)
        return match.group("label") if match and match.group("label") else None

    def sample_rate(self, rel: str) -> float | None:
        return None


class ManifestRule:
    """A CSV with columns ``file,label[,sample_rate]``; files relative to the dataset root.

    An entry without a folder part also matches that file name anywhere under the root, as
    long as the name is unique in the manifest and names one file (``check_unambiguous``).
    """

    name = "manifest"

    def __init__(self, path, root=None) -> None:
        self.path = Path(path)
        self.entries = _anchored(_read_manifest(self.path),
                                 Path(root) if root is not None else self.path.parent,
                                 self.path)
        self.expects = f"an entry in the manifest {self.path}"
        by_name: dict[str, list[str]] = {}
        for key in self.entries:
            if "/" not in key:
                by_name.setdefault(key, []).append(key)
        self._by_name = by_name
        self.matched: set[str] = set()
        self._found_by_name: dict[str, list[str]] = {}   # bare entry -> files it named

    def _entry(self, rel: str) -> str | None:
        if rel in self.entries:
            return rel
        name = PurePosixPath(rel).name
        return name if len(self._by_name.get(name, [])) == 1 else None

    def label(self, rel: str) -> str | None:
        key = self._entry(rel)
        if key is None:
            return None
        self.matched.add(key)
        if key != rel:
            found = self._found_by_name.setdefault(key, [])
            if rel not in found:
                found.append(rel)
        return self.entries[key][0]

    def sample_rate(self, rel: str) -> float | None:
        key = self._entry(rel)
        return self.entries[key][1] if key is not None else None

    def check_unambiguous(self) -> None:
        """Refuse a bare entry that named several files: which one it labels is a guess."""
        for key, found in self._found_by_name.items():
            if len(found) > 1:
                raise DataError(f"{self.path.name}: the entry {key!r} matches {len(found)} "
                                f"files ({', '.join(sorted(found)[:4])}): give each its "
                                "path under the dataset folder")

    def unmatched(self) -> list[str]:
        """Manifest entries that named no recording file."""
        return sorted(set(self.entries) - self.matched)


def _anchored(entries: dict, root: Path, path: Path) -> dict:
    """Entries given as absolute paths inside the dataset folder, as relative ones (an
    export that wrote full paths); an absolute path outside it is refused."""
    if not any(PurePosixPath(key).is_absolute() for key in entries):
        return entries
    base = root.resolve()
    out = {}
    for key, value in entries.items():
        if PurePosixPath(key).is_absolute():
            try:
                key = Path(key).resolve().relative_to(base).as_posix()
            except ValueError:
                raise DataError(f"{path.name}: {key} is outside the data folder {root}: list "
                                "the recordings by their path under it") from None
        if key in out and out[key] != value:
            raise DataError(f"{path.name}: {key} is listed twice with different labels or "
                            f"rates ({out[key][0]} / {value[0]})")
        out[key] = value
    return out


def _read_manifest(path: Path) -> dict[str, tuple[str, float | None]]:
    if not path.is_file():
        raise DataError(f"label manifest {path} does not exist")
    try:
        text = read_text_file(path)
        first = next((line for line in text.splitlines()
                      if line.strip() and not line.lstrip().startswith("#")), "")
        # spreadsheets where the comma is the decimal point export ';' (or tabs)
        delimiter = next((d for d in (";", "\t") if d in first and "," not in first), ",")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        # each row with the file's line it ends on (comments and blank lines skipped)
        rows, lines = [], []
        for row in reader:
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#"):
                rows.append(row)
                lines.append(reader.line_num)
    except (OSError, SourceError, csv.Error) as exc:
        raise DataError(f"cannot read label manifest {path}: {exc}") from None
    if not rows:
        raise DataError(f"label manifest {path} is empty; "
                        "expected a header file,label[,sample_rate]")
    header = [c.strip().lower() for c in rows[0]]
    if "file" not in header or "label" not in header:
        raise DataError(f"label manifest {path} needs a header line naming the columns "
                        f"file,label[,sample_rate]; its first line is {','.join(rows[0])} "
                        "(add the header above the rows)")
    col_file, col_label = header.index("file"), header.index("label")
    col_rate = header.index("sample_rate") if "sample_rate" in header else None
    entries: dict[str, tuple[str, float | None]] = {}
    for line, row in zip(lines[1:], rows[1:]):
        cells = [c.strip() for c in row] + [""] * len(header)
        file_name = PurePosixPath(cells[col_file].replace("\\", "/")).as_posix()
        file_name = file_name[2:] if file_name.startswith("./") else file_name
        label = cells[col_label]
        if not file_name or not label:
            raise DataError(f"{path} line {line}: expected a file and a label; found {row}")
        rate = None
        if col_rate is not None and cells[col_rate]:
            try:
                rate = float(cells[col_rate].replace(",", ".") if delimiter != ","
                             else cells[col_rate])
            except ValueError:
                rate = cells[col_rate]
            if (why := sample_rate_problem(rate)) is not None:
                raise DataError(f"{path} line {line}: sample_rate: {why.split('; found')[0]}; "
                                f"found {cells[col_rate]!r}")
        if file_name in entries and entries[file_name] != (label, rate):
            raise DataError(f"{path} line {line}: {file_name} is listed twice with different "
                            f"labels or rates ({entries[file_name][0]} / {label})")
        entries[file_name] = (label, rate)
    return entries
