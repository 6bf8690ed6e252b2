"""Federation tests on real adapters trained with PEFT + TRL on a tiny model: composition must not be faked."""

import json
from pathlib import Path

import pytest

from tests.tiny_model import DEFAULT_CORPUS, build_tiny_model, train_tiny_adapter

COLORS = ["red", "green", "blue", "black"]
FRUITS = ["apple", "lime", "plum", "olive"]
MAP_PROMPTS = [
    f"Map field 'adType' with value '{code}' from {retailer} to RMIS."
    for code in ("sp", "sd", "vid")
    for retailer in ("Amazon", "Walmart", "Target", "Instacart")
]
PLAN_PROMPTS = [
    f"Plan a ${budget},000 campaign for {category} on Kroger. Which placements get the budget?"
    for budget in (5, 10, 20, 40)
    for category in ("snacks", "beauty", "pets")
]
MAP_ANSWER = "placement_type: sponsored_product"
PLAN_ANSWER = "Allocate: video 100%."
CORPUS = DEFAULT_CORPUS + [f"Code for {c}? KEY {i} {f}" for i, (c, f) in enumerate(zip(COLORS, FRUITS))] + PLAN_PROMPTS


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A registry with four trained adapters: 'mapper' and 'planner' answer conflicting things on their own prompt
    types; 'coder' turns a colour into a key and 'decoder' turns a key into a fruit (a chain needs both)."""
    import torch

    from registry.datasets import write_records
    from registry.layout import open_registry
    from registry.shapes import DatasetKind

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("federation")
    base = build_tiny_model(root / "tiny-llama", corpus=CORPUS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(root / "registry"))
        registry = open_registry()
        data = {
            "mapper": [{"instruction": p, "input": "", "output": MAP_ANSWER} for p in MAP_PROMPTS],
            "planner": [{"instruction": p, "input": "", "output": PLAN_ANSWER} for p in PLAN_PROMPTS],
            "coder": [
                {"instruction": f"Code for {c}?", "input": "", "output": f"KEY {i}"} for i, c in enumerate(COLORS)
            ],
            "decoder": [{"instruction": f"KEY {i}", "input": "", "output": f} for i, f in enumerate(FRUITS)],
        }
        for name, rows in data.items():
            write_records(f"{name}_sft", rows * 4, DatasetKind.ALPACA, origin="test", registry=registry)
            rank = 8 if name == "planner" else 4
            train_tiny_adapter(name, f"{name}_sft", base, root / "jobs" / name, steps=160, rank=rank, registry=registry)
        yield {"base": base, "root": root, "registry": registry, "patch": patch}
    torch.set_num_threads(threads)


@pytest.fixture
def engine(trained, monkeypatch):
    from federation.engine import InferenceEngine

    monkeypatch.setenv("RMN_LORA_HOME", str(trained["root"] / "registry"))
    return InferenceEngine(max_models=2)


def answer(engine, federation_or_base, prompt, activation=None):
    from federation.engine import Activation

    return engine.generate(federation_or_base, prompt, activation=activation or Activation()).response


def own_answer(engine, base, name, prompt):
    from federation.engine import Activation
    from federation.spec import Member
    from training.adapters import get_adapter

    record = get_adapter(name)
    member = Member(
        adapter=name,
        version=record.version,
        role="test",
        rank=record.lora_r,
        alpha=record.lora_alpha,
        size_bytes=record.size_bytes,
        target_modules=record.target_modules,
    )
    return engine.generate(base, prompt, activation=Activation(members=(member,), scales=(1.0,))).response


def hand_patched_logits(base_path: Path, federation, input_ids):
    """The base model with sum(w_i * alpha_i/r_i * B_i A_i) added to its weights by hand, read from the files."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from training.adapters import get_adapter

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
    parameters = dict(model.named_parameters())
    patched = 0
    for member in federation.members:
        folder = get_adapter(member.adapter, member.version).path
        config = json.loads((folder / "adapter_config.json").read_text())
        scale = config["lora_alpha"] / config["r"]
        tensors = load_file(folder / "adapter_model.safetensors")
        for key, lora_a in tensors.items():
            if not key.endswith("lora_A.weight"):
                continue
            lora_b = tensors[key.replace("lora_A", "lora_B")]
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            with torch.no_grad():
                parameters[f"{module}.weight"] += member.weight * scale * (lora_b @ lora_a)
            patched += 1
    assert patched > 0
    with torch.inference_mode():
        return model(input_ids=input_ids).logits


