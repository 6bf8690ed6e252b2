"""Evaluation: metrics against hand-computed values, perplexity and preference against plain transformers, the
significance tests against the binomial formula and an independent bootstrap, runs end to end on a tiny model with
a real trained adapter, and the inference request log."""

import json
import math
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.tiny_model import DEFAULT_CORPUS, build_tiny_model, train_tiny_adapter

MAP_PROMPTS = [
    f"Map field 'adType' with value '{code}' from {retailer} to RMIS."
    for code in ("sp", "sd", "vid")
    for retailer in ("Amazon", "Walmart", "Target", "Instacart")
]
MAP_ANSWER = "placement_type: sponsored_product"


# ---- metrics on hand-computed cases -------------------------------------------------------------------------------


def test_exact_match_token_f1_and_rouge_l_on_hand_computed_cases():
    from evaluation.metrics import exact_match, rouge_l, token_f1

    assert exact_match(" cost: 1.25\n", "cost: 1.25")
    assert not exact_match("cost: 1.250", "cost: 1.25")
    # tokens: prediction [the, cat, sat, on, mat] (5), reference [the, cat, is, on, the, mat] (6); overlap the, cat,
    # on, mat = 4 -> P 4/5, R 4/6, F1 = 2*0.8*0.6667/1.4667 = 0.72727
    assert token_f1("the cat sat on mat", "the cat is on the mat") == pytest.approx(8 / 11)
    # LCS of the same: the cat on mat = 4 -> same P and R here
    assert rouge_l("the cat sat on mat", "the cat is on the mat") == pytest.approx(8 / 11)
    # order matters for ROUGE-L, not for F1: [a, b, c, d] vs [d, c, b, a]: F1 1.0, LCS 1 -> P = R = 1/4
    assert token_f1("a b c d", "d c b a") == 1.0
    assert rouge_l("a b c d", "d c b a") == pytest.approx(0.25)
    # punctuation is a token: "cost: 1.25" -> [cost, :, 1, ., 25]; "cost 1.25" -> [cost, 1, ., 25]
    assert rouge_l("cost 1.25", "cost: 1.25") == pytest.approx(2 * (4 / 4) * (4 / 5) / (1 + 4 / 5))
    assert rouge_l("", "") == 1.0 and rouge_l("x", "") == 0.0 and token_f1("x", "y") == 0.0


def test_perplexity_is_exp_of_mean_token_nll():
    from evaluation.metrics import perplexity

    # two examples: log-probs summing to -3.0 over 2 tokens and -1.0 over 2 tokens -> exp(4/4) = e
    assert perplexity([-3.0, -1.0], [2, 2]) == pytest.approx(math.e)
    with pytest.raises(ValueError):
        perplexity([], [])


def test_field_of_reads_the_generator_task_or_the_rmis_prefix():
    from evaluation.metrics import field_of

    assert field_of("placement_type: sponsored_product") == "placement_type"
    assert field_of("anything", task="cost") == "cost"
    assert field_of("Allocate: video 100%.") is None
    assert field_of("no colon here") is None


def test_walk_a_limited_run_scores_a_spread_of_the_dataset_not_its_first_records(registry):
    """The demo's held-out split lists its examples field by field: 'Examples: 4' on retailer_amazon_eval scored four
    event_id answers and reported 100% with one bar in 'Accuracy per RMIS field' (issue 11 closing walk)."""
    from evaluation.data import load_examples
    from registry.generators import generate_retailer_dataset
    from registry.mappings import install_demo_mappings
    from registry.raw_sources import generate_raw_sources

    generate_raw_sources(registry)
    install_demo_mappings(registry)
    held_out = generate_retailer_dataset("Amazon", registry).evaluation
    every = load_examples(held_out.name).examples
    fields = {example.task for example in every}
    assert len(fields) >= 8 and [e.index for e in every] == list(range(1, len(every) + 1))
    limit = len(fields)
    sample = load_examples(held_out.name, limit=limit).examples
    assert len(sample) == limit
    # in proportion: every field with a share of the set of at least one pick's worth is scored
    sizes = Counter(example.task for example in every)
    assert {f for f, size in sizes.items() if size >= math.ceil(len(every) / limit)} <= {e.task for e in sample}
    assert len({example.task for example in sample}) > limit // 2
    indexes = [example.index for example in sample]
    assert indexes[0] == 1 and indexes == sorted(set(indexes)) and indexes[-1] >= len(every) - len(every) // limit
    assert [e.index for e in load_examples(held_out.name, limit=limit).examples] == indexes  # the same each time
    assert len(load_examples(held_out.name, limit=10_000).examples) == len(every)


