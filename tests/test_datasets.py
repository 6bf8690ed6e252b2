"""The dataset library on real files: import, versions, export, delete, bad input and concurrency."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import snapshot

from registry import datasets as library
from services import ConsoleError, DatasetKind, InvalidFile, InvalidName, NotFound, list_datasets, upload_dataset

ALPACA = [
    {"instruction": f"Map field 'adType' value {i}", "input": "", "output": f"placement_type: v{i}"} for i in range(12)
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("filename", "kind", "rows"),
    [
        ("alpaca_en_demo.json", DatasetKind.ALPACA, 999),
        ("identity.json", DatasetKind.ALPACA, 91),
        ("dpo_en_demo.json", DatasetKind.DPO, 300),
        ("kto_en_demo.json", DatasetKind.KTO, 300),
        ("v1_sft_demo.jsonl", DatasetKind.CHAT, 200),
    ],
)
def test_peer_data_imports_with_detected_shape(registry, peer_data, filename, kind, rows):
    record = upload_dataset(Path(filename).stem, peer_data / filename)
    assert (record.kind, record.rows, record.version) == (kind, rows, 1)
    assert 0 <= record.quality_score <= 100
    first = library.read_rows(record.name, limit=1)[0]
    if kind is DatasetKind.DPO:
        assert first["prompt"][0]["role"] == "user" and isinstance(first["chosen"], str)
    if kind is DatasetKind.CHAT:
        assert {m["role"] for m in first["messages"]} <= {"system", "user", "assistant", "tool"}
        assert all(isinstance(m["content"], str) for m in first["messages"])
    if kind is DatasetKind.KTO:  # the label is what KTO learns from: the last turn is the answer it judges
        assert isinstance(first["label"], bool) and first["prompt"][-1]["role"] == "user"
        assert isinstance(first["completion"], str) and first["completion"]


def test_upload_versions_and_dedup(registry, tmp_path):
    first = upload_dataset("amazon_sft", write_jsonl(tmp_path / "a.jsonl", ALPACA), description="demo")
    same = upload_dataset("amazon_sft", write_jsonl(tmp_path / "b.jsonl", ALPACA))
    assert same.version == 1 and same.content_hash == first.content_hash
    second = upload_dataset("amazon_sft", write_jsonl(tmp_path / "c.jsonl", ALPACA[:5]))
    assert second.version == 2 and second.rows == 5 and second.description == "demo"
    assert [v.rows for v in library.get_dataset("amazon_sft").versions] == [12, 5]
    assert len(library.read_rows("amazon_sft", version=1, limit=100)) == 12


def test_kind_correction_converts_records(registry, tmp_path):
    record = upload_dataset("amazon_eval", write_jsonl(tmp_path / "a.jsonl", ALPACA), kind="evaluation")
    assert record.kind is DatasetKind.EVALUATION
    assert library.read_rows("amazon_eval", limit=1)[0] == {
        "prompt": ALPACA[0]["instruction"],
        "reference": ALPACA[0]["output"],
    }


def test_export_roundtrip_csv_and_jsonl(registry, peer_data, tmp_path):
    upload_dataset("dpo", peer_data / "dpo_en_demo.json")
    csv_path = tmp_path / "dpo.csv"
    csv_path.write_bytes(library.export_dataset("dpo", "csv"))
    reimported = upload_dataset("dpo_from_csv", csv_path)
    assert reimported.kind is DatasetKind.DPO
    assert reimported.content_hash == library.get_dataset("dpo").content_hash
    assert library.export_dataset("dpo", "jsonl") == library.dataset_file("dpo").read_bytes()


def test_list_search_filter_and_delete(registry, tmp_path, peer_data):
    upload_dataset("retail_a", write_jsonl(tmp_path / "a.jsonl", ALPACA), description="walmart mapping")
    upload_dataset("prefs", peer_data / "dpo_en_demo.json")
    assert {r.name for r in list_datasets()} == {"retail_a", "prefs"}
    assert [r.name for r in list_datasets(search="WALMART")] == ["retail_a"]
    assert [r.name for r in list_datasets(kind="dpo")] == ["prefs"]
    library.delete_dataset("prefs")
    assert [r.name for r in list_datasets()] == ["retail_a"]
    assert not (registry.library / "prefs").exists()
    with pytest.raises(NotFound):
        library.get_dataset("prefs")


def bad_inputs(tmp: Path) -> list[tuple[str, str, Path, dict]]:
    """(case, dataset name, file, extra kwargs): each must be refused with a clear error."""
    good = write_jsonl(tmp / "good.jsonl", ALPACA)

    def raw(name: str, data: bytes) -> Path:
        path = tmp / name
        path.write_bytes(data)
        return path

    return [
        ("malformed line", "bad", raw("m.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "a", \n'), {}),
        ("latin-1 bytes", "bad", raw("l.jsonl", '{"instruction": "caf\xe9", "output": "b"}\n'.encode("latin-1")), {}),
        ("utf-16 file", "bad", raw("u.jsonl", '{"instruction": "a", "output": "b"}\n'.encode("utf-16")), {}),
        ("empty file", "bad", raw("e.jsonl", b""), {}),
        ("blank file", "bad", raw("b.jsonl", b"\n\n   \n"), {}),
        ("unsupported type", "bad", raw("x.txt", b"hello"), {}),
        ("unknown shape", "bad", raw("s.jsonl", b'{"foo": 1, "bar": 2}\n'), {}),
        ("array of numbers", "bad", raw("n.json", b"[1, 2, 3]"), {}),
        ("truncated array", "bad", raw("t.json", b'[{"instruction": "a", "output": "b"},'), {}),
        ("csv ragged row", "bad", raw("r.csv", b"instruction,output\na,b\nc,d,e\n"), {}),
        ("csv repeated header", "bad", raw("h.csv", b"instruction,instruction,output\na,b,c\n"), {}),
        ("wrong field type", "bad", raw("w.jsonl", b'{"instruction": "a", "output": {"x": [1]}}\n'), {}),
        ("unknown chat role", "bad", raw("c.jsonl", b'{"messages": [{"role": "wizard", "content": "hi"}]}\n'), {}),
        (
            "dpo read as alpaca",
            "bad",
            raw("d.jsonl", b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'),
            {"kind": "alpaca"},
        ),
        ("missing file", "bad", tmp / "does-not-exist.jsonl", {}),
        ("name with ../", "../escape", good, {}),
        ("name with separator", "a/b", good, {}),
        ("name with dots", "a..b", good, {}),
        ("hidden name", ".hidden", good, {}),
        ("empty name", "", good, {}),
        ("name too long", "x" * 65, good, {}),
        ("name with NUL", "a\x00b", good, {}),
        ("windows device name", "CON", good, {}),
    ]


def test_bad_inputs_are_refused_and_change_nothing(registry, tmp_path):
    upload_dataset("existing", write_jsonl(tmp_path / "seed.jsonl", ALPACA))
    before = snapshot(registry.root)
    cases = bad_inputs(tmp_path)
    assert len(cases) >= 20
    for case, name, path, kwargs in cases:
        with pytest.raises(ConsoleError) as caught:
            upload_dataset(name, path, **kwargs)
        message = str(caught.value)
        assert len(message) > 20 and "Traceback" not in message, case
        assert snapshot(registry.root) == before, f"{case} changed the registry"
    assert [r.name for r in list_datasets()] == ["existing"]


def test_specific_messages_name_the_problem(registry, tmp_path):
    cases = {c[0]: c for c in bad_inputs(tmp_path)}
    with pytest.raises(InvalidFile, match="Line 2: invalid JSON"):
        upload_dataset("bad", cases["malformed line"][2])
    with pytest.raises(InvalidFile, match="not valid UTF-8"):
        upload_dataset("bad", cases["latin-1 bytes"][2])
    with pytest.raises(InvalidFile, match="Line 3: 3 values but the header has 2 columns"):
        upload_dataset("bad", cases["csv ragged row"][2])
    with pytest.raises(InvalidName, match=r"path separator"):
        upload_dataset("../escape", cases["malformed line"][2])
    upload_dataset("x", write_jsonl(tmp_path / "ok.jsonl", ALPACA))
    with pytest.raises(InvalidFile, match="holds alpaca records"):
        upload_dataset("x", cases["dpo read as alpaca"][2])


def test_size_and_line_limits(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("RMN_LORA_MAX_UPLOAD_MB", "1")
    monkeypatch.setenv("RMN_LORA_MAX_LINE_MB", "1")
    big = write_jsonl(tmp_path / "big.jsonl", [{"instruction": "x" * 600_000, "output": "y"}] * 2)
    before = snapshot(registry.root)
    with pytest.raises(InvalidFile, match="upload limit of 1 MB"):
        upload_dataset("big", big)
    huge_line = write_jsonl(tmp_path / "line.jsonl", [{"instruction": "x" * 1_100_000, "output": "y"}])
    monkeypatch.setenv("RMN_LORA_MAX_UPLOAD_MB", "5")
    with pytest.raises(InvalidFile, match="Line 1: the line is longer than 1 MB"):
        upload_dataset("big", huge_line)
    assert snapshot(registry.root) == before


def test_concurrent_thread_uploads_lose_nothing(registry, tmp_path):
    files = [write_jsonl(tmp_path / f"{i}.jsonl", ALPACA[: i + 1]) for i in range(8)]

    def upload(i: int) -> int:
        upload_dataset(f"distinct_{i}", files[i])
        return upload_dataset("shared", files[i]).version

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(upload, range(8)))
    shared = library.get_dataset("shared")
    assert sorted(v.rows for v in shared.versions) == list(range(1, 9))
    assert [v.version for v in shared.versions] == list(range(1, 9))
    assert len(list_datasets()) == 9
    assert not list(registry.tmp.iterdir())


UPLOAD_SCRIPT = """
import json, sys
from pathlib import Path
from services import upload_dataset
worker, folder = int(sys.argv[1]), Path(sys.argv[2])
for i in range(3):
    path = folder / f"p{worker}_{i}.jsonl"
    rows = [{"instruction": f"worker {worker} file {i} row {r}", "output": "ok"} for r in range(5)]
    path.write_text("".join(json.dumps(r) + "\\n" for r in rows))
    upload_dataset("shared", path)
