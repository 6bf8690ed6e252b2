"""Canonical dataset records -> the conversational datasets TRL trains on.

SFT examples become prompt/completion conversations, so TRL renders them with the model's chat template and
puts the loss on the completion (the answer) only. DPO pairs become prompt/chosen/rejected conversations and
KTO records prompt/completion/label ones. A dataset whose shape does not fit the objective is refused before
any model is loaded (`registry.shapes.objective_refusal` is the rule). A record that is well-formed but has
nothing to learn (an empty answer, chosen == rejected) is skipped and counted: the library imports such
records (validation reports them), so one of them must not fail a whole job.

Tool use. An assistant turn that calls tools is an answer like any other (a call alone is a valid target).
Where the model's chat template renders tools (it mentions `tool_calls`), the messages keep their
`tool_calls`, tool turns their role and the example its `tools`, and the template renders them. Where it does
not (SmolLM2's does not, and would drop the calls), `as_plain_text` writes them into the text in the
Hermes / Qwen convention, which many templates and serving stacks use:
- the tools go at the end of the system turn: "# Tools" ... "<tools>" one JSON spec per line "</tools>";
- a call is the assistant's text followed by "<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>";
- a tool's result is a user turn "<tool_response>\n...\n</tool_response>".
"""

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from registry.datasets import dataset_file, get_dataset, preview_file
from registry.errors import InvalidFile, InvalidName, NotFound
from registry.readers import detect_format, read_strict
from registry.settings import get_settings
from registry.shapes import (
    DatasetKind,
    Objective,
    ShapeError,
    answer_message,
    objective_refusal,
    prompt_of,
    to_canonical,
)
from registry.storage import validate_name

Message = dict[str, Any]
TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


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
    """Refuse a dataset whose shape the objective cannot learn from, saying what it holds and what would fit."""
    reason = objective_refusal(source.kind, objective)
    if reason is not None:
        raise InvalidFile(f"The {role} dataset {source.name!r} {reason}")


def sft_example(record: dict[str, Any], kind: DatasetKind) -> dict[str, Any]:
    """One canonical SFT record as {"prompt": [...messages], "completion": [assistant answer], "tools": ...}."""
    if kind == DatasetKind.ALPACA:
        system = record.get("system")
        prompt = [{"role": "system", "content": system}] if isinstance(system, str) and system else []
        prompt.append({"role": "user", "content": prompt_of(record, kind)})
        return {"prompt": prompt, "completion": [_answer(record["output"])]}
    if kind == DatasetKind.EVALUATION:
        prompt = [{"role": "user", "content": prompt_of(record, kind)}]
        return {"prompt": prompt, "completion": [_answer(record["reference"])]}
    if kind == DatasetKind.CHAT:
        messages = [dict(m) for m in record["messages"]]
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise NothingToLearn("the conversation does not end with an assistant answer to learn from.")
        last = messages[-1]
        if not last["content"].strip() and not last.get("tool_calls"):
            raise NothingToLearn("the answer is empty, so there is nothing to learn.")
        return _with_tools({"prompt": messages[:-1], "completion": [last]}, record)
    raise ShapeError(f"a {kind.value} record is not an SFT example.")


def dpo_example(record: dict[str, Any]) -> dict[str, Any]:
    """One canonical preference pair as conversational prompt/chosen/rejected (either answer may call tools)."""
    messages = _prompt_messages(record["prompt"])
    chosen, rejected = _stored_answer(record["chosen"], "chosen"), _stored_answer(record["rejected"], "rejected")
    if chosen == rejected:
        raise NothingToLearn("chosen and rejected are the same answer, so there is no preference to learn.")
    return _with_tools({"prompt": messages, "chosen": [chosen], "rejected": [rejected]}, record)


def kto_example(record: dict[str, Any]) -> dict[str, Any]:
    """One canonical KTO record as conversational prompt/completion with its desirable (true) / undesirable label."""
    example = {
        "prompt": _prompt_messages(record["prompt"]),
        "completion": [_stored_answer(record["completion"], "completion")],
        "label": bool(record["label"]),
    }
    return _with_tools(example, record)


def _stored_answer(answer: str | list[Message], field: str) -> Message:
    """A stored preference or KTO answer as its assistant message: text, or a tool call kept whole."""
    message = answer_message(answer)
    if not (message["content"].strip() or message.get("tool_calls")):
        raise NothingToLearn(f"the {field} is empty, so there is nothing to learn.")
    return message