# ---- significance --------------------------------------------------------------------------------------------------


def test_plan_judged_is_offered_for_plan_sets_and_summarized_per_criterion():
    from evaluation.data import EvalSet, Example
    from evaluation.runner import MetricError, plan_metrics, summarize
    from registry.shapes import DatasetKind

    plan = "Channel: video\nBudget: video 100% ($5,000)\nExpected ROAS uplift: +0.20 (+0.10 to +0.30)"

    def evalset(references):
        examples = [
            Example(index=i, conversation=[{"role": "user", "content": "q"}], reference=r)
            for i, r in enumerate(references, 1)
        ]
        return EvalSet(source={"name": "s"}, kind=DatasetKind.EVALUATION, examples=examples, skipped=[])

    assert "plan_judged" in plan_metrics(None, evalset([plan, "cost: 1.25"]))
    assert "plan_judged" not in plan_metrics(None, evalset(["cost: 1.25"]))
    with pytest.raises(MetricError, match="campaign plans"):
        plan_metrics(["plan_judged"], evalset(["cost: 1.25"]))
    rows = [
        {"exact_match": False, "plan": {"channel": True, "split": True, "uplift": True}},
        {"exact_match": False, "plan": {"channel": True, "split": False, "uplift": True}},
        {"exact_match": True, "plan": None},
    ]
    summary = summarize(rows, ["exact_match", "plan_judged"], 1.0)
    assert summary["plan_pass"] == 0.5 and summary["plan_split"] == 0.5
    assert summary["plan_channel"] == summary["plan_uplift"] == 1.0


def test_mcnemar_exact_matches_the_binomial_formula():
    from evaluation.significance import mcnemar_exact

    # 6 examples only the second run gets right, 1 only the first, 3 both: p = 2 * P(X <= 1 | n=7, 1/2)
    first = [True] * 3 + [True] + [False] * 6 + [False] * 2
    second = [True] * 3 + [False] + [True] * 6 + [False] * 2
    result = mcnemar_exact(first, second)
    assert (result.b, result.c) == (6, 1)
    assert result.p_value == pytest.approx(2 * (math.comb(7, 0) + math.comb(7, 1)) / 2**7)  # 0.125
    # 12 fail -> pass and none back: 2 / 2**12
    assert mcnemar_exact([False] * 12, [True] * 12).p_value == pytest.approx(2 / 4096)
    assert mcnemar_exact([True, False], [True, False]).p_value == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


def test_paired_bootstrap_matches_an_independent_resampling_and_is_seeded():
    import numpy as np

    from evaluation.significance import paired_bootstrap

    rng = np.random.default_rng(1)
    first = rng.uniform(0, 1, 60)
    second = np.clip(first + rng.normal(0.1, 0.2, 60), 0, 1)
    interval = paired_bootstrap(first.tolist(), second.tolist())
    differences = second - first
    assert interval.mean_difference == pytest.approx(differences.mean())
    # an independent bootstrap: a different generator, one resample at a time
    other = np.random.default_rng(12345)
    means = [differences[other.integers(0, 60, 60)].mean() for _ in range(20_000)]
    low, high = np.percentile(means, [2.5, 97.5])
    assert interval.low == pytest.approx(low, abs=0.01) and interval.high == pytest.approx(high, abs=0.01)
    assert interval.low < differences.mean() < interval.high
    assert paired_bootstrap(first.tolist(), second.tolist()) == interval  # fixed seed: the same interval
    same = paired_bootstrap([0.5] * 10, [0.75] * 10)
    assert (same.low, same.high) == (pytest.approx(0.25), pytest.approx(0.25)) and same.excludes_zero


