"""Dataset shapes: recognise what a record is, and turn it into the one canonical form we store.

Canonical forms (what training and evaluation read):
- alpaca:     {"instruction": str, "input": str, "output": str}
- chat:       {"messages": [message, ...], "tools"?: [tool, ...]}
- dpo:        {"prompt": str | [messages], "chosen": answer, "rejected": answer, "tools"?: [...]}
- kto:        {"prompt": str | [messages], "completion": answer, "label": bool, "tools"?: [...]}
- evaluation: {"prompt": str, "reference": str}
A message is {"role": "system"|"user"|"assistant"|"tool", "content": str}; an assistant message may carry
"tool_calls": [{"type": "function", "function": {"name": str, "arguments": dict | str}, "id"?: str}] (its content
may then be ""), a tool message "tool_call_id" / "name". A tool is {"type": "function", "function": {...}}: the
OpenAI / Hugging Face chat-template form, whichever of OpenAI's or ShareGPT's spellings the file used.
A preference or KTO answer is its text, or, when it calls tools, a list of that one assistant message (TRL's
conversational form), so a call is kept whole and a text answer stays plain text.
Fields outside the shape (a `task`, an `id`) are kept as they are.
"""

import json
from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from registry.errors import InvalidFile

Objective = Literal["sft", "dpo", "kto"]
# What an adapter is for, and so what a dataset trains when it says so (see `DatasetRecord.purpose`).
AdapterType = Literal["retailer", "task", "policy", "domain"]


class DatasetKind(StrEnum):
    ALPACA = "alpaca"
    CHAT = "chat"
    DPO = "dpo"
    KTO = "kto"
    EVALUATION = "evaluation"

    @property
    def label(self) -> str:
        return {"alpaca": "SFT", "chat": "SFT", "dpo": "DPO", "kto": "KTO", "evaluation": "Eval"}[self.value]

    @property
    def description(self) -> str:
        return KIND_DESCRIPTIONS[self]


KIND_DESCRIPTIONS = {
    DatasetKind.ALPACA: "SFT, alpaca: instruction, input, output",
    DatasetKind.CHAT: "SFT, chat: messages with role/content, tool calls kept (ShareGPT conversations accepted)",
    DatasetKind.DPO: "DPO preference pairs: prompt, chosen, rejected (ShareGPT, hh-rlhf and OpenAI accepted)",
    DatasetKind.KTO: "KTO: a prompt and one answer labelled desirable (true) or undesirable (false)",
    DatasetKind.EVALUATION: "Evaluation: prompt, reference",
}
REQUIRED_FIELDS: dict[DatasetKind, tuple[str, ...]] = {
    DatasetKind.ALPACA: ("instruction", "output"),
    DatasetKind.CHAT: ("messages",),
    DatasetKind.DPO: ("prompt", "chosen", "rejected"),
    DatasetKind.KTO: ("prompt", "completion", "label"),
    DatasetKind.EVALUATION: ("prompt", "reference"),
}
# The one rule for which data each training objective learns from.
OBJECTIVE_KINDS: dict[str, frozenset[DatasetKind]] = {
    "sft": frozenset({DatasetKind.ALPACA, DatasetKind.CHAT, DatasetKind.EVALUATION}),
    "dpo": frozenset({DatasetKind.DPO}),
    "kto": frozenset({DatasetKind.KTO}),
}
_WHY_NOT_SFT = {
    DatasetKind.DPO: "holds preference pairs (prompt, chosen, rejected): SFT would learn the rejected answers as well "
    "as the chosen ones",
    DatasetKind.KTO: "holds answers labelled desirable or undesirable (KTO): SFT ignores the label and would learn the "
    "undesirable answers too",
}
_NEEDS = {
    "dpo": "preference pairs (prompt, chosen, rejected)",
    "kto": "answers labelled desirable or undesirable (prompt, completion, label)",
}
# Every shape a file may have, with a one-line example, for the error that refuses any other shape.
ACCEPTED_SHAPES = (
    ("alpaca", '{"instruction": "...", "input": "", "output": "..."}'),
    ("chat (OpenAI)", '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'),
    ("ShareGPT", '{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}]}'),
    (
        "tool use (OpenAI)",
        '{"messages": [..., {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "...", '
        '"arguments": "{...}"}}]}, {"role": "tool", "content": "..."}], "tools": [...]}',
    ),
    (
        "tool use (ShareGPT)",
        '{"conversations": [..., {"from": "function_call", "value": "{\\"name\\": ..., \\"arguments\\": ...}"}, '
        '{"from": "observation", "value": "..."}, {"from": "gpt", ...}], "tools": "[...]"}',
    ),
    ("prompt / completion (TRL)", '{"prompt": "...", "completion": "..."}'),
    ("preference pairs", '{"prompt": "...", "chosen": "...", "rejected": "..."}'),
    (
        "ShareGPT preference pairs",
        '{"conversations": [...], "chosen": {"from": "gpt", "value": "..."}, "rejected": {...}}',
    ),
    (
        "hh-rlhf",
        '{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": "\\n\\nHuman: ...\\n\\nAssistant: ..."}',
    ),
    (
        "OpenAI preference",
        '{"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", "content": "..."}], '
        '"non_preferred_output": [...]}',
    ),
    ("KTO", '{"messages": [...], "label": true} or {"prompt": "...", "completion": "...", "label": false}'),
    ("evaluation", '{"prompt": "...", "reference": "..."}'),
)
ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "function_call": "assistant",
    "tool_call": "assistant",
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
        """One sentence with no brackets of its own: the description and the variant each may hold a pair."""
        return (
            f"{self.kind.description}, read as {self.variant}: {self.matching} of {self.sampled} sampled records match"
        )


