"""Import control: pandas stays out of the process until a call needs it.

pyarrow imports pandas, when it is installed, the first time ``pa.array`` is
given anything but a numpy array, or ``Array.to_numpy`` copies, only to ask
whether the object is a pandas Series. The prediction log and the feature
lookup call ``pa.array`` on lists all the time, so the daemon would carry
pandas (about 50 MB resident with pandas 2.x) without using it, and the
quality report of ``appliance ingest`` would wait for its import (about
0.2 s of CPU on the flights file, an estimate from one-off timings).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pyarrow as pa

logger = logging.getLogger(__name__)


def skip_pyarrow_pandas_probe() -> bool:
    """Make pyarrow's first pandas probe find no pandas, unless it is loaded.

    pyarrow (its ``pandas_api`` shim, checked with pyarrow 26.0.1) then treats list
    input as plain sequences without importing pandas. A later call that
    needs pandas, such as ``Table.to_pandas`` in a training run, imports it
    as usual, and from then on pyarrow uses it everywhere.

    Returns:
        True when the probe ran without pandas; False when pandas was
        already imported, so the probe is left alone.
    """
    if "pandas" in sys.modules:
        return False
    # NOTE: pyarrow records that it tried and retries only when a call needs
    # pandas; pa.array on a list runs the probe.
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(finder)
    logger.debug("pyarrow pandas probe done without pandas")
    return True


class _NoPandas:
    """Import hook under which ``import pandas`` fails, as if not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
