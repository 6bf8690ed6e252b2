"""Hostile input, each refused at its cause with a ConsoleError that says what to do, and the registry unchanged.

Exports that are safe to open in a spreadsheet and import back; user text that cannot load anything; limits on
prompts, templates and generation; parser and API argument errors; staged uploads and scratch files that stay
inside the registry; names that survive Windows and case-insensitive filesystems.
"""

import csv
import io
import json
import os
import re
import time
import tomllib
from pathlib import Path

import pytest
from conftest import snapshot
from streamlit.testing.v1 import AppTest

from registry.errors import ConsoleError, CorruptFile, InvalidFile, InvalidMapping, InvalidName
from services import compose_federation, export_dataset, list_datasets, upload_dataset

ROOT = Path(__file__).resolve().parents[1]
FORMULAS = ["=1+1", "+SUM(A1:A2)", "-2+3", "@cmd", "\tx", "\rline", "'=quoted", "'plain", "a\rb", "x\x0by\x1cz"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---- CSV export ------------------------------------------------------------------------------------------------


def test_csv_export_neutralises_formulas_and_quotes_control_characters(registry, tmp_path):
    rows = [{"instruction": text, "input": "", "output": f"answer {i}"} for i, text in enumerate(FORMULAS)]
    upload_dataset("formulas", write_jsonl(tmp_path / "f.jsonl", rows))
    exported = export_dataset("formulas", "csv").decode("utf-8")
    cells = [row[0] for row in csv.reader(io.StringIO(exported, newline=""))][1:]
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), repr(cell)
    assert "'=1+1" in cells and "'-2+3" in cells and "''=quoted" in cells and "'plain" not in cells
    # Every cell is quoted, so a bare carriage return or a vertical tab stays inside its cell.
    assert '"a\rb"' in exported and '"x\x0by\x1cz"' in exported


def test_csv_export_imports_back_as_the_same_records(registry, tmp_path):
    rows = [{"instruction": text, "input": "-", "output": f"={i}"} for i, text in enumerate(FORMULAS)]
    upload_dataset("source", write_jsonl(tmp_path / "s.jsonl", rows))
    (tmp_path / "back.csv").write_bytes(export_dataset("source", "csv"))
    upload_dataset("back", tmp_path / "back.csv", kind="alpaca")
    assert export_dataset("back", "jsonl") == export_dataset("source", "jsonl")


def test_chat_csv_export_round_trips(registry, tmp_path):
    rows = [{"messages": [{"role": "user", "content": "=HYPERLINK()"}, {"role": "assistant", "content": "-1"}]}]
    upload_dataset("chat", write_jsonl(tmp_path / "c.jsonl", rows * 3))
    (tmp_path / "back.csv").write_bytes(export_dataset("chat", "csv"))
    upload_dataset("chat_back", tmp_path / "back.csv", kind="chat")
    assert export_dataset("chat_back", "jsonl") == export_dataset("chat", "jsonl")


def test_raw_source_export_neutralises_formulas():
    import pandas as pd

    from registry.raw_sources import export_frame

    data = export_frame(pd.DataFrame({"name": ["=cmd|' /C calc'!A0", "ok"], "value": [-1.5, None]}), "csv")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[1][0] == "'=cmd|' /C calc'!A0" and rows[1][1] == "-1.5" and rows[2] == ["ok", ""]


# ---- user text is never live Markdown ----------------------------------------------------------------------------

INJECTION = "![x](http://127.0.0.1:9/p.png) <img src=http://127.0.0.1:9/q.png> [link](http://127.0.0.1:9/)"


def live(markdown: str) -> bool:
    """Whether Markdown source still holds an image, a link or a tag that is not backslash-escaped."""
    return bool(re.search(r"(?<!\\)!(?<!\\)\[|(?<!\\)\]\(|(?<!\\)<[a-z]", markdown))


def test_plain_escapes_every_markdown_and_html_character():
    from views.common import plain

    shown = plain(INJECTION)
    assert not live(shown)
    assert shown.replace("\\", "") == INJECTION


def test_a_dataset_description_with_an_image_is_shown_as_text(registry, tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(5)]
    upload_dataset("described", write_jsonl(tmp_path / "a.jsonl", rows), description=INJECTION)
    at = AppTest.from_file(str(ROOT / "views" / "dataset_library.py"), default_timeout=120).run()
    at.selectbox(key="dataset_selected").select("described").run()
    captions = [c.value for c in at.caption if "127.0.0.1" in c.value.replace("\\", "")]
    assert captions and not any(live(c) for c in captions), captions


def test_a_mapping_description_with_an_image_is_shown_as_text(registry):
    from services.mappings import get_mapping, install_demo_data, list_mappings, save_mapping

    install_demo_data()
    first = list_mappings()[0]
    mapping = get_mapping(first.retailer)
    save_mapping(mapping.model_copy(update={"description": INJECTION}))
    at = AppTest.from_file(str(ROOT / "views" / "schema_mappings.py"), default_timeout=120).run()
    shown = [c.value for c in at.caption if "127.0.0.1" in c.value.replace("\\", "")]
    assert shown and not any(live(c) for c in shown), shown