def record_kind(record: dict[str, Any]) -> tuple[DatasetKind, str] | None:
    """The shape a single record has by its fields, with the variant name, or None if none fits."""
    keys = record.keys()
    if {"input", "preferred_output", "non_preferred_output"} <= keys:
        return DatasetKind.DPO, "OpenAI preference (input / preferred_output / non_preferred_output)"
    if {"chosen", "rejected"} <= keys and ("conversations" in keys or "messages" in keys):
        return DatasetKind.DPO, "ShareGPT preference pairs"
    if {"prompt", "chosen", "rejected"} <= keys:
        return DatasetKind.DPO, "prompt / chosen / rejected"
    if {"chosen", "rejected"} <= keys:
        return DatasetKind.DPO, "implicit prompt: chosen / rejected transcripts (hh-rlhf)"
    if isinstance(record.get("label"), bool) and (
        "messages" in keys or "conversations" in keys or {"prompt", "completion"} <= keys
    ):
        return DatasetKind.KTO, "KTO: answer with a true / false label"
    if "messages" in keys or "conversations" in keys:
        field = "messages" if "messages" in keys else "conversations"
        variant = "messages (role / content)" if field == "messages" else "ShareGPT conversations (from / value)"
        return DatasetKind.CHAT, f"{variant} with tool calls" if _has_tools(record, field) else variant
    if {"prompt", "completion"} <= keys:
        if isinstance(record["prompt"], list):
            return DatasetKind.CHAT, "prompt / completion messages (TRL)"
        return DatasetKind.ALPACA, "prompt / completion (TRL)"
    if {"instruction", "output"} <= keys:
        return DatasetKind.ALPACA, "alpaca (instruction / input / output)"
    if {"prompt", "reference"} <= keys:
        return DatasetKind.EVALUATION, "prompt / reference"
    return None


def _has_tools(record: dict[str, Any], field: str) -> bool:
    turns = record[field] if isinstance(record[field], list) else []
    return bool(record.get("tools")) or any(
        isinstance(m, dict) and (m.get("tool_calls") or m.get("role") == "tool" or m.get("from") in _TOOL_TURNS)
        for m in turns
    )


_TOOL_TURNS = {"function_call", "observation", "tool_call"}


def accepted_shapes() -> str:
    """The shapes a file may have, one line each with an example: what an unrecognised file is told."""
    return "\n".join(f"- {name}: {example}" for name, example in ACCEPTED_SHAPES)


def objective_refusal(kind: DatasetKind, objective: str) -> str | None:
    """Why a dataset of `kind` cannot train `objective` (what it holds and what to choose), or None if it fits."""
    if kind in OBJECTIVE_KINDS[objective]:
        return None
    suggestion = next(o for o, kinds in OBJECTIVE_KINDS.items() if kind in kinds).upper()
    if objective == "sft":
        return (
            f"{_WHY_NOT_SFT[kind]}. SFT needs alpaca, chat or evaluation records: choose objective {suggestion}, "
            "or an SFT dataset."
        )
    return (
        f"is {kind.description}; {objective.upper()} needs {_NEEDS[objective]}. "
        f"Choose objective {suggestion}, or a {objective.upper()} dataset."
    )


