"""Every accepted shape, from a file written the way public datasets are: what the registry stores, record by
record, and what the trainer is fed (the tokens that carry a loss, decoded). Nothing blanked, nothing dropped."""

import json
import threading
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# OpenAI's chat fine-tuning format with function calling (as in Microsoft's and OpenAI's samples).
OPENAI_TOOLS = [
    {
        "messages": [
            {"role": "system", "content": "You are a weather assistant."},
            {"role": "user", "content": f"What's the weather in {city}?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{index}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"call_{index}", "content": json.dumps({"temp_c": temp})},
            {"role": "assistant", "content": f"It is {temp} degrees in {city}."},
        ],
        "tools": [WEATHER_TOOL],
    }
    for index, (city, temp) in enumerate([("Paris", 21), ("Oslo", 3), ("Lima", 18)])
] + [
    {  # the answer to learn is the call itself
        "messages": [
            {"role": "user", "content": "Is it raining in Rome?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    }
                ],
            },
        ],
        "tools": [WEATHER_TOOL],
    }
]
# LLaMA-Factory / glaive ShareGPT tool data: function_call and observation turns, tools as JSON text.
SHAREGPT_TOOLS = [
    {
        "conversations": [
            {"from": "human", "value": f"Budget left on campaign {n}?"},
            {"from": "function_call", "value": json.dumps({"name": "get_budget", "arguments": {"campaign": n}})},
            {"from": "observation", "value": json.dumps({"remaining": 100 * n})},
            {"from": "gpt", "value": f"Campaign {n} has {100 * n} dollars left."},
        ],
        "system": "You manage retail media campaigns.",
        "tools": json.dumps(
            [{"name": "get_budget", "description": "Remaining budget", "parameters": {"type": "object"}}]
        ),
    }
    for n in (1, 2, 3)
]
PAIRS_TEXT = [
    {"prompt": f"Is '{claim}' compliant?", "chosen": "No: it is an unverified claim.", "rejected": "Yes."}
    for claim in ("Best price, guaranteed", "Cures colds", "Number one in the world")
]
PAIRS_MESSAGES = [
    {
        "prompt": [{"role": "user", "content": f"Rewrite headline {n} without a superlative."}],
        "chosen": [{"role": "assistant", "content": f"A good deal on item {n}."}],
        "rejected": [{"role": "assistant", "content": f"The best deal ever on item {n}!"}],
    }
    for n in (1, 2, 3)
]
SHAREGPT_PAIRS = [
    {
        "conversations": [{"from": "human", "value": f"Name a bid strategy for goal {goal}."}],
        "chosen": {"from": "gpt", "value": f"Target ROAS suits {goal}."},
        "rejected": {"from": "gpt", "value": "Bid as high as possible."},
    }
    for goal in ("sales", "reach", "clicks")
]
HH_RLHF = [
    {
        "chosen": f"\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Suggest keyword {n}\n\nAssistant: Try 'organic snacks {n}'.",
        "rejected": f"\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Suggest keyword {n}\n\nAssistant: No.",
    }
    for n in (1, 2, 3)
]
OPENAI_PREFERENCE = [
    {
        "input": {"messages": [{"role": "user", "content": f"Summarise report {n} in one line."}]},
        "preferred_output": [{"role": "assistant", "content": f"Report {n}: sales up 4%."}],
        "non_preferred_output": [{"role": "assistant", "content": "I cannot do that."}],
    }
    for n in (1, 2, 3)
]
KTO_MESSAGES = [
    {
        "messages": [
            {"role": "user", "content": f"Is ad {n} compliant?"},
            {"role": "assistant", "content": "Yes, it is compliant." if n % 2 else "Whatever."},
        ],
        "label": bool(n % 2),
    }
    for n in range(1, 7)
]
KTO_UNPAIRED = [
    {"prompt": f"Tag product {n}", "completion": "snacks" if n % 2 else "asdf", "label": bool(n % 2)}
    for n in (1, 2, 3, 4)
]
# Preference data whose answers call tools (OpenAI's preference format with tools in its input, as in
# function-calling DPO sets): a right call preferred over a wrong call or over a text answer.
ROME_CALL_MESSAGE = {
    "role": "assistant",
    "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}],
}
PREFERENCE_TOOLS = [
    {
        "input": {"messages": [{"role": "user", "content": "Is it raining in Rome?"}], "tools": [WEATHER_TOOL]},
        "preferred_output": [ROME_CALL_MESSAGE],
        "non_preferred_output": [{"role": "assistant", "content": "It is probably sunny."}],
    },
    {
        "input": {"messages": [{"role": "user", "content": "Weather in Milan?"}], "tools": [WEATHER_TOOL]},
        "preferred_output": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Milan"}'}}
                ],
            }
        ],
        "non_preferred_output": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
                ],
            }
        ],
    },
]
# KTO data (messages + label) whose judged answer is a tool call.
KTO_TOOLS = [
    {
        "messages": [
            {"role": "user", "content": f"Weather in {city}?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": asked})}}
                ],
            },
        ],
        "tools": [WEATHER_TOOL],
        "label": city == asked,
    }
    for city, asked in [("Oslo", "Oslo"), ("Lima", "Rome"), ("Paris", "Paris"), ("Bern", "Bonn")]
]

