"""The layers stay light where they should: listing things never loads the training or inference stack."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "peft", "bitsandbytes")
PROBE = """
import json, sys
from services import list_adapters, list_datasets, list_federations, list_jobs, registry_overview
list_adapters(); list_datasets(); list_federations(); list_jobs(); registry_overview()
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def test_listing_adapters_datasets_jobs_and_federations_imports_no_torch_transformers_or_trl(registry):
    env = {**os.environ, "RMN_LORA_HOME": str(registry.root), "PYTHONPATH": str(ROOT)}
    probe = PROBE.format(heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