def prompt_of(record: dict[str, Any], kind: DatasetKind) -> str:
    """The request part of a canonical record, as one text: what a user would send for this answer.

    The one rule for alpaca's instruction + input (joined by a blank line), a chat's last user turn and a
    preference or KTO prompt (its user turns).
    """
    if kind == DatasetKind.ALPACA:
        instruction, extra = str(record["instruction"]), record.get("input") or ""
        return f"{instruction}\n\n{extra}" if extra else instruction
    if kind == DatasetKind.CHAT:
        users = [m["content"] for m in record["messages"] if m.get("role") == "user"]
        return str(users[-1]) if users else ""
    prompt = record["prompt"]
    if isinstance(prompt, list):
        return " ".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user")
    return str(prompt)


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
            f"Could not recognise the dataset shape (fields found: {found_fields}). "
            f"Records must have one of these shapes:\n{accepted_shapes()}"
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
    for key in (
        "instruction",
        "input",
        "output",
        "prompt",
        "chosen",
        "rejected",
        "completion",
        "reference",
        "messages",
    ):
        value = record.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(message_text(m) for m in value if isinstance(m, dict))
    return "\n".join(parts)


def message_text(message: dict[str, Any]) -> str:
    """A canonical message's content and its tool calls (name and arguments as JSON): the text it carries."""
    calls = message.get("tool_calls")
    if not calls:
        return str(message.get("content", ""))
    rendered = [json.dumps(call["function"], ensure_ascii=False) for call in calls]
    return "\n".join(filter(None, (message.get("content", ""), *rendered)))


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


def _messages(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ShapeError(f"field {field!r} should be a non-empty list of messages.")
    return [_message(message, f"message {index} in {field!r}") for index, message in enumerate(value, 1)]


def _message(message: Any, where: str) -> dict[str, Any]:
    """One turn in canonical form; OpenAI tool calls and ShareGPT function_call / observation turns kept whole."""
    if not isinstance(message, dict):
        raise ShapeError(f"{where} should be an object with role and content.")
    role = message.get("role", message.get("from"))
    if not isinstance(role, str) or role.lower() not in ROLE_ALIASES:
        raise ShapeError(f"{where} has an unknown role {role!r}.")
    content = message.get("content", message.get("value"))
    canonical: dict[str, Any] = {"role": ROLE_ALIASES[role.lower()]}
    if role.lower() in ("function_call", "tool_call"):
        canonical["content"] = ""
        canonical["tool_calls"] = _sharegpt_calls(content, where)
        return canonical
    canonical["content"] = _text(content, where)
    if message.get("tool_calls"):
        canonical["tool_calls"] = _openai_calls(message["tool_calls"], where)
    elif message.get("function_call"):  # OpenAI's older single-call spelling
        canonical["tool_calls"] = _openai_calls([{"function": message["function_call"]}], where)
    for key in ("tool_call_id", "name"):
        if canonical["role"] == "tool" and isinstance(message.get(key), str):
            canonical[key] = message[key]
    return canonical


def _openai_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise ShapeError(f"{where}: tool_calls should be a list of calls.")
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ShapeError(f"{where}: each tool call needs a function with a name ({call!r:.80}).")
        out.append(_call(function["name"], function.get("arguments"), call.get("id")))
    return out


def _sharegpt_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """A function_call turn's value: JSON {"name", "arguments"} or a list of them (parallel calls)."""
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        parsed = None
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items or not all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in items):
        raise ShapeError(
            f'{where} is a function call but its value is not JSON like {{"name": ..., "arguments": ...}}.'
        )
    return [_call(item["name"], item.get("arguments", item.get("parameters")), item.get("id")) for item in items]


def _call(name: str, arguments: Any, call_id: Any) -> dict[str, Any]:
    """Arguments as an object where they are JSON text (chat templates render them with tojson), else as given."""
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments)
        except json.JSONDecodeError:
            decoded = None
        arguments = decoded if isinstance(decoded, dict) else arguments
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments or {}}}
    if isinstance(call_id, str):
        call["id"] = call_id
    return call


