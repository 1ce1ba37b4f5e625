"""Read one vibration recording (CWRU .mat, .npy, .npz, .csv, .wav) into a 1-D float64 signal.

Training (``edgecnn.data``) and the line-side runtime read recordings through this one
function, so a file means the same samples at the same sample rate in both. A sample rate
is taken from the file when the file states one (CWRU file names, npz entries, CSV comment,
WAV header); an explicit ``sample_rate`` only fills the gap and must agree otherwise, so an
option is never silently overridden. Only numpy and scipy are used here.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from scipy.io import wavfile

from .errors import InputError, SourceError
from .spec import DEFAULT_CHANNEL, sample_rate_problem

RECORDING_SUFFIXES = (".mat", ".npy", ".npz", ".csv", ".wav")

# CWRU file names carry the rate: 12k_/48k_ prefixes; the healthy baselines are 48 kHz.
_CWRU_NAME_RATES = (("12k_", 12000.0), ("48k_", 48000.0), ("normal", 48000.0))
_NPZ_SIGNAL_KEYS = ("signal", "samples", "x")
_NPZ_RATE_KEYS = ("sample_rate", "fs")
_CSV_RATE = re.compile(r"^#\s*(?:sample_rate|fs)\s*[=:]\s*(.+?)\s*$", re.IGNORECASE)
# What parsers of a damaged file raise; anything else is a bug and keeps its traceback.
_READ_ERRORS = (OSError, ValueError, TypeError, EOFError, KeyError, IndexError,
                NotImplementedError, ZeroDivisionError, MemoryError, struct.error,
                zlib.error, zipfile.BadZipFile, scipy.io.matlab.MatReadError)
# A CSV is parsed in memory, at about ten times its size: larger ones belong in .npy
MAX_CSV_BYTES = 512 << 20


@dataclass
class Recording:
    """A 1-D float64 signal and where it came from.

    channel -- what was read: the CWRU channel name ("DE"), a CSV/npz column or key name,
               a column index as text, or "0" for a single-channel file
    rpm     -- shaft speed when the file records it (CWRU ``X<nnn>RPM``), else None
    """

    samples: np.ndarray
    sample_rate: float
    source: str
    channel: str
    rpm: float | None = None


def read_recording(path, channel: str | int = DEFAULT_CHANNEL,
                   sample_rate: float | None = None,
                   rate_from: str = "--sample-rate") -> Recording:
    """Read ``path`` into a Recording.

    channel     -- CWRU channel name for .mat ("DE", "FE", "BA") or any .mat variable name
                   (a .mat file with a single 1-D numeric array needs none); a column name
                   (CSV header, npz key) or an integer column index for multi-channel
                   .npy/.npz/.csv/.wav
    sample_rate -- used when the file does not state its rate; if it does and they differ,
                   InputError
    rate_from   -- where ``sample_rate`` came from, for those messages ("--sample-rate",
                   "labels.csv")

    Raises SourceError for a missing, unreadable, corrupt or empty file (or one without the
    requested channel) and InputError when the sample rate is unknown or contradicts the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise SourceError(f"{path} is a folder: expected one recording file "
                          f"({', '.join(RECORDING_SUFFIXES)}); a folder of them is for train, "
                          "eval and parity")
    if suffix not in RECORDING_SUFFIXES:
        raise SourceError(f"{path}: unsupported recording type {path.suffix or '(none)'!r}; "
                          f"expected one of {', '.join(RECORDING_SUFFIXES)}")
    if not path.is_file():
        raise SourceError(f"recording {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise SourceError(f"recording {path} is empty (0 bytes)")
    reader = _READERS[suffix]
    try:
        samples, file_rate, rpm, used_channel = reader(path, channel)
    except _READ_ERRORS as exc:
        raise SourceError(f"cannot read recording {path}: expected a valid {suffix} file "
                          f"({_EXPECTED[suffix]}); {type(exc).__name__}: {exc}") from None
    samples = _as_signal(path, samples)
    rate = _resolve_rate(path, file_rate, sample_rate, rate_from)
    return Recording(samples=samples, sample_rate=rate, source=str(path),
                     channel=used_channel, rpm=rpm)


_EXPECTED = {
    ".mat": "a MATLAB 5 file with a *_<channel>_time array or one 1-D numeric array",
    ".npy": "a 1-D or 2-D numeric array",
    ".npz": "a numpy archive with a 'signal', 'samples' or 'x' array",
    ".csv": "numeric columns apart by ',', ';', tab or spaces (decimal point or comma), "
            "optional header and '# sample_rate=...' line",
    ".wav": "PCM or float WAV audio",
}


def cwru_name_rate(name: str) -> float | None:
    """Sample rate stated by a CWRU file name (12k_/48k_ prefix, normal_ baseline), else None."""
    lower = name.lower()
    for prefix, rate in _CWRU_NAME_RATES:
        if lower.startswith(prefix):
            return rate
    return None


# ------------------------------------------------------------------------------ readers

_MAT_NUMERIC = ("double", "single", "int8", "int16", "int32", "int64", "uint8", "uint16",
                "uint32", "uint64")


def _read_mat(path: Path, channel):
    """CWRU files by channel suffix (``*_DE_time``); any other .mat file by variable name
    (``channel`` names it) or, when it holds exactly one numeric 1-D array, that array."""
    with open(path, "rb") as handle:
        if handle.read(19) == b"MATLAB 7.3 MAT-file":
            raise SourceError(f"{path} is a MATLAB v7.3 (HDF5) file: expected MATLAB 5 / v7; "
                              "in MATLAB, save it again with save(..., '-v7')")
    listing = scipy.io.whosmat(str(path))
    names = [name for name, _, _ in listing]
    suffix = f"_{channel}_time"
    keys = sorted(name for name in names if name.endswith(suffix))
    rpm_keys = sorted(name for name in names if name.endswith("RPM"))
    if len(keys) > 1:
        # Some CWRU files hold two recordings' keys; the one with an RPM entry is the file's own.
        owned = [k for k in keys if k[: -len(suffix)] + "RPM" in rpm_keys]
        if len(owned) != 1:
            raise SourceError(f"{path} holds several {suffix} arrays ({', '.join(keys)}); "
                              "expected exactly one")
        keys = owned
    if not keys:
        return _read_mat_variable(path, listing, channel)
    key = keys[0]
    prefix = key[: -len(suffix)]
    rpm_key = prefix + "RPM" if prefix + "RPM" in rpm_keys else (rpm_keys[0] if rpm_keys else None)
    wanted = [key] + ([rpm_key] if rpm_key else [])
    data = scipy.io.loadmat(str(path), variable_names=wanted)
    if key not in data:
        raise SourceError(f"{path}: variable {key!r} is listed but cannot be read")
    rpm = None
    if rpm_key and rpm_key in data:
        values = np.asarray(data[rpm_key], dtype=np.float64).ravel()
        rpm = float(values[0]) if values.size else None
    return data[key], cwru_name_rate(path.name), rpm, str(channel)


def _read_mat_variable(path: Path, listing, channel):
    """A variable by name; the only 1-D numeric array; or a column of a samples x channels
    matrix (a triaxial sensor's N x 3): ``NAME:INDEX``, or just the index when the file
    holds that one matrix."""
    signals = [name for name, shape, kind in listing
               if kind in _MAT_NUMERIC and len(shape) == 2 and min(shape) == 1
               and max(shape) > 1]
    matrices = {name: shape for name, shape, kind in listing
                if kind in _MAT_NUMERIC and len(shape) == 2 and min(shape) > 1}
    names = [name for name, _, _ in listing]
    cwru = sorted(name for name in names if name.endswith("_time"))
    rate = _mat_rate(path, listing)
    name, _, column = str(channel).rpartition(":")
    if name in matrices and _is_index(column):
        return _mat_column(path, name, column, rate)
    if _is_index(channel) and not signals and len(matrices) == 1:
        return _mat_column(path, next(iter(matrices)), str(channel), rate)
    if str(channel) in matrices or (str(channel) == "DE" and not signals and matrices):
        key = str(channel) if str(channel) in matrices else next(iter(matrices))
        rows, cols = matrices[key]
        raise SourceError(f"{path}: the array {key!r} ({rows}x{cols}) holds "
                          f"{min(rows, cols)} channels: give one with --channel "
                          f"{key}:0..{min(rows, cols) - 1}")
    if str(channel) in names:
        key = str(channel)
    elif cwru:  # a CWRU-style file without the wanted channel: never read another one
        raise SourceError(f"{path} has no channel {channel!r}: expected a variable ending in "
                          f"{'_' + str(channel) + '_time'!r}; found {', '.join(sorted(names))}")
    elif len(signals) == 1 and str(channel) == "DE":  # the default: nothing was asked for
        key = signals[0]
    else:
        found = (f"its 1-D numeric arrays are {', '.join(signals)}" if signals else
                 f"it holds no 1-D numeric array (variables: {', '.join(names) or 'none'})")
        wanted = (f"a variable {channel!r} or one ending in {'_' + str(channel) + '_time'!r}"
                  if str(channel) != "DE" else
                  "one 1-D numeric array, or a CWRU *_DE_time variable")
        hint = "; choose one with --channel NAME" if len(signals) > 1 else ""
        raise SourceError(f"{path}: expected {wanted}; {found}{hint}")
    data = scipy.io.loadmat(str(path), variable_names=[key])
    if key not in data:
        raise SourceError(f"{path}: variable {key!r} is listed but cannot be read")
    # Not a CWRU file: its name says nothing about its rate (a generic "normal.mat" is not
    # the 48 kHz CWRU baseline); a scalar fs / sample_rate variable beside it does.
    return data[key], rate, None, key


def _mat_column(path: Path, key: str, column: str, rate: float | None = None):
    data = scipy.io.loadmat(str(path), variable_names=[key])
    if key not in data:
        raise SourceError(f"{path}: variable {key!r} is listed but cannot be read")
    samples, used = _pick_column(path, data[key], column)
    return samples, rate, None, f"{key}:{used}"


# Scalar variables in which DAQ software and MATLAB scripts store a recording's rate
# (not "rate" or "sr": a scalar of that name may be a shaft's rate or anything else)
_MAT_RATE_NAMES = ("fs", "sample_rate", "samplerate", "sampling_rate", "samplingrate")


def _mat_rate(path: Path, listing) -> float | None:
    """The rate a generic .mat file states in a scalar variable (``fs``, ``Fs``,
    ``sample_rate`` ...), else None."""
    scalars = {name.lower(): name for name, shape, kind in listing
               if kind in _MAT_NUMERIC and tuple(shape) == (1, 1)}
    key = next((scalars[n] for n in _MAT_RATE_NAMES if n in scalars), None)
    if key is None:
        return None
    value = scipy.io.loadmat(str(path), variable_names=[key]).get(key)
    try:
        return float(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return None


def _read_npy(path: Path, channel):
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            raise SourceError(f"{path} is not a numpy .npy file (no NUMPY header)")
        handle.seek(0)
        _check_npy_size(path, handle)
        array = np.load(handle, allow_pickle=False)
    samples, used = _pick_column(path, array, channel)
    return samples, None, None, used


def _check_npy_size(path: Path, handle) -> None:
    """Refuse a header whose shape needs more bytes than the file holds, before numpy
    allocates them (a 1 kB file may declare 10^11 samples)."""
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    if version not in readers:          # a newer format: numpy's own load checks it
        handle.seek(0)
        return
    shape, _, dtype = readers[version](handle)
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    have = os.fstat(handle.fileno()).st_size - handle.tell()
    if need > have:
        raise SourceError(f"{path}: its header declares {'x'.join(map(str, shape))} "
                          f"{dtype} values ({need} bytes) but the file holds {have} bytes "
                          f"after it: a cut or damaged .npy")
    handle.seek(0)


def _read_npz(path: Path, channel):
    if not zipfile.is_zipfile(path):
        raise SourceError(f"{path} is not a numpy .npz archive (not a zip file)")
    with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
        names = list(archive.files)
        rate = None
        for key in _NPZ_RATE_KEYS:
            if key in names:
                value = np.asarray(archive[key], dtype=np.float64).ravel()
                if value.size != 1:
                    raise SourceError(f"{path}: entry {key!r} must be one number; "
                                      f"found shape {value.shape}")
                rate = float(value[0])
                break
        if str(channel) in names:
            return archive[str(channel)], rate, None, str(channel)
        candidates = [k for k in _NPZ_SIGNAL_KEYS if k in names]
        if not candidates:
            arrays = [k for k in names if k not in _NPZ_RATE_KEYS]
            if len(arrays) != 1:
                raise SourceError(f"{path}: expected an array named "
                                  f"{' / '.join(_NPZ_SIGNAL_KEYS)} or a single array; "
                                  f"found {', '.join(names) or 'nothing'}")
            candidates = arrays
        array = archive[candidates[0]]
    samples, used = _pick_column(path, array, channel)
    return samples, rate, None, used


_INTEGER = re.compile(r"^[+-]?\d+$")
_BLANK_LINE = re.compile(r"\n[ \t\r]*\n[ \t\r]*[^\s]")
_SAMPLE_LINE = re.compile(r"[-+.\d]")


def csv_dialect(lines: list[str]) -> tuple[str | None, bool]:
    """(delimiter, decimal comma) of a recording's CSV lines, comments and blanks left out.

    Delimiters: ``;`` (spreadsheets where the comma is the decimal point), tab, ``,``, or
    none (one column, or columns apart by spaces). With ``;``, tab or none, a comma in the
    data is the decimal point. One column of ``-0,002761`` splits at ``,`` into two
    integers; the fractions give it away (a second cell with a leading 0, no ``.``
    anywhere): then it is one column with decimal commas.
    """
    sample = lines[:50]
    data = sample[1:] or sample
    if any(";" in line for line in sample):
        delimiter = ";"
    elif any("\t" in line for line in sample):
        delimiter = "\t"
    elif any("," in line for line in sample):
        delimiter = ","
    else:
        delimiter = None
    if delimiter != ",":
        return delimiter, any("," in line for line in data)
    cells = [[c.strip() for c in line.split(",")] for line in data]
    if all(len(row) == 2 and all(_INTEGER.match(c) for c in row) for row in cells) and \
            any(len(row[1]) > 1 and row[1].startswith("0") for row in cells):
        return None, True
    return ",", False


def _check_no_gaps(path: Path, text: str) -> None:
    """A blank line between samples is a sample the logger lost (numpy would skip it and
    join the two sides, shifting every later sample in time): refused with its line.
    Blank lines before the first and after the last sample are layout, not gaps."""
    if _BLANK_LINE.search(text) is None:
        return
    seen_data, blank = False, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            if seen_data and blank is None:
                blank = number
        elif _SAMPLE_LINE.match(stripped):   # not a comment, not the header
            if blank is not None:
                raise SourceError(f"{path}: line {blank} is blank between samples (a lost "
                                  "sample?); expected a number on every line from the first "
                                  "sample to the last")
            seen_data = True


def _unquote(text: str) -> str:
    """Quoted cells (``"0,0074";"-0,0021"`` or ``"0,0074","-0,0021"``, as spreadsheets
    export them) rewritten unquoted, apart by ``;``: the delimiter is the one outside the
    quotes, and a comma inside them is then a decimal comma."""
    sample = [line for line in text.splitlines()[:60]
              if line.strip() and not line.strip().startswith("#")]
    outside = re.sub(r'"[^"]*"', "", "\n".join(sample))
    delimiter = next((d for d in (";", "\t", ",") if d in outside), None)
    if delimiter is None:
        return text.replace('"', "")
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            lines.append(stripped)
        else:
            lines.append(";".join(cell.strip() for cell in
                                  next(csv.reader([stripped], delimiter=delimiter))))
    return "\n".join(lines) + "\n"


_RATE_VALUE = re.compile(r"^([0-9]+(?:[.,][0-9]*)?(?:e[+-]?[0-9]+)?)\s*(hz|khz|mhz)?$",
                         re.IGNORECASE)
_RATE_UNITS = {None: 1.0, "hz": 1.0, "khz": 1e3, "mhz": 1e6}


def _stated_rate(text: str) -> float | None:
    """The rate a CSV's ``# sample_rate=`` line states: a number of Hz, with a decimal
    comma or a unit (Hz, kHz, MHz) as DAQ software writes it; None when it is none."""
    try:
        return float(text)          # any number, so one out of range is refused, not ignored
    except ValueError:
        pass
    match = _RATE_VALUE.match(text.strip())
    if match is None or re.fullmatch(r"[0-9]{1,3},[0-9]{3}", match.group(1)):
        return None     # none, or 12,000: a thousands separator or a decimal comma?
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1).replace(",", ".")) * _RATE_UNITS[unit]


