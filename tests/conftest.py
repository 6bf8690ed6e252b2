"""Shared fixtures: every test gets its own registry and never touches the repo's datasets/."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Beside the clone (as CI lays it out); RMN_PEER_DATA points elsewhere, e.g. from a git worktree.
PEER_DATA = Path(os.environ.get("RMN_PEER_DATA") or Path(__file__).resolve().parents[2] / "shared" / "peer-data")


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A fresh, empty registry rooted in a temp folder, active through `RMN_LORA_HOME`."""
    from registry.layout import open_registry

    home = tmp_path / "registry"
    monkeypatch.setenv("RMN_LORA_HOME", str(home))
    return open_registry()


@pytest.fixture
def refused_port():
    """A loopback port that refuses connections for the whole test (bound, never listened on): the address of a
    server that is down, which no other server can start on while the test runs."""
    from tests.api_server import closed_port

    with closed_port() as port:
        yield port


@pytest.fixture
def peer_data() -> Path:
    if not PEER_DATA.is_dir():
        pytest.skip(f"peer data not found at {PEER_DATA}")
    return PEER_DATA


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under the registry with its bytes, lock files and the audit trail aside (locks are empty and persist
    by design; the audit trail records refused attempts too)."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".locks" not in path.parts and path.name != "audit.jsonl"
    }


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny Llama built from a config (no download), one per test module: what the training tests train on."""
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are all overhead: one thread is faster, and immune to OpenMP stalls on a busy 2-core box.
    A module asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def datasets(registry):
    """The training tests' library: an SFT set, its evaluation split and a DPO set (rows in test_training_worker)."""
    from registry.datasets import write_records
    from registry.shapes import DatasetKind
    from tests.test_training_worker import ALPACA, PREFERENCES

    write_records("amazon_sft", ALPACA * 2, DatasetKind.ALPACA, origin="test", registry=registry)
    write_records("amazon_eval", ALPACA[:4], DatasetKind.ALPACA, origin="test", registry=registry)
    write_records("policy_dpo", PREFERENCES, DatasetKind.DPO, origin="test", registry=registry)
    return registry