def _tools(value: Any) -> list[dict[str, Any]]:
    """OpenAI's list of {"type": "function", "function": spec} or ShareGPT's JSON text of specs, as the former."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise ShapeError("field 'tools' is text but not JSON: it should list the tools' specifications.") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise ShapeError("field 'tools' should be a list of tool specifications.")
    return [tool if "function" in tool else {"type": "function", "function": tool} for tool in value]


def _with_tools(record: dict[str, Any], canonical: dict[str, Any]) -> dict[str, Any]:
    if record.get("tools"):
        canonical["tools"] = _tools(record["tools"])
    return canonical


def _extras(record: dict[str, Any], used: set[str]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in used}


def _alpaca(record: dict[str, Any]) -> dict[str, Any]:
    if "instruction" not in record:  # TRL's prompt / completion: the prompt is the instruction
        return {
            "instruction": _text(record["prompt"], "prompt"),
            "input": "",
            "output": _text(record["completion"], "completion"),
            **_extras(record, {"prompt", "completion"}),
        }
    return {
        "instruction": _text(record["instruction"], "instruction"),
        "input": _text(record.get("input"), "input"),
        "output": _text(record["output"], "output"),
        **_extras(record, {"instruction", "input", "output"}),
    }


def _chat(record: dict[str, Any]) -> dict[str, Any]:
    if "messages" not in record and "conversations" not in record:  # TRL's conversational prompt / completion
        messages = _messages(record["prompt"], "prompt") + _messages(record["completion"], "completion")
        return _with_tools(record, {"messages": messages, **_extras(record, {"prompt", "completion", "tools"})})
    field = "messages" if "messages" in record else "conversations"
    messages = _messages(record[field], field)
    if isinstance(record.get("system"), str) and record["system"] and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": record["system"]})
    return _with_tools(record, {"messages": messages, **_extras(record, {field, "system", "tools"})})


def _dpo(record: dict[str, Any]) -> dict[str, Any]:
    if "preferred_output" in record:
        return _openai_preference(record)
    if "prompt" in record:
        prompt: str | list[dict[str, Any]] = (
            _messages(record["prompt"], "prompt")
            if isinstance(record["prompt"], list)
            else _text(record["prompt"], "prompt")
        )
        used = {"prompt", "chosen", "rejected"}
    elif "conversations" in record or "messages" in record:
        field = "conversations" if "conversations" in record else "messages"
        prompt = _messages(record[field], field)
        used = {field, "chosen", "rejected"}
    else:
        return _implicit_prompt(record)
    return _with_tools(
        record,
        {
            "prompt": prompt,
            "chosen": _answer(record["chosen"], "chosen"),
            "rejected": _answer(record["rejected"], "rejected"),
            **_extras(record, used | {"tools"}),
        },
    )


def _openai_preference(record: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's preference fine-tuning format: input.messages (and input.tools), preferred / non-preferred output."""
    source = record["input"]
    if not isinstance(source, dict) or "messages" not in source:
        raise ShapeError("field 'input' should be an object with the prompt's 'messages'.")
    return _with_tools(
        source,
        {
            "prompt": _messages(source["messages"], "input.messages"),
            "chosen": _answer(record["preferred_output"], "preferred_output"),
            "rejected": _answer(record["non_preferred_output"], "non_preferred_output"),
            **_extras(record, {"input", "preferred_output", "non_preferred_output"}),
        },
    )


_HH_TURN = ("\n\nHuman:", "\n\nAssistant:")


def _implicit_prompt(record: dict[str, Any]) -> dict[str, Any]:
    """Chosen and rejected each hold the whole conversation: their shared beginning is the prompt.

    Like TRL's `extract_prompt`, on turns: hh-rlhf's "Human: / Assistant:" transcripts and message lists become
    messages, the longest run of turns both share is the prompt and what follows it (one assistant turn each)
    is the answer. Other text is split at the first character where the two differ, as TRL does for text.
    """
    chosen, rejected = record["chosen"], record["rejected"]
    extras = _extras(record, {"chosen", "rejected"})
    if isinstance(chosen, str) and isinstance(rejected, str):
        if not (chosen.lstrip().startswith("Human:") or chosen.startswith(_HH_TURN[0])):
            shared = _shared_text(chosen, rejected)
            return {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:], **extras}
        chosen, rejected = _hh_turns(chosen, "chosen"), _hh_turns(rejected, "rejected")
    else:
        chosen, rejected = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    answers = []
    for field, turns in (("chosen", chosen), ("rejected", rejected)):
        rest = turns[shared:]
        if len(rest) != 1 or rest[0]["role"] != "assistant":
            raise ShapeError(
                f"{field} should be the shared conversation followed by one assistant answer; "
                f"it has {len(rest)} turn(s) after the {shared} it shares."
            )
        answers.append(_stored_answer(rest[0]))
    if not shared:
        raise ShapeError("chosen and rejected share no prompt: their first turns differ.")
    return {"prompt": chosen[:shared], "chosen": answers[0], "rejected": answers[1], **extras}


