"""Dataset shapes: recognise what a record is, and turn it into the one canonical form we store.

Canonical forms (what training and evaluation read):
- alpaca:     {"instruction": str, "input": str, "output": str}
- chat:       {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str}, ...]}
- dpo:        {"prompt": str | [messages], "chosen": str, "rejected": str}
- evaluation: {"prompt": str, "reference": str}
Fields outside the shape (a KTO `label`, a `task`, an `id`) are kept as they are.
"""

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from registry.errors import InvalidFile


class DatasetKind(StrEnum):
    ALPACA = "alpaca"
    CHAT = "chat"
    DPO = "dpo"
    EVALUATION = "evaluation"

    @property
    def label(self) -> str:
        return {"alpaca": "SFT", "chat": "SFT", "dpo": "DPO", "evaluation": "Eval"}[self.value]

    @property
    def description(self) -> str:
        return KIND_DESCRIPTIONS[self]


KIND_DESCRIPTIONS = {
    DatasetKind.ALPACA: "SFT, alpaca: instruction, input, output",
    DatasetKind.CHAT: "SFT, chat: messages with role/content (ShareGPT conversations accepted)",
    DatasetKind.DPO: "DPO preference pairs: prompt, chosen, rejected (ShareGPT accepted)",
    DatasetKind.EVALUATION: "Evaluation: prompt, reference",
}
REQUIRED_FIELDS: dict[DatasetKind, tuple[str, ...]] = {
    DatasetKind.ALPACA: ("instruction", "output"),
    DatasetKind.CHAT: ("messages",),
    DatasetKind.DPO: ("prompt", "chosen", "rejected"),
    DatasetKind.EVALUATION: ("prompt", "reference"),
}
ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "observation": "tool",
    "function": "tool",
}


class ShapeError(ValueError):
    """A record that does not fit the shape it is read as; the message names the field."""


class ShapeDetection(BaseModel):
    """What the file looks like, with the evidence, so the user can confirm or correct it."""

    kind: DatasetKind
    variant: str
    sampled: int
    matching: int
    fields: list[str]

    @property
    def summary(self) -> str:
        return f"{self.kind.description} — {self.variant}; {self.matching} of {self.sampled} sampled records match"


def record_kind(record: dict[str, Any]) -> tuple[DatasetKind, str] | None:
    """The shape a single record has by its fields, with the variant name, or None if none fits."""
    keys = record.keys()
    if {"chosen", "rejected"} <= keys and ("conversations" in keys or "messages" in keys):
        return DatasetKind.DPO, "ShareGPT preference pairs"
    if {"prompt", "chosen", "rejected"} <= keys:
        return DatasetKind.DPO, "prompt / chosen / rejected"
    if "messages" in keys:
        return DatasetKind.CHAT, "messages (role / content)"
    if "conversations" in keys:
        return DatasetKind.CHAT, "ShareGPT conversations (from / value)"
    if {"instruction", "output"} <= keys:
        return DatasetKind.ALPACA, "alpaca (instruction / input / output)"
    if {"prompt", "reference"} <= keys:
        return DatasetKind.EVALUATION, "prompt / reference"
    return None


def detect_kind(records: Iterable[dict[str, Any]], sample: int = 200) -> ShapeDetection:
    """Vote over the first records; a file nobody can read as a dataset gets a message listing its fields."""
    votes: Counter[tuple[DatasetKind, str]] = Counter()
    fields: Counter[str] = Counter()
    seen = 0
    for record in records:
        seen += 1
        fields.update(record.keys())
        if found := record_kind(record):
            votes[found] += 1
        if seen >= sample:
            break
    if not votes:
        found_fields = ", ".join(name for name, _ in fields.most_common(12)) or "none"
        raise InvalidFile(
            f"Could not recognise the dataset shape (fields found: {found_fields}). Expected one of: "
            + "; ".join(KIND_DESCRIPTIONS.values())
            + "."
        )
    (kind, variant), matching = votes.most_common(1)[0]
    return ShapeDetection(
        kind=kind,
        variant=variant,
        sampled=seen,
        matching=sum(count for (k, _), count in votes.items() if k == kind),
        fields=[name for name, _ in fields.most_common()],
    )


def to_canonical(record: dict[str, Any], kind: DatasetKind) -> dict[str, Any]:
    """Read `record` as whatever it is, then convert it to `kind`; raise ShapeError when it cannot be."""
    found = record_kind(record)
    if found is None:
        missing = ", ".join(f for f in REQUIRED_FIELDS[kind] if f not in record)
        raise ShapeError(f"missing required field(s) for {kind.value}: {missing}.")
    source_kind = found[0]
    canonical = _CANONICALISERS[source_kind](record)
    if source_kind == kind:
        return canonical
    convert = _CONVERSIONS.get((source_kind, kind))
    if convert is None:
        raise ShapeError(f"a {source_kind.value} record cannot be used as {kind.value}.")
    return convert(canonical)


def record_text(record: dict[str, Any]) -> str:
    """All the text a canonical record carries, for length, duplicate and PII checks."""
    parts: list[str] = []
    for key in ("instruction", "input", "output", "prompt", "chosen", "rejected", "reference", "messages"):
        value = record.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return "\n".join(parts)


def _text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return "".join(_part_text(part, field) for part in value)
    if isinstance(value, dict):
        for key in ("value", "content", "text"):
            if key in value:
                return _text(value[key], field)
    raise ShapeError(f"field {field!r} should be text, got {type(value).__name__}.")