"""


def test_concurrent_process_uploads_lose_nothing(registry, tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", UPLOAD_SCRIPT, str(w), str(tmp_path)], cwd=Path(__file__).parents[1])
        for w in range(4)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0] * 4  # generous: four imports at once on a loaded box
    shared = library.get_dataset("shared")
    assert [v.version for v in shared.versions] == list(range(1, 13))
    assert len({v.content_hash for v in shared.versions}) == 12
    for version in shared.versions:
        assert len(library.read_rows("shared", version=version.version, limit=10)) == 5
    log = registry.activity_log.read_text().splitlines()
    assert sum(json.loads(line)["kind"] == "dataset.imported" for line in log) == 12


def test_staged_upload_is_size_limited_and_previewed(registry, monkeypatch):
    import io

    monkeypatch.setenv("RMN_LORA_MAX_UPLOAD_MB", "1")
    with pytest.raises(InvalidFile, match="upload limit of 1 MB"):
        library.stage_upload(io.BytesIO(b"x" * (1024 * 1024 + 1)), "big.jsonl")
    assert list(registry.uploads.glob("*")) == []  # nothing left behind
    staged = library.stage_upload(io.BytesIO(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'), "pairs.jsonl")
    preview = library.preview_file(staged, "pairs.jsonl")
    assert (preview.format, preview.detection.kind, len(preview.sample)) == ("jsonl", DatasetKind.DPO, 1)
    staged.unlink()