def _hh_turns(text: str, field: str) -> list[dict[str, Any]]:
    """An hh-rlhf transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as messages."""
    turns: list[dict[str, Any]] = []
    rest = "\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text
    while rest:
        starts = [(rest.find(marker), marker) for marker in _HH_TURN if rest.find(marker) >= 0]
        if not starts or min(starts)[0] != 0:
            raise ShapeError(f"{field} is not a 'Human: / Assistant:' transcript (text before the first turn).")
        _, marker = min(starts)
        body = rest[len(marker) :]
        following = [at for at in (body.find(m) for m in _HH_TURN) if at >= 0]
        end = min(following) if following else len(body)
        turns.append({"role": "user" if marker == _HH_TURN[0] else "assistant", "content": body[:end].strip()})
        rest = body[end:]
    return turns


def _shared_text(chosen: str, rejected: str) -> int:
    """TRL's extract_prompt on text: the index of the first difference, before a space it would split."""
    index = next((i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b), min(len(chosen), len(rejected)))
    return index - 1 if index and chosen[index - 1] == " " else index


def _kto(record: dict[str, Any]) -> dict[str, Any]:
    """A prompt and one answer with a boolean label: from messages (the last turn is the answer) or TRL's fields."""
    if "prompt" in record and "completion" in record:
        prompt: str | list[dict[str, Any]] = (
            _messages(record["prompt"], "prompt")
            if isinstance(record["prompt"], list)
            else _text(record["prompt"], "prompt")
        )
        completion = _answer(record["completion"], "completion")
        used = {"prompt", "completion", "label"}
    else:
        field = "messages" if "messages" in record else "conversations"
        messages = _messages(record[field], field)
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise ShapeError(f"field {field!r} should end with the assistant answer the label judges.")
        prompt, completion = messages[:-1], _stored_answer(messages[-1])
        used = {field, "label"}
    if not isinstance(record.get("label"), bool):
        raise ShapeError("field 'label' should be true (a desirable answer) or false (an undesirable one).")
    return _with_tools(
        record,
        {"prompt": prompt, "completion": completion, "label": record["label"], **_extras(record, used | {"tools"})},
    )


def _answer(value: Any, field: str) -> str | list[dict[str, Any]]:
    """A preference answer: text, one {from, value} turn, or a list of turns ending with the assistant's."""
    if isinstance(value, dict) and ("role" in value or "from" in value):
        value = [value]
    if (
        isinstance(value, list)
        and value
        and isinstance(value[-1], dict)
        and ("role" in value[-1] or "from" in value[-1])
    ):
        last = _messages(value, field)[-1]
        if last["role"] != "assistant":
            raise ShapeError(f"field {field!r} should end with an assistant answer, not a {last['role']} turn.")
        return _stored_answer(last)
    return _text(value, field)


def _stored_answer(message: dict[str, Any]) -> str | list[dict[str, Any]]:
    """An answer's text, or the whole assistant message (in a list, as TRL has it) when it calls tools."""
    return [message] if message.get("tool_calls") else message["content"]


def answer_message(answer: str | list[dict[str, Any]]) -> dict[str, Any]:
    """A stored preference or KTO answer as the assistant message it is (the one rule for reading one)."""
    return {"role": "assistant", "content": answer} if isinstance(answer, str) else dict(answer[-1])


def _evaluation(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": _text(record["prompt"], "prompt"),
        "reference": _text(record["reference"], "reference"),
        **_extras(record, {"prompt", "reference"}),
    }


def _alpaca_to_chat(record: dict[str, Any]) -> dict[str, Any]:
    messages = (
        [{"role": "system", "content": record["system"]}]
        if isinstance(record.get("system"), str) and record["system"]
        else []
    )
    messages += [
        {"role": "user", "content": prompt_of(record, DatasetKind.ALPACA)},
        {"role": "assistant", "content": record["output"]},
    ]
    return {"messages": messages, **_extras(record, {"instruction", "input", "output", "system"})}


def _alpaca_to_evaluation(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": prompt_of(record, DatasetKind.ALPACA),
        "reference": record["output"],
        **_extras(record, {"instruction", "input", "output"}),
    }


def _chat_last_exchange(record: dict[str, Any]) -> tuple[str, str]:
    messages = record["messages"]
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
        raise ShapeError("the conversation must end with a user turn followed by an assistant turn.")
    if messages[-1].get("tool_calls") or record.get("tools"):
        raise ShapeError("a conversation with tool calls keeps its tools only as chat; import it as chat.")
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
    DatasetKind.KTO: _kto,
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