def _with_tools(example: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The record's tool specifications go with the example (TRL passes a `tools` column to the template)."""
    if record.get("tools"):
        example["tools"] = record["tools"]
    return example


def _prompt_messages(prompt: str | list[Message]) -> list[Message]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if not messages or not (messages[-1]["content"].strip() or messages[-1].get("tool_calls")):
        raise ShapeError("the prompt is empty.")
    return messages


def _answer(text: str, field: str = "answer") -> Message:
    if not isinstance(text, str) or not text.strip():
        raise NothingToLearn(f"the {field} is empty, so there is nothing to learn.")
    return {"role": "assistant", "content": text}


def template_renders_tools(chat_template: str | None) -> bool:
    """Whether a chat template renders tool calls itself (Hugging Face templates with tool support name tool_calls)."""
    return bool(chat_template) and "tool_calls" in chat_template


def as_plain_text(example: dict[str, Any]) -> dict[str, Any]:
    """The example with its tools, tool calls and tool results written into the text (see the module docstring)."""
    tools = example.get("tools")
    out: dict[str, Any] = {}
    for key, value in example.items():
        if key == "tools":
            continue
        out[key] = [plain_message(m) for m in value] if isinstance(value, list) else value
    if tools:
        spec = TOOLS_PREAMBLE.format(tools="\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools))
        prompt = out["prompt"]
        if prompt and prompt[0]["role"] == "system":
            prompt[0] = {"role": "system", "content": f"{prompt[0]['content']}\n\n{spec}".lstrip()}
        else:
            out["prompt"] = [{"role": "system", "content": spec}, *prompt]
    return out


def plain_message(message: Message) -> Message:
    """One message with its tool calls or tool result written into its text (see the module docstring)."""
    if message["role"] == "tool":
        return {"role": "user", "content": f"<tool_response>\n{message['content']}\n</tool_response>"}
    calls = message.get("tool_calls")
    if not calls:
        return {"role": message["role"], "content": message["content"]}
    rendered = [
        "<tool_call>\n"
        + json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]}, ensure_ascii=False)
        + "\n</tool_call>"
        for c in calls
    ]
    return {"role": message["role"], "content": "\n".join(filter(None, (message["content"], *rendered)))}


_EXAMPLES = {"sft": None, "dpo": dpo_example, "kto": kto_example}


def format_records(
    records: Iterable[dict[str, Any]], kind: DatasetKind, objective: Objective, *, template_tools: bool = False
) -> FormattedDataset:
    """Format every record, skipping those with nothing to learn; a malformed one is refused with its number.

    `template_tools`: the chat template renders tools itself; otherwise they are written as plain text.
    """
    examples: list[dict[str, Any]] = []
    skipped: list[int] = []
    first_reason = ""
    make = _EXAMPLES[objective]
    for number, record in enumerate(records, 1):
        try:
            example = make(record) if make else sft_example(record, kind)
        except NothingToLearn as error:
            skipped.append(number)
            first_reason = first_reason or f" (record {number}: {str(error).rstrip('.')})"
            continue
        except ShapeError as error:
            raise InvalidFile(f"{error} Fix this record or remove it.", line=number) from None
        examples.append(example if template_tools else as_plain_text(example))
    if not examples:
        raise InvalidFile(f"The dataset has no records to train on{first_reason}.")
    return FormattedDataset(examples, skipped)


def build_dataset(
    source: DatasetSource, objective: Objective, role: str = "training", *, template_tools: bool = False
) -> tuple[Any, list[int]]:
    """A `datasets.Dataset` in TRL's conversational format for `objective`, and the record numbers skipped.

    Message columns are `Json` features: Arrow would otherwise merge the shapes of different records' tool
    arguments into one struct and hand the template keys (as nulls) that a record never had.
    """
    from datasets import Dataset, Features, Json, Value

    check_fits(source, objective, role)
    formatted = format_records(iter_canonical(source), source.kind, objective, template_tools=template_tools)
    columns = dict.fromkeys(key for example in formatted.examples for key in example)
    features = Features({column: Value("bool") if column == "label" else Json() for column in columns})
    return Dataset.from_list(formatted.examples, features=features), formatted.skipped
