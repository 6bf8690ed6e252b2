"""One corrupt registry file degrades to one named broken item: every page still renders and names the file.

Each kind of file the registry parses is corrupted in turn (truncated JSON, binary garbage, a wrong shape, deep
nesting) in a registry that holds a real trained adapter, a job, two datasets, a federation and a mapping.
"""

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from registry.errors import CorruptFile
from tests.full_registry import build_full_registry

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "home.py",
    "dataset_library.py",
    "schema_mappings.py",
    "data_browser.py",
    "training_jobs.py",
    "adapters.py",
    "federations.py",
    "playground.py",
]
# Which page must name a broken file of each kind (Home names every kind).
AREA_PAGES = {
    "meta.json": "dataset_library.py",
    "state.json": "training_jobs.py",
    "lineage.json": "adapters.py",
    "federation": "federations.py",
    "mapping": "schema_mappings.py",
}
GARBAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "binary": lambda data: b"\xff\xfe\x00garbage\x81",
    "wrong shape": lambda data: b'{"unexpected": [1, 2, 3]}',
    "deeply nested": lambda data: b"[" * 100_000 + b"]" * 100_000,
    "NaN": lambda data: b'{"name": NaN}',
}


@pytest.fixture(scope="module")
def full_registry(tmp_path_factory):
    """A registry with one of everything, made through the real services (the job trains a tiny model for 2 steps)."""
    root = tmp_path_factory.mktemp("corrupt")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(root / "registry"))
        patch.setenv("RMN_LORA_MODELS", str(root / "models"))
        yield build_full_registry(root)


def targets(home: Path) -> dict[str, Path]:
    return {
        "meta.json": home / "library" / "alpha_sft" / "meta.json",
        "state.json": next((home / "jobs").glob("job_*/state.json")),
        "lineage.json": home / "adapters" / "mapper" / "v1" / "lineage.json",
        "federation": next((home / "federations").glob("fed_*.json")),
        "mapping": next((home / "mappings").glob("*.yaml")),
    }


def render(name: str, monkeypatch, home: Path) -> AppTest:
    monkeypatch.setenv("RMN_LORA_HOME", str(home))
    script = ROOT / "app.py" if name == "home.py" else ROOT / "views" / name  # Home's page links need the navigation
    return AppTest.from_file(str(script), default_timeout=120).run()


def page_text(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.warning, *at.error, *at.markdown, *at.caption, *at.info])


@pytest.mark.parametrize("kind", list(AREA_PAGES))
def test_one_corrupt_file_is_one_named_item_and_every_page_renders(full_registry, monkeypatch, kind):
    monkeypatch.setenv("RMN_LORA_HOME", str(full_registry))
    monkeypatch.setenv("RMN_LORA_MODELS", str(full_registry.parent / "models"))
    from services.health import broken_files

    path = targets(full_registry)[kind]
    original = path.read_bytes()
    try:
        path.write_bytes(GARBAGE["truncated"](original))
        for name in PAGES:
            at = render(name, monkeypatch, full_registry)
            assert not at.exception, (name, [e.value for e in at.exception])
            assert not [e for e in at.error if "Unexpected error" in str(e.value)], (name, at.error)
            if name in ("home.py", AREA_PAGES[kind]):
                shown = page_text(at).replace("\\", "")
                assert path.name in shown and str(path.parent) in shown, (name, shown[:2000])
    finally:
        path.write_bytes(original)
    assert broken_files() == []


@pytest.mark.parametrize("damage", list(GARBAGE))
@pytest.mark.parametrize("kind", list(AREA_PAGES))
def test_every_kind_of_damage_is_named_with_a_fix(full_registry, monkeypatch, kind, damage):
    monkeypatch.setenv("RMN_LORA_HOME", str(full_registry))
    from services.health import broken_files

    path = targets(full_registry)[kind]
    original = path.read_bytes()
    if kind == "mapping" and damage == "wrong shape":
        pytest.skip("YAML of the wrong shape is a validation error, tested in test_mappings")
    try:
        path.write_bytes(GARBAGE[damage](original))
        broken = broken_files()
        assert [error.path for error in broken] == [path]
        assert isinstance(broken[0], CorruptFile) and "remove" in broken[0].fix
    finally:
        path.write_bytes(original)
    assert broken_files() == []


def test_the_rest_of_each_list_still_works(full_registry, monkeypatch):
    monkeypatch.setenv("RMN_LORA_HOME", str(full_registry))
    from services import list_datasets

    meta = targets(full_registry)["meta.json"]
    original = meta.read_bytes()
    try:
        meta.write_bytes(original[:10])
        assert [r.name for r in list_datasets()] == ["beta_sft"]
        at = render("dataset_library.py", monkeypatch, full_registry)
        assert list(at.dataframe[0].value["Name"]) == ["beta_sft"]
    finally:
        meta.write_bytes(original)


@pytest.mark.parametrize("folder", ["library", "jobs", "federations"])
def test_a_garbage_generation_stamp_is_only_a_change(full_registry, monkeypatch, folder):
    stamp = full_registry / folder / ".generation"
    original = stamp.read_bytes() if stamp.exists() else None
    try:
        stamp.write_bytes(b"\xff\xfe\x81 not a stamp " * 100)
        for name in ("home.py", "dataset_library.py", "training_jobs.py", "federations.py"):
            at = render(name, monkeypatch, full_registry)
            assert not at.exception and not at.warning and not at.error, (name, at.exception, at.warning, at.error)
    finally:
        if original is None:
            stamp.unlink()
        else:
            stamp.write_bytes(original)


def test_a_dataset_with_a_corrupt_meta_can_still_be_deleted(full_registry, monkeypatch, tmp_path):
    monkeypatch.setenv("RMN_LORA_HOME", str(full_registry))
    from services import delete_dataset, list_datasets

    folder = full_registry / "library" / "beta_sft"
    backup = tmp_path / "beta"
    shutil.copytree(folder, backup)
    try:
        (folder / "meta.json").write_bytes(b"{")
        delete_dataset("beta_sft")
        assert not folder.exists()
        assert [r.name for r in list_datasets()] == ["alpha_sft"]
    finally:
        shutil.copytree(backup, folder, dirs_exist_ok=True)
