"""Opening the registry is cheap once its layout stands (one stat, settings built once per environment and
settings file), yet a removed folder, a replaced root, a changed environment or a saved settings file still take
effect on the next open."""

import shutil

import pytest

from registry.layout import LAYOUT, open_registry
from registry.settings import get_settings


def test_a_folder_removed_after_the_layout_was_checked_is_made_again(registry):
    root = open_registry().root
    open_registry()  # the second open finds every folder: from here one stat of the root stands for them all
    shutil.rmtree(root / "requests")
    (root / "jobs").rmdir()
    assert open_registry().requests.is_dir() and (root / "jobs").is_dir()


def test_a_root_replaced_by_an_empty_folder_is_laid_out_again(registry):
    root = open_registry().root
    open_registry()
    shutil.rmtree(root)
    root.mkdir()
    open_registry()
    assert all((root / folder).is_dir() for folder in LAYOUT)


def test_a_layout_folder_replaced_by_a_file_is_refused(registry):
    root = open_registry().root
    open_registry()
    shutil.rmtree(root / "playground")
    (root / "playground").write_text("not a folder")
    with pytest.raises(FileExistsError):
        open_registry()


def test_settings_follow_the_environment_and_the_settings_file(registry, tmp_path, monkeypatch):
    from services.settings import update_settings

    first = get_settings()
    assert get_settings() is first  # built once while nothing changed
    with pytest.raises(ValueError, match="frozen"):
        first.page_size = 50  # a shared instance: nobody may change it in place
    monkeypatch.setenv("RMN_LORA_PAGE_SIZE", "40")
    assert get_settings().page_size == 40
    monkeypatch.delenv("RMN_LORA_PAGE_SIZE")
    update_settings(page_size=30)
    assert get_settings().page_size == 30
    update_settings(page_size=35)
    assert get_settings().page_size == 35
    monkeypatch.setenv("RMN_LORA_HOME", str(tmp_path / "elsewhere"))
    moved = open_registry()
    assert moved.root == (tmp_path / "elsewhere").resolve() and moved.settings.page_size == 25
    assert all((moved.root / folder).is_dir() for folder in LAYOUT)


def _rewrite_in_the_same_tick(path, write) -> None:
    """Replace `path` as our writes do, then give it the old mtime: what a filesystem whose timestamps move in
    coarse ticks shows when two writes land in one tick (here the clock is fine-grained, so it is set by hand)."""
    import os

    before = path.stat()
    write()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size


def test_a_settings_file_saved_twice_in_one_timestamp_tick_is_read_again(registry):
    from registry.storage import atomic_write_json

    atomic_write_json(registry.settings_file, {"page_size": 30})
    assert get_settings().page_size == 30
    _rewrite_in_the_same_tick(
        registry.settings_file, lambda: atomic_write_json(registry.settings_file, {"page_size": 40})
    )
    assert get_settings().page_size == 40


def _as_dict(value: dict) -> dict:
    return dict(value)


def test_a_record_rewritten_in_one_timestamp_tick_is_parsed_again(tmp_path):
    from registry.storage import atomic_write_json, load_json_cached

    path = tmp_path / "record.json"
    atomic_write_json(path, {"version": 1})
    assert load_json_cached(path, _as_dict) == {"version": 1}
    _rewrite_in_the_same_tick(path, lambda: atomic_write_json(path, {"version": 2}))
    assert load_json_cached(path, _as_dict) == {"version": 2}