# ---- a tiny model, a trained adapter, datasets ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry with a tiny base model, a 'mapper' adapter trained to answer MAP_ANSWER, and three datasets."""
    import torch

    from registry.datasets import write_records
    from registry.layout import open_registry
    from registry.shapes import DatasetKind

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evaluation")
    # Seeds no other test module uses: models of one config and seed have the same weights, hence the same
    # fingerprint, and the process-wide engine would serve another module's cached tokenizer and adapters.
    base = build_tiny_model(root / "tiny-llama", corpus=DEFAULT_CORPUS + MAP_PROMPTS, seed=1313)
    other = build_tiny_model(root / "other-llama", corpus=DEFAULT_CORPUS + MAP_PROMPTS, seed=1314)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(root / "registry"))
        registry = open_registry()
        train = [{"instruction": p, "input": "", "output": MAP_ANSWER} for p in MAP_PROMPTS]
        write_records("mapper_sft", train * 4, DatasetKind.ALPACA, origin="test", registry=registry)
        evaluation = [{"prompt": p, "reference": MAP_ANSWER, "task": "placement_type"} for p in MAP_PROMPTS]
        write_records("mapper_eval", evaluation, DatasetKind.EVALUATION, origin="test", registry=registry)
        pairs = [
            {
                "prompt": p,
                "chosen": MAP_ANSWER,
                "rejected": "placement_type: sponsored_" + ("display" if i % 2 else "brands"),
            }
            for i, p in enumerate(MAP_PROMPTS[:6])
        ]
        write_records("mapper_dpo", pairs, DatasetKind.DPO, origin="test", registry=registry)
        train_tiny_adapter("mapper", "mapper_sft", base, root / "jobs" / "mapper", steps=160, registry=registry)
        yield {"base": base, "other": other, "root": root, "registry": registry, "patch": patch}
    from federation.engine import default_engine

    default_engine().clear()  # the services test loaded this module's models into the process-wide engine
    torch.set_num_threads(threads)


@pytest.fixture
def manager(world, monkeypatch):
    """A fresh run manager on the module's registry with its own engine (no model cache shared with other tests)."""
    from evaluation.runs import RunManager
    from federation.engine import InferenceEngine

    monkeypatch.setenv("RMN_LORA_HOME", str(world["root"] / "registry"))
    return RunManager(world["registry"], InferenceEngine())


