"""The layer contracts of .importlinter hold (handlers -> reconcile -> render -> api/planner)."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--config", str(REPO / ".importlinter")], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_operator_package_shadows_the_stdlib():
    assert not (REPO / "operator" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")