# ---- limits ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    ["{input:>999999999}", "{input!r}", "{previous.__class__}", "{0}", "{secret}", "x}", "{input", "{" * 5000],
)
def test_templates_allow_only_plain_placeholders(template):
    from federation.spec import template_problem

    assert template_problem(template)


def test_a_hand_edited_template_is_refused_when_the_chain_runs():
    from federation.errors import InferenceError
    from federation.methods.sequential import stage_prompt
    from federation.spec import Member

    member = Member(
        adapter="a", version=1, role="task", rank=4, alpha=8, size_bytes=1, target_modules="all-linear",
        template="{input:>999999999}",
    )  # fmt: skip
    with pytest.raises(InferenceError, match="format spec"):
        stage_prompt(member, "hi", "")
    ok = member.model_copy(update={"template": "Q: {input} {{literal}} after {previous}"})
    assert stage_prompt(ok, "hi", "prev") == "Q: hi {literal} after prev"


@pytest.fixture
def tiny_base(registry, tmp_path, monkeypatch):
    from tiny_model import build_tiny_model

    monkeypatch.setenv("RMN_LORA_MODELS", str(tmp_path / "models"))
    build_tiny_model(tmp_path / "models" / "tiny-llama")
    from services.playground import Target

    return Target(kind="base", ref="tiny-llama")


def test_a_prompt_longer_than_the_models_context_is_a_clear_error(tiny_base):
    from federation.engine import GenerationSettings, InferenceEngine
    from services.playground import start_run

    engine = InferenceEngine()
    run = start_run(tiny_base, "word " * 3000, GenerationSettings(max_new_tokens=4), engine=engine)
    with pytest.raises(ConsoleError, match="context holds"):
        list(run)
    huge = start_run(tiny_base, "x" * 5_000_000, GenerationSettings(max_new_tokens=4), engine=engine)
    with pytest.raises(ConsoleError, match="characters long"):
        list(huge)
    fine = start_run(tiny_base, "hello", GenerationSettings(max_new_tokens=4), engine=engine)
    assert isinstance("".join(fine), str)


@pytest.mark.parametrize(
    "settings",
    [{"max_new_tokens": 0}, {"max_new_tokens": 10**9}, {"temperature": "hot"}, {"top_k": 5}, {"seed": -1}],
)
def test_bad_generation_settings_are_console_errors(settings):
    from services.federation import generation_settings

    with pytest.raises(ConsoleError, match="Invalid generation settings"):
        generation_settings(**settings)


# ---- parsers -----------------------------------------------------------------------------------------------------

BAD_JSON_ARRAYS = {
    "deep nesting": '[{"a": ' + "[" * 50_000 + "]" * 50_000 + "}]",
    "lone surrogate": '[{"instruction": "\\ud800", "output": "x"}]',
    "5,000-digit integer": '[{"instruction": "q", "output": "a", "n": ' + "9" * 5000 + "}]",
    "NaN": '[{"instruction": "q", "output": "a", "scores": [1, NaN]}]',
    "Infinity": '[{"instruction": "q", "output": "a", "score": -Infinity}]',
}


@pytest.mark.parametrize("problem", list(BAD_JSON_ARRAYS))
def test_json_array_parser_errors_are_invalid_file_with_a_line(registry, tmp_path, problem):
    path = tmp_path / "bad.json"
    path.write_text(BAD_JSON_ARRAYS[problem])
    before = snapshot(registry.root)
    with pytest.raises(InvalidFile, match="Line 1"):
        upload_dataset("bad", path)
    assert snapshot(registry.root) == before


@pytest.mark.parametrize(
    "line",
    [
        '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"instruction": "\\udfff", "output": "x"}',
        '{"instruction": "q", "output": "a", "n": ' + "9" * 5000 + "}",
        '{"instruction": "q", "output": NaN}',
    ],
)
def test_jsonl_parser_errors_are_invalid_file(registry, tmp_path, line):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "fine", "output": "ok"}\n' + line + "\n")
    with pytest.raises(InvalidFile, match="Line 2"):
        upload_dataset("bad", path)


def test_a_json_array_record_past_the_line_limit_is_refused(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("RMN_LORA_MAX_LINE_MB", "1")
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"instruction": "x" * (1 << 20), "output": "y"}]))
    with pytest.raises(InvalidFile, match="longer than 1 MB"):
        upload_dataset("big", path)


def test_deeply_nested_yaml_is_an_invalid_mapping():
    from registry.mappings import parse_mapping_yaml

    with pytest.raises(InvalidMapping, match="nested too deeply"):
        parse_mapping_yaml("fields: " + "[" * 20_000 + "]" * 20_000)


# ---- API arguments -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"adapters": ["a"], "weights": ["heavy"]}, "give a number"),
        ({"adapters": ["a"], "weights": [None]}, "must be a number"),
        ({"adapters": ["a"], "weights": 0.5}, "must be a list"),
        ({"adapters": ["a"], "weights": [True]}, "must be a number"),
        ({"adapters": ["a", "b"], "templates": [1, 2]}, "must be text"),
        ({"adapters": "a"}, "must be a list"),
        ({"adapters": ["a"], "name": 5}, "must be text"),
        ({"adapters": ["a"], "method": ["gated"]}, "must be text"),
    ],
)
def test_bad_federation_arguments_are_console_errors(registry, kwargs, says):
    with pytest.raises(ConsoleError, match=says):
        compose_federation(**kwargs)