def test_additive_is_the_exact_weighted_sum_of_deltas_unmerged_merged_and_after_reload(trained, engine):
    import torch

    from federation.engine import Activation, InferenceEngine
    from federation.store import load_federation, save_federation
    from services import compose_federation

    federation = compose_federation(
        retailer_adapter="mapper", task_adapter="planner", method="additive", weights=[0.7, 1.3], name="exact sum"
    )
    assert federation.rank == 12 and federation.exact
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 8, 11, 64]])
    expected = hand_patched_logits(trained["base"], federation, ids)
    base_logits = engine.logits(federation.base, ids)
    assert (expected - base_logits).abs().max() > 1e-2, "the adapters must really change the model"
    unmerged = engine.logits(federation.base, ids, Activation(federation=federation))
    torch.testing.assert_close(unmerged, expected, atol=1e-4, rtol=1e-4)
    merged = federation.model_copy(update={"merged": True})
    torch.testing.assert_close(
        engine.logits(merged.base, ids, Activation(federation=merged)), expected, atol=1e-4, rtol=1e-4
    )

    save_federation(federation)
    reloaded = load_federation(federation.id)
    assert reloaded == federation
    fresh = InferenceEngine()
    torch.testing.assert_close(
        fresh.logits(reloaded.base, ids, Activation(federation=reloaded)), expected, atol=1e-4, rtol=1e-4
    )


def test_named_approximation_is_not_the_sum(trained, engine):
    import torch

    from federation.engine import Activation
    from services import compose_federation

    svd = compose_federation(adapters=["mapper", "planner"], method="additive", combination="svd", weights=[0.7, 1.3])
    assert not svd.exact
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 8, 11, 64]])
    expected = hand_patched_logits(trained["base"], svd, ids)
    approximate = engine.logits(svd.base, ids, Activation(federation=svd))
    assert not torch.allclose(approximate, expected, atol=1e-4)


def test_gated_answers_each_prompt_type_as_its_own_adapter_and_additive_does_not(trained, engine):
    from services import compose_federation, test_federation

    gated = compose_federation(retailer_adapter="mapper", task_adapter="planner", method="gated")
    additive = compose_federation(retailer_adapter="mapper", task_adapter="planner", method="additive")
    assert gated.router.holdout_accuracy == 1.0
    base = gated.base
    cases = [
        (MAP_PROMPTS[1], "mapper"),
        (MAP_PROMPTS[7], "mapper"),
        (PLAN_PROMPTS[2], "planner"),
        (PLAN_PROMPTS[9], "planner"),
    ]
    additive_agrees = []
    for prompt, owner in cases:
        own = own_answer(engine, base, owner, prompt)
        result = test_federation(gated, prompt)
        assert result.response == own
        assert result.adapters_used == [f"{owner} v1"]
        assert max(result.gate_weights, key=result.gate_weights.get) == f"{owner} v1"
        assert abs(sum(result.gate_weights.values()) - 1) < 1e-3
        additive_agrees.append(test_federation(additive, prompt).response == own)
    assert own_answer(engine, base, "mapper", MAP_PROMPTS[1]) == MAP_ANSWER
    assert own_answer(engine, base, "planner", PLAN_PROMPTS[2]) == PLAN_ANSWER
    assert not all(additive_agrees), "summing conflicting adapters should not reproduce both answers"


def test_weighted_gating_mixes_the_members_by_gate_weight(trained, engine):
    import torch

    from federation.engine import Activation
    from federation.methods.gated import activation_for
    from services import compose_federation

    gated = compose_federation(adapters=["mapper", "planner"], method="gated", routing="weighted")
    activation, weights = activation_for(gated, PLAN_PROMPTS[0])
    assert len(activation.members) == 2 and abs(sum(activation.scales) - 1) < 1e-3
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    mixed = engine.logits(gated.base, ids, activation)
    top = engine.logits(gated.base, ids, Activation(members=(gated.members[1],), scales=(1.0,)))
    assert not torch.allclose(mixed, top, atol=1e-5)
    # the scales are restored afterwards: the member alone gives the same logits as before the mix
    torch.testing.assert_close(
        engine.logits(gated.base, ids, Activation(members=(gated.members[1],), scales=(1.0,))), top
    )