_NOTED_CP1252: set[str] = set()


def read_text_file(path: Path) -> str:
    """A CSV as Excel and DAQ software write it: UTF-8 (with or without the byte-order mark
    of Excel's "CSV UTF-8"), UTF-16 with its byte-order mark, else Windows-1252 (what
    Excel's plain "CSV" writes on a Western Windows PC; a note says so)."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{path} starts as UTF-16 but is not: {exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if raw.startswith(b"PK\x03\x04") or b"\x00" in raw[:4096]:
        kind = "a zip archive such as an Excel workbook" if raw.startswith(b"PK") \
            else "binary data"
        raise SourceError(f"{path} is not a text CSV (it holds {kind}); save the recording "
                          f"as CSV text, or as .npy")
    if str(path) not in _NOTED_CP1252:     # once per file: the loaders read a file twice
        _NOTED_CP1252.add(str(path))
        logging.getLogger("edgecnn.deploy").warning(
            "note: %s is not UTF-8; read as Windows-1252 (Excel's plain CSV)", path)
    return raw.decode("cp1252", errors="replace")


def _read_csv(path: Path, channel):
    rate = None
    lines, skip = [], 0
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise SourceError(f"{path} is a {size / (1 << 20):.0f} MB CSV; this reader takes up "
                          f"to {MAX_CSV_BYTES >> 20} MB (it parses in memory): save long "
                          f"recordings as .npy (numpy.save) or split them")
    text = read_text_file(path)
    if '"' in text:
        text = _unquote(text)
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            match = _CSV_RATE.match(stripped)
            if match and not lines:
                rate = _stated_rate(match.group(1))
                if rate is None:
                    logging.getLogger("edgecnn.deploy").warning(
                        "note: %s: %r is not a number of Hz (e.g. '# sample_rate=12000' or "
                        "'12 kHz'); ignored, the rate must come from elsewhere", path,
                        stripped)
            if not lines:
                skip += 1
            continue
        lines.append(stripped)
        if len(lines) >= 50:
            break
    delimiter, decimal_comma = csv_dialect(lines)
    header = None
    if lines:
        first = lines[0].replace(",", ".") if decimal_comma else lines[0]
        cells = [c.strip().strip('"').strip("'").strip() for c in first.split(delimiter)]
        if not all(_is_number(c) for c in cells):
            header = cells
            skip += 1
    _check_no_gaps(path, text)

    def parse(text: str) -> np.ndarray:
        source = io.StringIO(text.replace(",", ".") if decimal_comma else text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "no data": reported as empty
            return np.loadtxt(source, delimiter=delimiter, comments="#", skiprows=skip,
                              dtype=np.float64, ndmin=2)

    try:
        values = parse(text)
    except ValueError:
        # a DAQ or logger stopped mid-line (power loss, a file copied while written): the
        # unterminated last line is dropped, with a note; any other bad line still fails
        stripped = text.rstrip("\r\n ")
        if text.endswith(("\n", "\r")) or "\n" not in stripped:
            raise
        values = parse(stripped.rsplit("\n", 1)[0] + "\n")
        logging.getLogger("edgecnn.deploy").warning(
            "note: %s ends in a cut line (%r: a recording stopped mid-write?); read without "
            "it", path, stripped.rsplit("\n", 1)[1][:40])
    if header is not None and delimiter is None and values.shape[1] == 1:
        header = [" ".join(header)]     # one column whose name holds spaces ("a m/s²")
    if header is not None and values.size and len(header) != values.shape[1]:
        raise SourceError(f"{path}: header has {len(header)} columns but the data has "
                          f"{values.shape[1]}")
    if values.shape[1] == 1:
        name = header[0] if header else "0"
        if (_is_index(channel) and int(channel) != 0) or (
                header and not _is_index(channel) and str(channel) not in (DEFAULT_CHANNEL, name)):
            raise SourceError(f"{path} has one column ({name!r}); it has no channel "
                              f"{str(channel)!r}")
        return values[:, 0], rate, None, name
    if header is not None and str(channel) in header:
        column = header.index(str(channel))
        return values[:, column], rate, None, str(channel)
    if header is not None and not _is_index(channel):
        if str(channel) == DEFAULT_CHANNEL:       # nothing asked for: say how to ask
            raise SourceError(f"{path} holds {len(header)} columns ({', '.join(header)}); "
                              "choose one with --channel NAME or --channel INDEX")
        raise SourceError(f"{path} has no column {channel!r}; columns: {', '.join(header)}")
    samples, used = _pick_column(path, values, channel)
    return samples, rate, None, used


def _read_wav(path: Path, channel):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", wavfile.WavFileWarning)
        try:
            rate, data = wavfile.read(str(path))
        except UnboundLocalError:  # SciPy, on a RIFF file without a 'fmt ' chunk
            raise SourceError(f"recording {path} is not a valid WAV file: expected a RIFF/WAVE "
                              "file with a 'fmt ' and a 'data' chunk") from None
    for warning in caught:
        if "EOF prematurely" in str(warning.message):
            raise SourceError(f"recording {path} is truncated: {warning.message}")
    data = np.asarray(data)
    if data.dtype == np.uint8:
        scaled = (data.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        scaled = data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))
    else:
        scaled = data.astype(np.float64)
    samples, used = _pick_column(path, scaled, channel)
    return samples, float(rate), None, used


_READERS = {".mat": _read_mat, ".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv,
            ".wav": _read_wav}


# ------------------------------------------------------------------------------ helpers

def _pick_column(path: Path, array: np.ndarray, channel) -> tuple[np.ndarray, str]:
    """1-D array as is; a 2-D array (samples x channels) needs an integer channel index.
    Channels are the short side: a channels x samples array (MATLAB's and many DAQ
    exports' row per channel) is read the same way."""
    array = np.asarray(array)
    if array.ndim == 2 and 1 in array.shape:
        array = array.ravel()
    if array.ndim == 2 and array.shape[0] < array.shape[1]:
        array = array.T
    if array.ndim == 1:
        if _is_index(channel) and int(channel) != 0:
            raise SourceError(f"{path} holds one channel; it has no channel index {channel}")
        return array, "0"
    if array.ndim != 2:
        raise SourceError(f"{path}: expected a 1-D signal or a 2-D (samples x channels) "
                          f"array; found shape {array.shape}")
    if not _is_index(channel):
        asked = "" if str(channel) == DEFAULT_CHANNEL else f", not {channel!r}"
        raise SourceError(f"{path} holds {array.shape[1]} channels (shape {array.shape}); "
                          f"choose one with --channel INDEX, 0..{array.shape[1] - 1}{asked}")
    column = int(channel)
    if not 0 <= column < array.shape[1]:
        raise SourceError(f"{path}: channel index {column} is out of range; the file has "
                          f"{array.shape[1]} channels (0..{array.shape[1] - 1})")
    return array[:, column], str(column)


def _as_signal(path: Path, samples) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.ravel()
    if samples.ndim != 1:
        raise SourceError(f"{path}: expected a 1-D signal; found shape {samples.shape}")
    if not (np.issubdtype(samples.dtype, np.number) or samples.dtype == np.bool_):
        raise SourceError(f"{path}: expected numeric samples; found dtype {samples.dtype}")
    if np.iscomplexobj(samples):
        raise SourceError(f"{path}: expected real samples; found complex values")
    if samples.size == 0:
        raise SourceError(f"recording {path} holds no samples")
    return np.ascontiguousarray(samples, dtype=np.float64)


def _resolve_rate(path: Path, file_rate: float | None, given: float | None,
                  rate_from: str = "--sample-rate") -> float:
    if given is not None and (why := sample_rate_problem(given)) is not None:
        raise InputError(f"sample rate: {why}")
    if file_rate is not None and (why := sample_rate_problem(file_rate)) is not None:
        raise SourceError(f"{path} states an invalid sample rate ({why})")
    if file_rate is None and given is None:
        where = ("--sample-rate HZ" if rate_from == "--sample-rate" else
                 f"{rate_from}, or --sample-rate HZ")
        raise InputError(f"{path} does not state its sample rate; give it with {where}")
    if file_rate is None:
        return float(given)
    if given is not None and abs(float(given) - file_rate) > 1e-6 * file_rate:
        raise InputError(f"{path} is sampled at {file_rate:g} Hz but {rate_from} says "
                         f"{float(given):g} Hz; correct one of them")
    return float(file_rate)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_index(channel) -> bool:
    if isinstance(channel, bool):
        return False
    if isinstance(channel, (int, np.integer)):
        return True
    return isinstance(channel, str) and channel.strip().isdigit()