def _plain_logprob(folder: Path, prompt: str, answer: str) -> tuple[float, int]:
    """log P(answer + eos | ChatML prompt) with plain transformers: one sequence, no padding, no engine."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    total = 0.0
    for offset, token in enumerate(answer_ids):
        total += torch.log_softmax(logits[len(prompt_ids) + offset - 1], dim=-1)[token].item()
    return total, len(answer_ids)


def test_perplexity_equals_exp_mean_nll_from_plain_transformers(world, manager):
    run = manager.submit(str(world["base"]), "mapper_eval", metrics=["perplexity"], limit=5, batch_size=2)
    run = manager.wait(run.id, timeout=300)
    assert run.status == "completed", run.error
    rows = manager.rows(run.id)
    assert [row["index"] for row in rows] == [1, 3, 5, 8, 10]  # 5 of 12, spread over the set
    hand = [_plain_logprob(world["base"], MAP_PROMPTS[row["index"] - 1], MAP_ANSWER) for row in rows]
    for row, (logprob, count) in zip(rows, hand, strict=True):
        assert row["reference_logprob"] == pytest.approx(logprob, abs=1e-3)
        assert row["reference_tokens"] == count
    expected = math.exp(-sum(lp for lp, _ in hand) / sum(n for _, n in hand))
    assert run.metrics["perplexity"] == pytest.approx(expected, rel=1e-4)
    assert run.metrics["perplexity"] > 1.5  # a random tiny model is far from certain


def test_preference_accuracy_from_hand_computed_log_likelihoods(world, manager):
    run = manager.wait(manager.submit("mapper", "mapper_dpo").id, timeout=300)
    assert run.status == "completed", run.error
    assert run.config.metrics == ["preference_accuracy"]
    rows = manager.rows(run.id)
    assert [row["preferred"] for row in rows] == [row["chosen_logprob"] > row["rejected_logprob"] for row in rows]
    base_run = manager.wait(manager.submit(str(world["base"]), "mapper_dpo").id, timeout=300)
    base_rows = manager.rows(base_run.id)
    hand = [
        (_plain_logprob(world["base"], MAP_PROMPTS[i], MAP_ANSWER)[0], _plain_logprob(world["base"], MAP_PROMPTS[i], r))
        for i, r in enumerate(row["rejected"] for row in base_rows)
    ]
    for row, (chosen, (rejected, _)) in zip(base_rows, hand, strict=True):
        assert row["chosen_logprob"] == pytest.approx(chosen, abs=1e-3)
        assert row["rejected_logprob"] == pytest.approx(rejected, abs=1e-3)
    expected = sum(chosen > rejected for chosen, (rejected, _) in hand) / len(hand)
    assert base_run.metrics["preference_accuracy"] == pytest.approx(expected)
    # the trained adapter prefers the answer it learned on every pair (rejected answers of similar length: the
    # score is a sum over tokens, so a much shorter rejected answer would win on length alone)
    assert run.metrics["preference_accuracy"] == 1.0


def test_adapter_against_base_with_significance_and_per_field_accuracy(world, manager):
    from evaluation.compare import compare_runs

    base = manager.wait(manager.submit(str(world["base"]), "mapper_eval", batch_size=8).id, timeout=300)
    adapter = manager.wait(manager.submit("mapper", "mapper_eval", batch_size=8).id, timeout=300)
    assert base.status == adapter.status == "completed", (base.error, adapter.error)
    assert base.metrics["exact_match"] == 0.0
    assert adapter.metrics["exact_match"] == 1.0
    assert adapter.metrics["field_accuracy"] == {"placement_type": {"accuracy": 1.0, "examples": 12}}
    assert adapter.metrics["rouge_l"] == 1.0 and adapter.metrics["token_f1"] == 1.0
    assert adapter.metrics["latency_p50_ms"] > 0 and adapter.cost is not None and adapter.cost > 0
    comparison = compare_runs([base, adapter], [manager.rows(base.id), manager.rows(adapter.id)])
    test = comparison.tests[0]
    assert (test.mcnemar.b, test.mcnemar.c) == (12, 0)
    assert test.mcnemar.p_value == pytest.approx(2 / 4096)
    assert "p < 0.001" in test.summary
    assert test.bootstrap["token_f1"].low > 0
    assert len(comparison.changed) == 12
    assert comparison.changed[0][adapter.id] == {"prediction": MAP_ANSWER, "pass": True}


def test_batched_predictions_equal_one_prompt_at_a_time(world):
    from federation.engine import Activation, GenerationSettings, InferenceEngine
    from federation.spec import BaseRef
    from training.base_models import resolve_base_model

    engine = InferenceEngine()
    base = BaseRef.from_info(resolve_base_model(str(world["base"])))
    settings = GenerationSettings(max_new_tokens=12)
    conversations = [[{"role": "user", "content": p}] for p in MAP_PROMPTS[:8]]
    batched = engine.generate_batch(base, conversations, settings, Activation(), caller="test")
    single = [engine.generate(base, p, settings, Activation(), caller="test") for p in MAP_PROMPTS[:8]]
    assert [g.response for g in batched] == [g.response for g in single]
    assert [g.tokens for g in batched] == [g.tokens for g in single]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]


def test_bad_input_is_refused_and_writes_nothing(world, manager):
    from evaluation.runner import MetricError
    from evaluation.targets import TargetError
    from registry.datasets import write_records
    from registry.errors import ConsoleError, NotFound
    from registry.shapes import DatasetKind

    before = sorted(p.name for p in world["registry"].evaluations.iterdir())
    with pytest.raises(MetricError, match="Unknown metric 'bleu'"):
        manager.submit(str(world["base"]), "mapper_eval", metrics=["bleu"])
    with pytest.raises(MetricError, match="needs reference answers"):
        manager.submit(str(world["base"]), "mapper_dpo", metrics=["exact_match"])
    with pytest.raises(MetricError, match="needs DPO preference pairs"):
        manager.submit(str(world["base"]), "mapper_eval", metrics=["preference_accuracy"])
    with pytest.raises(TargetError, match="not a saved federation id, an adapter"):
        manager.submit("no_such_adapter", "mapper_eval")
    with pytest.raises(NotFound):
        manager.submit(str(world["base"]), "no_such_dataset")
    write_records(
        "blank_eval",
        [{"prompt": "hi", "reference": " "}],
        DatasetKind.EVALUATION,
        origin="test",
        registry=world["registry"],
    )
    with pytest.raises(ConsoleError, match="no example to evaluate"):
        manager.submit(str(world["base"]), "blank_eval")
    with pytest.raises(TargetError, match="another base model"):
        _adapter_on_other_weights(world, manager)
    assert sorted(p.name for p in world["registry"].evaluations.iterdir()) == before


def _adapter_on_other_weights(world, manager):
    """An adapter whose lineage names the base folder, but the weights there are now another model's."""
    import shutil

    from training.adapters import get_adapter

    record = get_adapter("mapper")
    lineage = json.loads((record.path / "lineage.json").read_text())
    moved = dict(lineage)
    moved["base_model"] = {**lineage["base_model"], "path": str(world["other"])}
    copy = record.path.parent.parent / "mapper_elsewhere" / "v1"
    shutil.copytree(record.path, copy)
    (copy / "lineage.json").write_text(json.dumps({**moved, "name": "mapper_elsewhere"}))
    try:
        manager.submit("mapper_elsewhere", "mapper_eval")
    finally:
        shutil.rmtree(copy.parent)


