"""Canonical dataset records -> the conversational datasets TRL trains on.

SFT examples become prompt/completion conversations, so TRL renders them with the model's chat template and
puts the loss on the completion (the answer) only. DPO pairs become prompt/chosen/rejected conversations.
A dataset whose shape does not fit the objective is refused before any model is loaded. A record that is
well-formed but has nothing to learn (an empty answer, chosen == rejected) is skipped and counted: the
library imports such records (validation reports them), so one of them must not fail a whole job.
"""

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from registry.datasets import dataset_file, get_dataset, preview_file
from registry.errors import InvalidFile, InvalidName, NotFound
from registry.readers import detect_format, read_strict
from registry.settings import get_settings
from registry.shapes import DatasetKind, ShapeError, to_canonical
from registry.storage import validate_name

Objective = Literal["sft", "dpo"]
Message = dict[str, str]
SFT_KINDS = frozenset({DatasetKind.ALPACA, DatasetKind.CHAT, DatasetKind.EVALUATION})


class NothingToLearn(ShapeError):
    """A record without a training signal (empty answer, identical chosen and rejected): skipped, not fatal."""


@dataclass(frozen=True)
class FormattedDataset:
    """The examples to train on and the record numbers that were skipped because they had nothing to learn."""

    examples: list[dict[str, Any]]
    skipped: list[int]


@dataclass(frozen=True)
class DatasetSource:
    """Where training data came from, for lineage: a library dataset (name, version, hash) or a file."""

    name: str
    kind: DatasetKind
    path: Path
    origin: Literal["library", "file"]
    version: int | None
    content_hash: str
    rows: int

    def lineage(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "origin": self.origin,
            "version": self.version,
            "content_hash": self.content_hash,
            "rows": self.rows,
            **({"path": str(self.path)} if self.origin == "file" else {}),
        }


def resolve_dataset(ref: str) -> DatasetSource:
    """A library dataset by name, else a JSONL/JSON/CSV file by path; the hash is over canonical records either way."""
    if _is_library_name(ref):
        record = get_dataset(ref)
        return DatasetSource(
            ref, record.kind, dataset_file(ref), "library", record.version, record.content_hash, record.rows
        )
    path = Path(ref).expanduser()
    if not path.is_file():
        raise NotFound(
            f"No dataset named {ref!r} in the library and no file at that path. "
            "Import it on the Dataset Library page or give the path of a JSONL/JSON/CSV file."
        )
    kind = preview_file(path).detection.kind
    digest = hashlib.sha256()
    rows = 0
    for record in _read_file(path, kind):
        digest.update(orjson.dumps(record) + b"\n")
        rows += 1
    return DatasetSource(path.name, kind, path.resolve(), "file", None, digest.hexdigest(), rows)


def _is_library_name(ref: str) -> bool:
    try:
        validate_name(ref, "dataset name")
    except InvalidName:
        return False
    try:
        get_dataset(ref)
    except NotFound:
        return False
    return True


def _read_file(path: Path, kind: DatasetKind) -> Iterator[dict[str, Any]]:
    settings = get_settings()
    for item in read_strict(path, detect_format(path), settings.max_line_bytes):
        try:
            yield to_canonical(item.record, kind)
        except ShapeError as error:
            raise InvalidFile(f"{error} Fix this record or choose another dataset.", line=item.line) from None


def iter_canonical(source: DatasetSource) -> Iterator[dict[str, Any]]:
    """The source's records in canonical form (library files already are)."""
    if source.origin == "file":
        yield from _read_file(source.path, source.kind)
        return
    with open(source.path, "rb") as handle:
        for line in handle:
            if line.strip():
                yield orjson.loads(line)