def test_an_unknown_dataset_kind_is_a_console_error(registry, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "output": "a"}])
    with pytest.raises(InvalidFile, match="Unknown dataset type"):
        upload_dataset("a", path, kind="sft")


# ---- staged uploads, scratch files and links ---------------------------------------------------------------------


def test_uploads_are_staged_in_the_registry_and_removed_after_import(registry, tmp_path):
    from services.datasets import import_dataset, stage_upload

    data = b'{"instruction": "q", "output": "a"}\n'
    staged = stage_upload(io.BytesIO(data), "my file.jsonl")
    assert staged.parent == registry.uploads and staged.read_bytes() == data
    import_dataset("staged", staged, filename="my file.jsonl")
    assert not staged.exists() and list(registry.uploads.iterdir()) == []


def test_start_up_prunes_old_scratch_and_never_follows_a_link(registry, tmp_path):
    from services.datasets import prune_scratch

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    old = time.time() - 2 * 3600
    killed_import = registry.tmp / "import-0123.jsonl"
    killed_import.write_bytes(b"x" * 1000)
    registry.uploads.mkdir(parents=True, exist_ok=True)
    stale_upload = registry.uploads / "upload-old.jsonl"
    stale_upload.write_text("{}")
    link = registry.tmp / "deleted-link"
    link.symlink_to(outside, target_is_directory=True)
    fresh = registry.tmp / "import-fresh.jsonl"
    fresh.write_text("{}")
    for path in (killed_import, stale_upload):
        os.utime(path, (old, old))
    os.utime(link, (old, old), follow_symlinks=False)
    assert prune_scratch() >= 3
    assert not killed_import.exists() and not stale_upload.exists() and not link.is_symlink()
    assert fresh.exists() and (outside / "precious.txt").read_text() == "keep me"


def test_start_up_prunes_a_claimed_scratch_folder_only_once_its_process_is_gone(registry):
    """A folder claimed by a running piece of work (another process here) stays, however old; the same folder is
    removed at once when that process dies without cleaning up (SIGKILL: no `finally` runs)."""
    import signal
    import subprocess
    import sys

    from registry.storage import claimed
    from services.datasets import prune_scratch

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from registry.storage import claimed\n"
            "with claimed(Path(sys.argv[1]), Path(sys.argv[2])) as folder:\n"
            "    folder.mkdir(parents=True)\n"
            "    (folder / 'part.safetensors').write_bytes(b'x')\n"
            "    print('ready', flush=True)\n"
            "    time.sleep(600)\n",
            str(registry.locks),
            str(registry.tmp / "package-live"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        staged = registry.tmp / "package-live"
        old = time.time() - 2 * 3600
        os.utime(staged, (old, old))
        prune_scratch()
        assert (staged / "part.safetensors").exists(), "a folder in use was pruned"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        os.utime(staged, None)  # fresh: the age rule alone would keep it for an hour
        assert prune_scratch() >= 1
        assert not staged.exists() and not list(registry.locks.glob("*package-live*"))
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with claimed(registry.locks, registry.tmp / "package-done") as folder:  # a clean exit leaves nothing either
        folder.mkdir(parents=True)
    assert not folder.exists() and not list(registry.locks.glob("*package-done*"))


def test_export_refuses_a_version_file_linked_out_of_the_registry(registry, tmp_path):
    upload_dataset("linked", write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "output": "a"}]))
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"password": "hunter2"}\n')
    version = registry.library / "linked" / "v1.jsonl"
    version.unlink()
    version.symlink_to(secret)
    for fmt in ("jsonl", "csv"):
        with pytest.raises(CorruptFile, match="outside the registry"):
            export_dataset("linked", fmt)


# ---- names -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CON", "con.jsonl", "COM1", "com9.data", "LPT1", "lpt3", "NUL.txt", "AUX", "name."])
def test_windows_device_names_are_refused(registry, tmp_path, name):
    with pytest.raises(InvalidName):
        upload_dataset(name, write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "output": "a"}]))


def test_names_are_unique_ignoring_case(registry, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "output": "a"}])
    upload_dataset("Alpha", path)
    with pytest.raises(InvalidName, match="differ only in case"):
        upload_dataset("alpha", write_jsonl(tmp_path / "b.jsonl", [{"instruction": "q2", "output": "b"}]))
    assert [r.name for r in list_datasets()] == ["Alpha"]


def test_adapter_names_are_unique_ignoring_case(registry):
    from training.adapters import check_adapter_name

    (registry.adapters / "Mapper").mkdir()
    with pytest.raises(InvalidName, match="differ only in case"):
        check_adapter_name("mapper")
    assert check_adapter_name("Mapper") == "Mapper"


def test_the_browser_gets_no_tracebacks():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"