def test_cancel_and_restart_resume_after_the_stored_rows(world, manager):
    from evaluation.runs import RunManager, RunStatus
    from federation.engine import InferenceEngine
    from registry.storage import atomic_write_json

    run = manager.submit(str(world["base"]), "mapper_eval", metrics=["exact_match"], batch_size=4)
    manager.wait(run.id, timeout=300)
    full = manager.rows(run.id)
    # a process died after the first batch: state says running, the rows hold one batch and a torn line
    folder = manager.folder(run.id)
    state = manager.get(run.id).model_copy(update={"status": RunStatus.RUNNING, "done": 4, "metrics": {}})
    atomic_write_json(folder.state, state.model_dump(mode="json"))
    kept = folder.rows_file.read_text().splitlines()[:4]
    folder.rows_file.write_text("\n".join(kept) + '\n{"index": 5, "pro')
    folder.metrics_file.unlink()
    again = RunManager(world["registry"], InferenceEngine())
    resumed = again.wait(run.id, timeout=300)
    assert resumed.status == "completed" and resumed.attempts == 2
    assert [r["index"] for r in again.rows(run.id)] == [r["index"] for r in full]
    assert [r["prediction"] for r in again.rows(run.id)] == [r["prediction"] for r in full]
    assert folder.metrics() == resumed.metrics
    # a queued run is cancelled before it starts
    blocker = threading.Event()
    original = again._work

    def held(run_id):
        blocker.wait(60)
        original(run_id)

    again._work = held
    queued = again.submit(str(world["base"]), "mapper_eval", metrics=["exact_match"])
    second = again.submit(str(world["base"]), "mapper_eval", metrics=["exact_match"])
    assert again.cancel(second.id).status == "cancelled"
    blocker.set()
    assert again.wait(queued.id, timeout=300).status == "completed"
    assert again.get(second.id).status == "cancelled"


# ---- the request log ------------------------------------------------------------------------------------------------


@pytest.fixture
def logged(world, tmp_path, monkeypatch):
    """A fresh registry (so the log starts empty) over the module's tiny model."""
    from federation.engine import InferenceEngine
    from federation.spec import BaseRef
    from training.base_models import resolve_base_model

    monkeypatch.setenv("RMN_LORA_HOME", str(tmp_path / "registry"))
    from federation.request_log import request_log

    return InferenceEngine(), BaseRef.from_info(resolve_base_model(str(world["base"]))), request_log()