FILES = {
    # name: (records, format, detected kind, variant fragment)
    "openai_tools": (OPENAI_TOOLS, "jsonl", "chat", "with tool calls"),
    "sharegpt_tools": (SHAREGPT_TOOLS, "json", "chat", "ShareGPT conversations (from / value) with tool calls"),
    "pairs_text": (PAIRS_TEXT, "jsonl", "dpo", "prompt / chosen / rejected"),
    "pairs_messages": (PAIRS_MESSAGES, "json", "dpo", "prompt / chosen / rejected"),
    "sharegpt_pairs": (SHAREGPT_PAIRS, "json", "dpo", "ShareGPT preference pairs"),
    "hh_rlhf": (HH_RLHF, "jsonl", "dpo", "hh-rlhf"),
    "openai_preference": (OPENAI_PREFERENCE, "jsonl", "dpo", "OpenAI preference"),
    "kto_messages": (KTO_MESSAGES, "json", "kto", "KTO"),
    "kto_unpaired": (KTO_UNPAIRED, "jsonl", "kto", "KTO"),
    "preference_tools": (PREFERENCE_TOOLS, "jsonl", "dpo", "OpenAI preference"),
    "kto_tools": (KTO_TOOLS, "jsonl", "kto", "KTO"),
}
CALL_ROME_NO_ID = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
CALL_ROME = {**CALL_ROME_NO_ID, "id": "call_9"}
# What the registry must hold for the first record of each file.
STORED_FIRST = {
    "openai_tools": {
        "messages": [
            {"role": "system", "content": "You are a weather assistant."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                        "id": "call_0",
                    }
                ],
            },
            {"role": "tool", "content": '{"temp_c": 21}', "tool_call_id": "call_0"},
            {"role": "assistant", "content": "It is 21 degrees in Paris."},
        ],
        "tools": [WEATHER_TOOL],
    },
    "sharegpt_tools": {
        "messages": [
            {"role": "system", "content": "You manage retail media campaigns."},
            {"role": "user", "content": "Budget left on campaign 1?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"type": "function", "function": {"name": "get_budget", "arguments": {"campaign": 1}}}],
            },
            {"role": "tool", "content": '{"remaining": 100}'},
            {"role": "assistant", "content": "Campaign 1 has 100 dollars left."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_budget", "description": "Remaining budget", "parameters": {"type": "object"}},
            }
        ],
    },
    "pairs_text": PAIRS_TEXT[0],
    "pairs_messages": {
        "prompt": [{"role": "user", "content": "Rewrite headline 1 without a superlative."}],
        "chosen": "A good deal on item 1.",
        "rejected": "The best deal ever on item 1!",
    },
    "sharegpt_pairs": {
        "prompt": [{"role": "user", "content": "Name a bid strategy for goal sales."}],
        "chosen": "Target ROAS suits sales.",
        "rejected": "Bid as high as possible.",
    },
    "hh_rlhf": {
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Suggest keyword 1"},
        ],
        "chosen": "Try 'organic snacks 1'.",
        "rejected": "No.",
    },
    "openai_preference": {
        "prompt": [{"role": "user", "content": "Summarise report 1 in one line."}],
        "chosen": "Report 1: sales up 4%.",
        "rejected": "I cannot do that.",
    },
    "kto_messages": {
        "prompt": [{"role": "user", "content": "Is ad 1 compliant?"}],
        "completion": "Yes, it is compliant.",
        "label": True,
    },
    "kto_unpaired": {"prompt": "Tag product 1", "completion": "snacks", "label": True},
    "preference_tools": {
        "prompt": [{"role": "user", "content": "Is it raining in Rome?"}],
        "chosen": [{"role": "assistant", "content": "", "tool_calls": [CALL_ROME_NO_ID]}],
        "rejected": "It is probably sunny.",
        "tools": [WEATHER_TOOL],
    },
    "kto_tools": {
        "prompt": [{"role": "user", "content": "Weather in Oslo?"}],
        "completion": [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
                ],
            }
        ],
        "label": True,
        "tools": [WEATHER_TOOL],
    },
}