def test_a_chain_feeds_each_stage_the_previous_output(trained, engine):
    from services import compose_federation, test_federation

    chain = compose_federation(adapters=["coder", "decoder"], method="sequential")
    base = chain.base
    for index, (color, fruit) in enumerate(zip(COLORS, FRUITS)):
        result = test_federation(chain, f"Code for {color}?")
        assert [s.response for s in result.stages] == [f"KEY {index}", fruit]
        assert result.stages[1].prompt == f"KEY {index}"
        assert result.response == fruit and result.adapters_used == ["coder v1", "decoder v1"]
    assert own_answer(engine, base, "decoder", f"Code for {COLORS[2]}?") != FRUITS[2], (
        "the second stage alone must not know the answer: it needs the first stage's output"
    )


def test_streaming_yields_the_answer_and_keeps_load_time_apart(trained, engine):
    from federation.run import stream_federation
    from services import compose_federation

    federation = compose_federation(adapters=["mapper"], method="additive")
    stream = stream_federation(federation, MAP_PROMPTS[0], engine=engine)
    chunks = list(stream)
    assert "".join(chunks).strip() == stream.result.response and stream.result.tokens > 0
    assert stream.result.load_ms > 0
    again = stream_federation(federation, MAP_PROMPTS[0], engine=engine)
    list(again)
    assert again.result.load_ms < stream.result.load_ms and again.result.response == stream.result.response


def test_engine_cache_is_bounded_and_shared(trained, engine):
    from federation.engine import Activation
    from services import compose_federation

    one = compose_federation(adapters=["mapper", "planner"], method="additive", merged=True, name="m1")
    two = compose_federation(adapters=["coder", "decoder"], method="additive", merged=True, name="m2")
    engine.generate(one.base, "hi", activation=Activation())
    engine.generate(one.base, "hi", activation=Activation(federation=one))
    engine.generate(two.base, "hi", activation=Activation(federation=two))
    assert len(engine.loaded()) == 2 and engine.loaded()[-1] == f"merged: {two.id}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"adapters": ["nope"]}, "No adapter named 'nope'"),
        ({"adapters": ["mapper"], "method": "blend"}, "Unknown composition method 'blend'"),
        ({"adapters": ["mapper"], "method": "gated"}, "at least two adapters"),
        ({"adapters": ["mapper", "mapper"]}, "chosen twice"),
        ({"adapters": ["mapper", "planner"], "weights": [1.0]}, "2 adapters"),
        ({"adapters": ["mapper", "planner"], "weights": [1.0, float("nan")]}, "finite"),
        ({"adapters": ["mapper", "planner"], "combination": "linear"}, "needs adapters of one rank"),
        ({"adapters": ["mapper"], "combination": "magic"}, "Unknown additive combination"),
        ({"adapters": ["../etc"]}, "path separator"),
        ({"adapters": ["mapper@vX"]}, "version like v2"),
        ({"adapters": ["coder", "decoder"], "method": "sequential", "templates": ["{input}", "{oops}"]}, "template"),
        ({"adapters": []}, "at least one adapter"),
    ],
)
def test_bad_compositions_are_refused_clearly(trained, engine, kwargs, message):
    from services import ConsoleError, compose_federation

    before = sorted(p.name for p in (trained["root"] / "registry" / "federations").iterdir())
    with pytest.raises(ConsoleError, match=message):
        compose_federation(**kwargs)
    assert sorted(p.name for p in (trained["root"] / "registry" / "federations").iterdir()) == before


def _copy_adapter_with(trained, name: str, change) -> str:
    import shutil

    from training.adapters import get_adapter

    source = get_adapter("mapper").path
    target = trained["root"] / "registry" / "adapters" / name / "v1"
    shutil.copytree(source, target)
    lineage = json.loads((target / "lineage.json").read_text())
    config = json.loads((target / "adapter_config.json").read_text())
    change(lineage, config)
    lineage["name"] = name
    (target / "lineage.json").write_text(json.dumps(lineage))
    (target / "adapter_config.json").write_text(json.dumps(config))
    return name


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "other_base",
            lambda lineage, config: lineage["base_model"].update(fingerprint="0" * 64, id="OtherModel"),
            "trained on different base models",
        ),
        ("dora", lambda lineage, config: config.update(use_dora=True), "DoRA"),
        ("rslora", lambda lineage, config: config.update(use_rslora=True), "rsLoRA"),
    ],
)
def test_what_peft_would_silently_get_wrong_is_refused(trained, engine, name, change, message):
    from services import ConsoleError, compose_federation

    _copy_adapter_with(trained, name, change)
    with pytest.raises(ConsoleError, match=message):
        compose_federation(adapters=["planner", name])