def test_every_generation_appends_one_record(logged):
    from federation.engine import GenerationSettings

    engine, base, log = logged
    settings = GenerationSettings(max_new_tokens=6)
    results = [engine.generate(base, f"{p}", settings, caller="playground") for p in MAP_PROMPTS[:5]]
    engine.generate_batch(base, [[{"role": "user", "content": p}] for p in MAP_PROMPTS[:3]], settings, caller="bench")
    log.flush()
    records = list(log.records())
    assert len(records) == 8
    assert [r.caller for r in records] == ["playground"] * 5 + ["bench"] * 3
    first = records[0]
    assert first.ok and first.target == base.id and first.adapters == []
    assert first.prompt_tokens == results[0].prompt_tokens and first.completion_tokens == results[0].tokens
    assert first.latency_ms == results[0].latency_ms and first.first_token_ms == results[0].first_token_ms


def test_a_failing_generation_is_recorded_as_an_error(logged, world):
    from federation.engine import Activation, InferenceError
    from federation.spec import Member

    engine, base, log = logged
    ghost = Member(adapter="ghost", version=1, role="task", rank=4, alpha=8, size_bytes=0, target_modules="all-linear")
    with pytest.raises(Exception):  # noqa: B017 — NotFound for the missing adapter, whatever its class
        engine.generate(base, "hi", activation=Activation(members=(ghost,), scales=(1.0,)), caller="api")
    moved = base.model_copy(update={"path": str(world["root"] / "nowhere"), "fingerprint": "0" * 64})
    with pytest.raises(InferenceError):
        engine.generate_batch(moved, [[{"role": "user", "content": "hi"}]], caller="evaluation")
    log.flush()
    records = list(log.records())
    assert [(r.ok, r.caller) for r in records] == [(False, "api"), (False, "evaluation")]
    assert records[0].adapters == ["ghost v1"] and "ghost" in records[0].error
    assert "no longer at" in records[1].error


def test_eight_threads_lose_no_record(logged):
    from federation.engine import GenerationSettings

    engine, base, log = logged
    settings = GenerationSettings(max_new_tokens=2)
    errors = []

    def work(worker: int) -> None:
        try:
            for index in range(5):
                engine.generate(base, f"{MAP_PROMPTS[index]} #{worker}", settings, caller="api")
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    log.flush()
    assert len(list(log.records())) == 40
    # the 8 first requests loaded the model once, one at a time: concurrent `from_pretrained` calls used to leave
    # every later load of the process with its tied output layer on the meta device
    from federation.engine import _load_base

    assert not [name for name, p in _load_base(base).model.named_parameters() if p.is_meta]


def test_the_log_rotates_by_size_and_reads_every_kept_file(tmp_path):
    from federation.request_log import RequestLog, RequestRecord

    log = RequestLog(tmp_path / "requests", max_bytes=2_000, keep=2)
    for index in range(150):
        log.append(RequestRecord(target=f"t{index}", caller="test"))
        if index % 10 == 9:
            log.flush()
    log.flush()
    files = log.files()
    assert [f.name for f in files] == ["requests.2.jsonl", "requests.1.jsonl", "requests.jsonl"]
    targets = [r.target for r in log.records()]
    assert targets == sorted(targets, key=lambda t: int(t[1:])) and targets[-1] == "t149"
    assert 30 <= len(targets) < 150  # the oldest files were dropped, whole
    # a file rotates once it has reached the limit, so it can hold one write batch (here 10 lines) past it
    assert all(f.stat().st_size < 2_000 + 10 * 200 for f in files)


def test_logging_can_be_switched_off(logged, monkeypatch):
    engine, base, log = logged
    monkeypatch.setenv("RMN_LORA_REQUEST_LOG", "0")
    engine.generate(base, "hi", caller="api")
    log.flush()
    assert list(log.records()) == []