def write(folder: Path, name: str) -> Path:
    records, fmt, _, _ = FILES[name]
    path = folder / f"{name}.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records, indent=2))
    return path


@pytest.mark.parametrize("name", FILES)
def test_each_shape_is_detected_and_stored_whole(registry, tmp_path, name):
    from registry.datasets import import_dataset, preview_file, read_rows
    from registry.validation import validate_file

    records, _, kind, variant = FILES[name]
    path = write(tmp_path, name)
    preview = preview_file(path)
    assert preview.detection.kind == kind and variant in preview.detection.variant
    stored = import_dataset(name, path)
    assert stored.kind == kind and stored.rows == len(records)
    rows = read_rows(name, limit=100)
    assert rows[0] == STORED_FIRST[name]
    report = validate_file(path)
    assert report.refused is None and report.rows == report.valid_rows == len(records)
    assert report.check("empty").count == 0  # a tool call is an answer, not an empty message
    assert stored.quality_score == report.quality_score


def test_every_record_of_the_tool_files_keeps_its_calls(registry, tmp_path):
    from registry.datasets import import_dataset, read_rows

    import_dataset("openai_tools", write(tmp_path, "openai_tools"))
    rows = read_rows("openai_tools", limit=100)
    for source, row in zip(OPENAI_TOOLS, rows, strict=True):
        assert len(row["messages"]) == len(source["messages"])
        for given, kept in zip(source["messages"], row["messages"], strict=True):
            assert kept["role"] == given["role"] and kept["content"] == (given.get("content") or "")
            for call, kept_call in zip(given.get("tool_calls", []), kept.get("tool_calls", []), strict=True):
                assert kept_call["function"]["name"] == call["function"]["name"]
                assert kept_call["function"]["arguments"] == json.loads(call["function"]["arguments"])
            assert len(given.get("tool_calls", [])) == len(kept.get("tool_calls", []))
    assert rows[-1]["messages"][-1]["tool_calls"] == [CALL_ROME]


def _loss_text(tokenizer, example) -> str:
    ids, labels = example["input_ids"], example["labels"]
    return tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])


def _config(base: Path, train: str, **overrides):
    from training.config import build_config

    values = {
        "adapter_name": f"{train}_adapter",
        "base_model": str(base),
        "train_dataset": train,
        "max_steps": 4,
        "batch_size": 2,
        "learning_rate": 5e-3,
        "max_seq_length": 1024,
        "save_steps": 50,
        "warmup_ratio": 0.0,
        **overrides,
    }
    return build_config(**values)


