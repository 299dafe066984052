"""Reading an operator's CSV file: what can go wrong with the file itself (missing, not
UTF-8, broken quoting) becomes one error naming the file, of the caller's class."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from telematics.errors import TelematicsError


@contextmanager
def file_errors(path: str | Path, error: type[TelematicsError]) -> Iterator[None]:
    """Wrap the opening and the reading: ``with file_errors(p, E), open(p) as f: ...``."""
    try:
        yield
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise error(f"{path}: not readable as CSV ({exc})") from None
