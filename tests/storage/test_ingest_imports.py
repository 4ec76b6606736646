"""``appliance ingest`` runs its quality report without importing pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import subprocess_env

SCRIPT = """
import sys
from appliance.cli import main
status = main(sys.argv[1:])
print("pandas imported:", "pandas" in sys.modules)
sys.exit(status)
"""


def test_cli_ingest_leaves_pandas_out(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    lines = [f"{i},{i % 7},{'abc'[i % 3]}" for i in range(3000)]
    source.write_text("id,value,code\n" + "\n".join(lines) + "\n")
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nhome = "{tmp_path / "home"}"\n')

    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, "--config", str(config)]
        + ["ingest", "rows", str(source)],
        env=subprocess_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "accepted=3000 quarantined=0" in result.stdout
    assert "pandas imported: False" in result.stdout