def test_tool_calls_are_trained_as_plain_text_when_the_template_has_no_tool_support(registry, tiny_base, tmp_path):
    """The tiny model's ChatML template (like SmolLM2's) has no tool support: the documented rendering is used."""
    from registry.datasets import import_dataset
    from training.worker import build_trainer, preflight

    import_dataset("openai_tools", write(tmp_path, "openai_tools"))
    trainer, tokenizer = build_trainer(preflight(_config(tiny_base, "openai_tools")), tmp_path / "job")
    fed = [_loss_text(tokenizer, example) for example in trainer.train_dataset]
    answers = [f"It is {t} degrees in {c}.<|im_end|>\n" for c, t in [("Paris", 21), ("Oslo", 3), ("Lima", 18)]] + [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n'
    ]
    assert sorted(fed) == sorted(answers)
    first = next(e for e in trainer.train_dataset if "Paris" in tokenizer.decode(e["input_ids"]))
    prompt = tokenizer.decode(first["input_ids"])
    assert "<tools>\n" + json.dumps(WEATHER_TOOL) + "\n</tools>" in prompt
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        '<|im_end|>\n<|im_start|>user\n<tool_response>\n{"temp_c": 21}\n</tool_response><|im_end|>' in prompt
    )


TOOL_CHATML = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "{% if message.tool_calls %}{% for call in message.tool_calls %}<call>{{ call.function.name }}"
    "({{ call.function.arguments | tojson }})</call>{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_tool_calls_go_through_a_template_that_renders_them(registry, tmp_path):
    from registry.datasets import import_dataset
    from training.worker import build_trainer, preflight

    base = build_tiny_model(tmp_path / "tool-model")
    config = json.loads((base / "tokenizer_config.json").read_text())
    config["chat_template"] = TOOL_CHATML
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    (base / "chat_template.jinja").unlink(missing_ok=True)
    import_dataset("sharegpt_tools", write(tmp_path, "sharegpt_tools"))
    trainer, tokenizer = build_trainer(preflight(_config(base, "sharegpt_tools")), tmp_path / "job")
    assert "tool_calls" in tokenizer.chat_template
    example = trainer.train_dataset[0]
    text = tokenizer.decode(example["input_ids"])
    assert text.startswith('<|im_start|>system\nTools: [{"type": "function", "function": {"name": "get_budget"')
    assert '<|im_start|>assistant\n<call>get_budget({"campaign": 1})</call><|im_end|>' in text
    assert "<|im_start|>tool\n{" in text and "<tool_call>" not in text
    assert _loss_text(tokenizer, example) == "Campaign 1 has 100 dollars left.<|im_end|>\n"


def _plain_call(city: str) -> str:
    return f'<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}\n</tool_call>'


def test_preference_and_kto_answers_that_call_tools_are_fed_whole(registry, tiny_base, tmp_path):
    """No tool-capable template (SmolLM2's case): the calls are trained in the documented plain-text rendering."""
    from registry.datasets import import_dataset
    from training.worker import build_trainer, preflight

    import_dataset("preference_tools", write(tmp_path, "preference_tools"))
    trainer, tokenizer = build_trainer(
        preflight(_config(tiny_base, "preference_tools", objective="dpo")), tmp_path / "dpo"
    )
    fed = [(tokenizer.decode(e["chosen_ids"]), tokenizer.decode(e["rejected_ids"])) for e in trainer.train_dataset]
    assert fed == [
        (_plain_call("Rome") + "<|im_end|>\n", "It is probably sunny.<|im_end|>\n"),
        (_plain_call("Milan") + "<|im_end|>\n", _plain_call("Rome") + "<|im_end|>\n"),
    ]
    prompt = tokenizer.decode(trainer.train_dataset[0]["prompt_ids"])
    assert "<tools>\n" + json.dumps(WEATHER_TOOL) + "\n</tools>" in prompt and "Is it raining in Rome?" in prompt

    import_dataset("kto_tools", write(tmp_path, "kto_tools"))
    trainer, tokenizer = build_trainer(preflight(_config(tiny_base, "kto_tools", objective="kto")), tmp_path / "kto")
    fed = [(tokenizer.decode(e["completion_ids"]), e["label"]) for e in trainer.train_dataset]
    assert fed == [(_plain_call(asked) + "<|im_end|>\n", city == asked) for city, asked in
                   [("Oslo", "Oslo"), ("Lima", "Rome"), ("Paris", "Paris"), ("Bern", "Bonn")]]  # fmt: skip