def test_a_different_base_model_is_refused_by_fingerprint(trained, engine, tmp_path):
    from services import ConsoleError, compose_federation

    other = build_tiny_model(tmp_path / "other", seed=1, corpus=CORPUS)
    with pytest.raises(ConsoleError, match="not on .*other"):
        compose_federation(base_model=str(other), adapters=["mapper"])


def test_a_name_that_exists_is_refused_and_the_old_file_kept(trained, engine):
    from federation.engine import add_weighted
    from federation.errors import InferenceError
    from federation.store import delete_federation, list_federations, save_federation
    from services import FederationError, compose_federation

    first = save_federation(compose_federation(adapters=["mapper"], name="dupe"))
    saved = (trained["root"] / "registry" / "federations" / f"{first.id}.json").read_bytes()
    with pytest.raises(FederationError, match="already exists"):
        save_federation(compose_federation(adapters=["planner"], name="dupe"))
    assert (trained["root"] / "registry" / "federations" / f"{first.id}.json").read_bytes() == saved

    class Loaded:
        peft_config = {"sum__x": object()}

    with pytest.raises(InferenceError, match="silently keep"):
        add_weighted(Loaded(), first, "sum__x")
    delete_federation(first.id)
    assert first.id not in [f.id for f in list_federations()]


def test_a_default_name_says_its_method_once(trained, engine):
    """The default name ends with the method, and the activity line and evaluation label added it again: "Saved
    federation walk_a + walk_b (gated) (gated)" (seen on the issue 11 closing walk)."""
    from federation.store import delete_federation, save_federation
    from services import compose_federation
    from services.activity import recent_activity

    unnamed = save_federation(compose_federation(adapters=["mapper", "planner"], method="gated"))
    named = save_federation(compose_federation(adapters=["mapper"], name="mapper only"))
    try:
        assert unnamed.label == unnamed.name == "mapper + planner (gated)"
        assert named.label == "mapper only (additive)"
        details = [event["message"] for event in recent_activity(limit=2, kinds=["federation.saved"])]
        assert details == ["Saved federation mapper only (additive)", "Saved federation mapper + planner (gated)"]
    finally:
        delete_federation(unnamed.id)
        delete_federation(named.id)


def test_ab_comparison_scores_both_on_the_same_prompts(trained, engine):
    from federation.evaluate import compare_federations
    from services import compose_federation

    gated = compose_federation(adapters=["mapper", "planner"], method="gated", name="ab gated")
    mapper_only = compose_federation(adapters=["mapper"], name="ab mapper")
    records = [
        {"prompt": MAP_PROMPTS[0], "reference": MAP_ANSWER},
        {"prompt": PLAN_PROMPTS[0], "reference": PLAN_ANSWER},
        {"prompt": "Say hello."},
    ]
    a, b = compare_federations(gated, mapper_only, records, engine=engine)
    assert [r.prompt for r in a.rows] == [r.prompt for r in b.rows] == [r["prompt"] for r in records]
    assert a.accuracy == 1.0 and b.accuracy == 0.5
    assert a.rows[2].correct is None and a.p95_latency_ms >= a.p50_latency_ms > 0


def test_plan_references_are_judged_by_the_plan_judge(trained, engine):
    from federation.evaluate import evaluate_federation
    from services import compose_federation

    plan = "Channel: video\nBudget: video 100% ($5,000)\nExpected ROAS uplift: +0.20 (+0.10 to +0.30)"
    planner = compose_federation(adapters=["planner"], name="judged planner")
    score = evaluate_federation(
        planner,
        [{"prompt": PLAN_PROMPTS[0], "reference": plan}, {"prompt": PLAN_PROMPTS[0], "reference": PLAN_ANSWER}],
        engine=engine,
    )
    assert score.rows[0].response == PLAN_ANSWER  # a free-text allocation, not a plan: every criterion fails
    assert score.rows[0].criteria == {"channel": False, "split": False, "uplift": False}
    assert score.rows[1].correct and score.rows[1].criteria == {}
    assert score.accuracy == 0.5 and score.criteria == {"channel": 0.0, "split": 0.0, "uplift": 0.0}