def test_services_api_runs_compares_and_exports(world, monkeypatch):
    import csv
    import io

    from services import compare_evaluations, get_evaluation, list_evaluations, run_evaluation
    from services.evaluation import export_evaluation, export_rows, wait_for_evaluation

    monkeypatch.setenv("RMN_LORA_HOME", str(world["root"] / "registry"))
    base = run_evaluation(str(world["base"]), "mapper_eval", limit=6)
    tuned = run_evaluation("mapper@v1", "mapper_eval", limit=6)
    finished = wait_for_evaluation(tuned, timeout=300)
    assert finished.status == "completed", finished.error
    assert wait_for_evaluation(base, timeout=300).status == "completed"
    result = get_evaluation(tuned)
    assert result["target"] == "mapper@v1" and result["total"] == 6 and len(result["rows"]) == 6
    assert result["metrics"]["exact_match"] == 1.0 and result["cost_usd"] > 0
    assert {base, tuned} <= {run.id for run in list_evaluations()}
    comparison = compare_evaluations([base, tuned])
    assert comparison.tests[0].mcnemar.b == 6 and comparison.tests[0].mcnemar.p_value == pytest.approx(2 / 64)
    markdown = export_evaluation([base, tuned], "markdown")
    assert "p = 0.031" in markdown and "| exact_match | 100.0% |" in markdown
    page = export_evaluation([base, tuned], "html")
    assert page.startswith("<!doctype html>") and "<svg" in page and "<script" not in page
    table = list(csv.DictReader(io.StringIO(export_rows(tuned, "csv"))))
    assert len(table) == 6 and table[0]["prediction"] == MAP_ANSWER
    assert [json.loads(line)["index"] for line in export_rows(tuned, "jsonl").splitlines()] == [1, 3, 5, 7, 9, 11]


def test_exports_escape_user_text():
    from evaluation.report import _md, rows_csv

    assert _md("a|b\n*c*") == "a\\|b \\*c\\*"
    assert "'=HYPERLINK" in rows_csv([{"index": 1, "prompt": '=HYPERLINK("x")'}])


def test_a_completed_job_evaluates_its_adapter_and_base_linked_by_job(world, manager):
    from evaluation.lineage import before_after, evaluate_job
    from training.config import build_config
    from training.jobs import JobManager

    jobs = JobManager(world["registry"])
    queued: list[str] = []
    jobs.on_completed.append(lambda job: queued.extend(evaluate_job(manager, job)))
    config = build_config(
        adapter_name="hooked",
        base_model=str(world["base"]),
        train_dataset="mapper_sft",
        eval_dataset="mapper_eval",
        max_steps=4,
        batch_size=4,
        save_steps=1000,
        max_seq_length=96,
        epochs=None,
    )
    job = jobs.wait(jobs.submit(config).id, timeout=300)  # returns once the completion callback has run
    assert job.status == "completed", job.error
    assert len(queued) in (1, 2), jobs.log_text(job.id)  # the base run is reused when an identical one exists
    runs = [manager.wait(run_id, timeout=300) for run_id in queued]
    assert all(run.status == "completed" and run.config.job_id == job.id for run in runs)
    assert runs[-1].config.target.key == "hooked@v1" and runs[-1].config.role == "adapter"
    summary = before_after(manager, "hooked", 1)
    assert summary is not None and summary.dataset == "mapper_eval"
    assert summary.adapter == runs[-1].metrics["exact_match"]
    assert summary.text.startswith(f"base {summary.base:.1%} → {summary.adapter:.1%} (p ")
    # the run reproduces the training-time held-out figure (same prompts, template, greedy decoding)
    assert summary.adapter == pytest.approx(job.final_metrics["eval_accuracy"])