def _with_template(folder: Path, template: str) -> Path:
    """The tiny model with a real model family's chat template, as TRL ships it (trl/chat_templates)."""
    import trl
    from transformers import AutoTokenizer

    base = build_tiny_model(folder)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / f"{template}.jinja").read_text()
    tokenizer.save_pretrained(base)
    return base


# How each real template writes the call `get_weather(city="Rome")`, and a trace only the template leaves: Qwen's
# system turn (emptied: the console drops default system prompts) then "\n\n# Tools", where the plain-text
# rendering starts the turn with "# Tools"; Llama 3.1's "Environment: ipython" header.
REAL_TEMPLATES = {
    "qwen2_5": (_plain_call("Rome"), "<|im_start|>system\n\n\n# Tools\n"),
    "llama3_1": ('{"name": "get_weather", "parameters": {"city": "Rome"}}', "Environment: ipython"),
}


@pytest.mark.parametrize("template", REAL_TEMPLATES)
def test_tool_data_goes_through_real_tool_capable_chat_templates(registry, tmp_path, template):
    """Qwen2.5's and Llama 3.1's own templates (shipped in the trl package) render the calls, for SFT and DPO."""
    from registry.datasets import import_dataset
    from training.worker import build_trainer, preflight

    call, trace = REAL_TEMPLATES[template]
    base = _with_template(tmp_path / template, template)
    import_dataset("openai_tools", write(tmp_path, "openai_tools"))
    trainer, tokenizer = build_trainer(preflight(_config(base, "openai_tools")), tmp_path / "sft")
    rome = next(e for e in trainer.train_dataset if "Rome" in tokenizer.decode(e["input_ids"]))
    text = tokenizer.decode(rome["input_ids"])
    assert trace in text and '"name": "get_weather"' in text.split("Rome?")[0]  # the tools, before the question
    assert _loss_text(tokenizer, rome).startswith(call)

    import_dataset("preference_tools", write(tmp_path, "preference_tools"))
    trainer, tokenizer = build_trainer(preflight(_config(base, "preference_tools", objective="dpo")), tmp_path / "dpo")
    first = trainer.train_dataset[0]
    assert tokenizer.decode(first["chosen_ids"]).strip().startswith(call)
    assert tokenizer.decode(first["rejected_ids"]).strip().startswith("It is probably sunny.")
    assert trace in tokenizer.decode(first["prompt_ids"])