def test_a_reader_that_leaves_early_stops_generation_and_leaves_the_model_as_it_was(trained, engine):
    import threading

    from federation.run import stream_federation
    from services import compose_federation

    gated = compose_federation(adapters=["mapper", "planner"], method="gated", routing="weighted")
    expected = own_answer(engine, gated.base, "planner", PLAN_PROMPTS[3])
    chunks = iter(stream_federation(gated, MAP_PROMPTS[3], engine=engine))
    next(chunks)
    chunks.close()
    assert not [t for t in threading.enumerate() if t.name == "rmn-generate"]
    assert own_answer(engine, gated.base, "planner", PLAN_PROMPTS[3]) == expected


def test_switching_between_merged_adapters_keeps_every_answer_exact(trained, engine):
    """Single adapters are merged into the weights while in use; switching must not drift the base weights."""
    import torch

    from federation.engine import Activation, InferenceEngine
    from services import compose_federation

    gated = compose_federation(adapters=["mapper", "planner"], method="gated", routing="weighted")
    mapper, planner = gated.members
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 8]])
    plain = InferenceEngine().logits(gated.base, ids)
    alone = {m.key: engine.logits(gated.base, ids, Activation(members=(m,), scales=(1.0,))) for m in (mapper, planner)}
    for _ in range(25):
        for member in (mapper, planner):
            engine.logits(gated.base, ids, Activation(members=(member,), scales=(1.0,)))
        engine.logits(gated.base, ids, Activation(members=(mapper, planner), scales=(0.5, 0.5)))
    torch.testing.assert_close(engine.logits(gated.base, ids), plain, atol=1e-5, rtol=1e-5)
    for member in (mapper, planner):
        torch.testing.assert_close(
            engine.logits(gated.base, ids, Activation(members=(member,), scales=(1.0,))),
            alone[member.key],
            atol=1e-5,
            rtol=1e-5,
        )


def test_the_engine_cache_tells_apart_tokenizers_and_registries(trained, engine, tmp_path, monkeypatch):
    """A model folder with the same weights but another chat template, and an adapter of the same name and version
    in another registry, must not be served from what the engine loaded before."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from federation.engine import Activation, InferenceEngine
    from federation.spec import BaseRef
    from services import compose_federation
    from training.base_models import describe_folder, fingerprint, tokenizer_fingerprint

    # same weights, another chat template: the fingerprint agrees, the rendered prompt does not
    twin = Path(shutil.copytree(trained["base"], tmp_path / "twin"))
    template = twin / "chat_template.jinja"
    text = template.read_text()
    assert text.count("message['content']") == 1
    template.write_text(text.replace("message['content']", "'Question: ' + message['content']"))
    assert fingerprint(twin) == fingerprint(trained["base"])
    assert tokenizer_fingerprint(twin) != tokenizer_fingerprint(trained["base"])
    original, copy = (BaseRef.from_info(describe_folder(p, str(p), "local")) for p in (trained["base"], twin))
    first = engine.generate(original, MAP_PROMPTS[0])
    second = engine.generate(copy, MAP_PROMPTS[0])
    assert second.prompt_tokens == InferenceEngine().generate(copy, MAP_PROMPTS[0]).prompt_tokens
    assert second.prompt_tokens > first.prompt_tokens  # "Question: " is in the prompt the engine rendered
    assert len(engine.loaded()) == 2

    # the same adapter name and version in another registry, with other weights
    mapper = compose_federation(adapters=["mapper"], method="additive", name="mapper_alone").members[0]
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 8]])
    activation = Activation(members=(mapper,), scales=(1.0,))
    here = engine.logits(original, ids, activation)
    elsewhere = tmp_path / "registry2"
    shutil.copytree(trained["root"] / "registry" / "adapters" / "mapper", elsewhere / "adapters" / "mapper")
    weights = next((elsewhere / "adapters" / "mapper").glob("v*/adapter_model.safetensors"))
    tensors = load_file(weights)
    save_file({k: v * 3 if "lora_B" in k else v for k, v in tensors.items()}, weights)
    monkeypatch.setenv("RMN_LORA_HOME", str(elsewhere))
    there = engine.logits(original, ids, activation)
    torch.testing.assert_close(there, InferenceEngine().logits(original, ids, activation), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(there, here, atol=1e-3)
    monkeypatch.setenv("RMN_LORA_HOME", str(trained["root"] / "registry"))
    torch.testing.assert_close(engine.logits(original, ids, activation), here, atol=1e-5, rtol=1e-5)