def check_fits(source: DatasetSource, objective: Objective, role: str = "training") -> None:
    """Refuse a dataset whose shape the objective cannot learn from, saying which shape would fit."""
    if objective == "sft" and source.kind not in SFT_KINDS:
        raise InvalidFile(
            f"The {role} dataset {source.name!r} holds DPO preference pairs (prompt, chosen, rejected); SFT needs "
            "alpaca, chat or evaluation records. Choose objective DPO, or an SFT dataset."
        )
    if objective == "dpo" and source.kind != DatasetKind.DPO:
        raise InvalidFile(
            f"The {role} dataset {source.name!r} is {source.kind.description}; DPO needs preference pairs "
            "(prompt, chosen, rejected). Choose objective SFT, or a DPO dataset."
        )


def sft_example(record: dict[str, Any], kind: DatasetKind) -> dict[str, list[Message]]:
    """One canonical SFT record as {"prompt": [...messages], "completion": [assistant answer]}."""
    if kind == DatasetKind.ALPACA:
        system = record.get("system")
        prompt = [{"role": "system", "content": system}] if isinstance(system, str) and system else []
        text = f"{record['instruction']}\n\n{record['input']}" if record.get("input") else record["instruction"]
        prompt.append({"role": "user", "content": text})
        return {"prompt": prompt, "completion": [_answer(record["output"])]}
    if kind == DatasetKind.EVALUATION:
        return {"prompt": [{"role": "user", "content": record["prompt"]}], "completion": [_answer(record["reference"])]}
    if kind == DatasetKind.CHAT:
        messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise NothingToLearn("the conversation does not end with an assistant answer to learn from.")
        return {"prompt": messages[:-1], "completion": [_answer(messages[-1]["content"])]}
    raise ShapeError(f"a {kind.value} record is not an SFT example.")


def dpo_example(record: dict[str, Any]) -> dict[str, list[Message]]:
    """One canonical preference pair as conversational prompt/chosen/rejected."""
    prompt = record["prompt"]
    messages = (
        [{"role": "user", "content": prompt}]
        if isinstance(prompt, str)
        else [{"role": m["role"], "content": m["content"]} for m in prompt]
    )
    if not messages or not messages[-1]["content"].strip():
        raise ShapeError("the prompt is empty.")
    chosen, rejected = _answer(record["chosen"], "chosen"), _answer(record["rejected"], "rejected")
    if chosen["content"] == rejected["content"]:
        raise NothingToLearn("chosen and rejected are the same answer, so there is no preference to learn.")
    return {"prompt": messages, "chosen": [chosen], "rejected": [rejected]}


def _answer(text: str, field: str = "answer") -> Message:
    if not isinstance(text, str) or not text.strip():
        raise NothingToLearn(f"the {field} is empty, so there is nothing to learn.")
    return {"role": "assistant", "content": text}


def format_records(records: Iterable[dict[str, Any]], kind: DatasetKind, objective: Objective) -> FormattedDataset:
    """Format every record, skipping those with nothing to learn; a malformed one is refused with its number."""
    examples: list[dict[str, Any]] = []
    skipped: list[int] = []
    first_reason = ""
    for number, record in enumerate(records, 1):
        try:
            examples.append(dpo_example(record) if objective == "dpo" else sft_example(record, kind))
        except NothingToLearn as error:
            skipped.append(number)
            first_reason = first_reason or f" (record {number}: {str(error).rstrip('.')})"
        except ShapeError as error:
            raise InvalidFile(f"{error} Fix this record or remove it.", line=number) from None
    if not examples:
        raise InvalidFile(f"The dataset has no records to train on{first_reason}.")
    return FormattedDataset(examples, skipped)


def build_dataset(source: DatasetSource, objective: Objective, role: str = "training") -> tuple[Any, list[int]]:
    """A `datasets.Dataset` in TRL's conversational format for `objective`, and the record numbers skipped."""
    from datasets import Dataset

    check_fits(source, objective, role)
    formatted = format_records(iter_canonical(source), source.kind, objective)
    return Dataset.from_list(formatted.examples), formatted.skipped