def test_a_dpo_job_on_tool_call_preferences_completes(registry, tmp_path):
    from registry.datasets import import_dataset
    from training.worker import run_training

    base = _with_template(tmp_path / "qwen", "qwen2_5")
    import_dataset("preference_tools", write(tmp_path, "preference_tools"))
    config = _config(base, "preference_tools", objective="dpo", max_steps=2)
    result = run_training(config, tmp_path / "job", stop=threading.Event())
    assert result.status == "completed" and result.steps == 2
    assert (result.adapter_path / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("name", ["pairs_text", "pairs_messages", "sharegpt_pairs", "hh_rlhf", "openai_preference"])
def test_preference_shapes_feed_dpo_their_prompt_and_both_answers(registry, tiny_base, tmp_path, name):
    from registry.datasets import import_dataset, read_rows
    from training.worker import build_trainer, preflight

    import_dataset(name, write(tmp_path, name))
    stored = read_rows(name, limit=100)
    trainer, tokenizer = build_trainer(preflight(_config(tiny_base, name, objective="dpo")), tmp_path / "job")
    assert len(trainer.train_dataset) == len(stored)
    for row, example in zip(stored, trainer.train_dataset, strict=True):
        assert tokenizer.decode(example["chosen_ids"]) == row["chosen"] + "<|im_end|>\n"
        assert tokenizer.decode(example["rejected_ids"]) == row["rejected"] + "<|im_end|>\n"
        prompt = tokenizer.decode(example["prompt_ids"])
        turns = [row["prompt"]] if isinstance(row["prompt"], str) else [m["content"] for m in row["prompt"]]
        assert all(turn in prompt for turn in turns) and prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("name", ["kto_messages", "kto_unpaired"])
def test_kto_records_feed_their_answer_and_label(registry, tiny_base, tmp_path, name):
    from registry.datasets import import_dataset, read_rows
    from training.worker import build_trainer, preflight

    import_dataset(name, write(tmp_path, name))
    stored = read_rows(name, limit=100)
    trainer, tokenizer = build_trainer(preflight(_config(tiny_base, name, objective="kto")), tmp_path / "job")
    for row, example in zip(stored, trainer.train_dataset, strict=True):
        assert tokenizer.decode(example["completion_ids"]) == row["completion"] + "<|im_end|>\n"
        assert example["label"] is row["label"]


def test_a_kto_file_offered_to_sft_is_refused_with_the_reason(registry, tiny_base, tmp_path):
    from registry.datasets import import_dataset
    from registry.errors import InvalidFile
    from training.worker import TrainingRefused, preflight

    import_dataset("kto_messages", write(tmp_path, "kto_messages"))
    with pytest.raises(InvalidFile, match="SFT ignores the label and would learn the undesirable answers too"):
        preflight(_config(tiny_base, "kto_messages"))
    with pytest.raises(TrainingRefused, match="KTO needs a batch size of 2 or more"):
        preflight(_config(tiny_base, "kto_messages", objective="kto", batch_size=1))


def test_kto_and_tool_call_sft_jobs_complete(registry, tiny_base, tmp_path):
    from registry.datasets import import_dataset
    from training.worker import run_training

    import_dataset("kto_messages", write(tmp_path, "kto_messages"))
    import_dataset("openai_tools", write(tmp_path, "openai_tools"))
    kto = run_training(_config(tiny_base, "kto_messages", objective="kto"), tmp_path / "kto", stop=threading.Event())
    assert kto.status == "completed" and kto.steps == 4
    assert (kto.adapter_path / "adapter_model.safetensors").is_file()
    sft = run_training(_config(tiny_base, "openai_tools"), tmp_path / "sft", stop=threading.Event())
    assert sft.status == "completed" and sft.steps == 4
    assert (sft.adapter_path / "adapter_model.safetensors").is_file()


def test_an_unknown_shape_lists_the_accepted_ones(registry, tmp_path):
    from registry.datasets import preview_file
    from registry.errors import InvalidFile
    from registry.shapes import ACCEPTED_SHAPES

    path = tmp_path / "odd.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(InvalidFile) as refused:
        preview_file(path)
    message = str(refused.value)
    assert "fields found: question, answer" in message
    for name, example in ACCEPTED_SHAPES:
        assert f"- {name}: {example}" in message


def test_one_prompt_rule_for_training_and_the_router():
    from registry.shapes import DatasetKind, prompt_of
    from training.formatting import sft_example

    record = {"instruction": "Map it", "input": "adType=sp", "output": "x"}
    assert prompt_of(record, DatasetKind.ALPACA) == "Map it\n\nadType=sp"
    assert sft_example(record, DatasetKind.ALPACA)["prompt"][-1]["content"] == prompt_of(record, DatasetKind.ALPACA)
    import federation.router as router

    assert router.prompt_of is prompt_of


def test_examples_the_trainer_drops_for_length_are_named_in_the_job_log(registry, tiny_base, tmp_path):
    from registry.datasets import import_dataset
    from training.job_folder import JobFolder
    from training.worker import build_trainer, preflight

    import_dataset("openai_tools", write(tmp_path, "openai_tools"))
    folder = JobFolder(tmp_path / "job")
    folder.path.mkdir()
    build_trainer(preflight(_config(tiny_base, "openai_tools", max_seq_length=512)), folder.path, folder=folder)
    assert "4 of 4 examples of openai_tools are longer than the max sequence length" in folder.log_file.read_text()


@pytest.mark.parametrize("name", ["openai_tools", "kto_messages", "hh_rlhf", "preference_tools", "kto_tools"])
def test_a_csv_export_imports_back_as_it_was(registry, tmp_path, name):
    from registry.datasets import export_dataset, import_dataset, read_rows

    import_dataset(name, write(tmp_path, name))
    exported = tmp_path / f"{name}.csv"
    exported.write_bytes(export_dataset(name, "csv"))
    again = import_dataset(f"{name}_again", exported)
    assert again.kind == FILES[name][2]
    assert read_rows(f"{name}_again", limit=100) == read_rows(name, limit=100)


def test_the_peer_kto_file_trains_with_kto(registry, tiny_base, tmp_path, peer_data):
    """LLaMA-Factory's kto_en_demo.json (messages + label) used to import as chat; now it is KTO data."""
    from registry.datasets import import_dataset
    from training.worker import run_training

    record = import_dataset("peer_kto", peer_data / "kto_en_demo.json")
    assert (record.kind, record.rows) == ("kto", 300)
    config = _config(tiny_base, "peer_kto", objective="kto", max_steps=2, max_seq_length=256)
    result = run_training(config, tmp_path / "job", stop=threading.Event())
    assert result.status == "completed" and result.steps == 2


def test_a_csv_answer_that_is_json_text_stays_text(registry, tmp_path):
    """Only messages in a prompt or answer cell are read back as JSON: an answer written as JSON is text to learn."""
    from registry.datasets import import_dataset, read_rows

    path = tmp_path / "json_answers.csv"
    path.write_text('prompt,completion\nMap adType sp,"{""placement_type"": ""sponsored_product""}"\n')
    import_dataset("json_answers", path)
    assert read_rows("json_answers", limit=10) == [
        {"instruction": "Map adType sp", "input": "", "output": '{"placement_type": "sponsored_product"}'}
    ]
    path = tmp_path / "json_pairs.csv"
    path.write_text('prompt,chosen,rejected\nMap adType sp,"{""placement_type"": ""sponsored_product""}",{}\n')
    import_dataset("json_pairs", path)
    assert read_rows("json_pairs", limit=10) == [
        {"prompt": "Map adType sp", "chosen": '{"placement_type": "sponsored_product"}', "rejected": "{}"}
    ]


def test_evaluation_reads_tool_calls_as_the_text_they_are_trained_as(registry, tmp_path):
    """An evaluation of tool data judges the calls (never an empty answer) in the plain-text rendering."""
    from evaluation.data import load_examples
    from registry.datasets import import_dataset

    import_dataset("preference_tools", write(tmp_path, "preference_tools"))
    pairs = load_examples("preference_tools").examples
    assert [(p.chosen, p.rejected) for p in pairs] == [
        (_plain_call("Rome"), "It is probably sunny."),
        (_plain_call("Milan"), _plain_call("Rome")),
    ]
    assert "<tools>" in pairs[0].conversation[0]["content"]
    import_dataset("openai_tools", write(tmp_path, "openai_tools"))
    examples = load_examples("openai_tools").examples
    assert examples[-1].reference == _plain_call("Rome")
    assert "<tool_response>" in examples[0].conversation[-1]["content"]