def test_evaluate_the_base_model_first_queues_it_with_the_job(world, monkeypatch):
    """The job option queues the base model's run when the job is queued (before training has produced anything);
    after training only the adapter's run is added, and the adapter reads its before → after from the two."""
    from registry.datasets import write_records
    from registry.errors import ConsoleError
    from registry.shapes import DatasetKind
    from services.evaluation import adapter_before_after, list_evaluations, wait_for_evaluation
    from services.training import job_manager, submit_training_job

    monkeypatch.setenv("RMN_LORA_HOME", str(world["root"] / "registry"))
    held_out = [{"prompt": p, "reference": MAP_ANSWER, "task": "placement_type"} for p in MAP_PROMPTS[:10]]
    write_records("mapper_first", held_out, DatasetKind.EVALUATION, origin="test", registry=world["registry"])
    settings = {"max_steps": 4, "batch_size": 4, "save_steps": 1000, "max_seq_length": 96, "epochs": None}
    before = {run.id for run in list_evaluations()}
    with pytest.raises(ConsoleError, match="needs an eval dataset"):
        submit_training_job(
            "retailer",
            "first",
            "mapper_sft",
            config={**settings, "evaluate_base_first": True},
            base_model=str(world["base"]),
        )
    assert {run.id for run in list_evaluations()} == before

    job_id = submit_training_job(
        "retailer",
        "first",
        "mapper_sft",
        config={**settings, "eval_dataset": "mapper_first", "evaluate_base_first": True},
        base_model=str(world["base"]),
    )
    queued = [run for run in list_evaluations() if run.id not in before]
    assert [(run.config.role, run.config.job_id, run.total) for run in queued] == [("base", job_id, 10)]
    assert queued[0].config.target.kind == "base" and queued[0].config.target.base.path == str(world["base"])
    job = job_manager().wait(job_id, timeout=300)  # returns once the completion hook has queued the adapter's run
    assert job.status == "completed", job.error
    runs = {run.config.role: run for run in list_evaluations() if run.config.job_id == job_id}
    assert sorted(runs) == ["adapter", "base"] and runs["base"].id == queued[0].id  # the base run was not repeated
    for run in runs.values():
        assert wait_for_evaluation(run.id, timeout=300).status == "completed"
    summary = adapter_before_after("first", 1)
    assert summary is not None and (summary.base_run, summary.adapter_run) == (runs["base"].id, runs["adapter"].id)


def test_auto_evaluation_can_be_switched_off(world, monkeypatch):
    from services.evaluation import list_evaluations
    from services.training import job_manager, submit_training_job

    monkeypatch.setenv("RMN_LORA_HOME", str(world["root"] / "registry"))
    monkeypatch.setenv("RMN_LORA_AUTO_EVALUATE", "0")
    job_id = submit_training_job(
        "retailer",
        "unevaluated",
        "mapper_sft",
        config={"max_steps": 2, "batch_size": 4, "save_steps": 1000, "max_seq_length": 96, "epochs": None,
                "eval_dataset": "mapper_eval"},
        base_model=str(world["base"]),
    )  # fmt: skip
    job = job_manager().wait(job_id, timeout=300)
    assert job.status == "completed", job.error
    assert "completed" in job_manager().log_text(job_id)
    time.sleep(2)  # the completion hook has run by the time wait() returns; give a wrong one time to show
    assert [run for run in list_evaluations() if run.config.job_id == job_id] == []


def test_running_and_cancelling_evaluations_need_the_practitioner_role(world, monkeypatch):
    from registry import audit
    from registry.errors import Forbidden
    from services.access import Actor, Role, acting_as
    from services.evaluation import cancel_evaluation, list_evaluations, run_evaluation

    monkeypatch.setenv("RMN_LORA_HOME", str(world["root"] / "registry"))
    before = {run.id for run in list_evaluations()}
    viewer = Actor(username="val", role=Role.VIEWER)
    with acting_as(viewer):
        assert {run.id for run in list_evaluations()} == before  # reading is fine
        with pytest.raises(Forbidden, match="val may not evaluations.run"):
            run_evaluation(str(world["base"]), "mapper_eval", limit=2)
        with pytest.raises(Forbidden, match="val may not evaluations.cancel"):
            cancel_evaluation(next(iter(before)))
    assert {run.id for run in list_evaluations()} == before
    denied = [(e.action, e.user) for e in audit.entries() if e.outcome == "denied"]
    assert denied[-2:] == [("evaluations.run", "val"), ("evaluations.cancel", "val")]
    with acting_as(Actor(username="pat", role=Role.PRACTITIONER)):
        run_id = run_evaluation(str(world["base"]), "mapper_eval", limit=2)
        cancel_evaluation(run_id)