def _part_text(part: Any, field: str) -> str:
    """Typed content parts ({"type": "text", "value": ...}) flatten to their text."""
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and part.get("type", "text") == "text":
        return _text(part.get("value", part.get("text", part.get("content"))), field)
    raise ShapeError(f"field {field!r} holds a non-text part ({part!r:.60}); only text is supported.")


def _messages(value: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ShapeError(f"field {field!r} should be a non-empty list of messages.")
    messages = []
    for index, message in enumerate(value, 1):
        if not isinstance(message, dict):
            raise ShapeError(f"message {index} in {field!r} should be an object with role and content.")
        role = message.get("role", message.get("from"))
        if not isinstance(role, str) or role.lower() not in ROLE_ALIASES:
            raise ShapeError(f"message {index} in {field!r} has an unknown role {role!r}.")
        content = message.get("content", message.get("value"))
        messages.append({"role": ROLE_ALIASES[role.lower()], "content": _text(content, f"{field}[{index}]")})
    return messages


def _extras(record: dict[str, Any], used: set[str]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in used}


def _alpaca(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "instruction": _text(record["instruction"], "instruction"),
        "input": _text(record.get("input"), "input"),
        "output": _text(record["output"], "output"),
        **_extras(record, {"instruction", "input", "output"}),
    }


def _chat(record: dict[str, Any]) -> dict[str, Any]:
    field = "messages" if "messages" in record else "conversations"
    messages = _messages(record[field], field)
    if isinstance(record.get("system"), str) and record["system"] and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": record["system"]})
    return {"messages": messages, **_extras(record, {field, "system"})}


def _dpo(record: dict[str, Any]) -> dict[str, Any]:
    if "prompt" in record:
        prompt: str | list[dict[str, str]] = (
            _messages(record["prompt"], "prompt")
            if isinstance(record["prompt"], list)
            else _text(record["prompt"], "prompt")
        )
        used = {"prompt", "chosen", "rejected"}
    else:
        field = "conversations" if "conversations" in record else "messages"
        prompt = _messages(record[field], field)
        used = {field, "chosen", "rejected"}
    return {
        "prompt": prompt,
        "chosen": _answer(record["chosen"], "chosen"),
        "rejected": _answer(record["rejected"], "rejected"),
        **_extras(record, used),
    }


def _answer(value: Any, field: str) -> str:
    """A preference answer: text, one {from, value} turn, or a list of turns ending with the assistant's."""
    if (
        isinstance(value, list)
        and value
        and isinstance(value[-1], dict)
        and ("role" in value[-1] or "from" in value[-1])
    ):
        return _messages(value, field)[-1]["content"]
    return _text(value, field)


def _evaluation(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": _text(record["prompt"], "prompt"),
        "reference": _text(record["reference"], "reference"),
        **_extras(record, {"prompt", "reference"}),
    }


def _join_prompt(instruction: str, extra: str) -> str:
    return f"{instruction}\n\n{extra}" if extra else instruction


def _alpaca_to_chat(record: dict[str, Any]) -> dict[str, Any]:
    messages = (
        [{"role": "system", "content": record["system"]}]
        if isinstance(record.get("system"), str) and record["system"]
        else []
    )
    messages += [
        {"role": "user", "content": _join_prompt(record["instruction"], record["input"])},
        {"role": "assistant", "content": record["output"]},
    ]
    return {"messages": messages, **_extras(record, {"instruction", "input", "output", "system"})}


def _alpaca_to_evaluation(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": _join_prompt(record["instruction"], record["input"]),
        "reference": record["output"],
        **_extras(record, {"instruction", "input", "output"}),
    }


def _chat_last_exchange(record: dict[str, Any]) -> tuple[str, str]:
    messages = record["messages"]
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
        raise ShapeError("the conversation must end with a user turn followed by an assistant turn.")
    return messages[-2]["content"], messages[-1]["content"]


def _chat_to_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    if sum(m["role"] == "user" for m in record["messages"]) != 1:
        raise ShapeError("only single-turn conversations (one user turn) can become alpaca records.")
    prompt, answer = _chat_last_exchange(record)
    return {"instruction": prompt, "input": "", "output": answer, **_extras(record, {"messages"})}


def _chat_to_evaluation(record: dict[str, Any]) -> dict[str, Any]:
    prompt, answer = _chat_last_exchange(record)
    return {"prompt": prompt, "reference": answer, **_extras(record, {"messages"})}


def _evaluation_to_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "instruction": record["prompt"],
        "input": "",
        "output": record["reference"],
        **_extras(record, {"prompt", "reference"}),
    }


def _evaluation_to_chat(record: dict[str, Any]) -> dict[str, Any]:
    return _alpaca_to_chat(_evaluation_to_alpaca(record))


_CANONICALISERS = {
    DatasetKind.ALPACA: _alpaca,
    DatasetKind.CHAT: _chat,
    DatasetKind.DPO: _dpo,
    DatasetKind.EVALUATION: _evaluation,
}
_CONVERSIONS = {
    (DatasetKind.ALPACA, DatasetKind.CHAT): _alpaca_to_chat,
    (DatasetKind.ALPACA, DatasetKind.EVALUATION): _alpaca_to_evaluation,
    (DatasetKind.CHAT, DatasetKind.ALPACA): _chat_to_alpaca,
    (DatasetKind.CHAT, DatasetKind.EVALUATION): _chat_to_evaluation,
    (DatasetKind.EVALUATION, DatasetKind.ALPACA): _evaluation_to_alpaca,
    (DatasetKind.EVALUATION, DatasetKind.CHAT): _evaluation_to_chat,
}
