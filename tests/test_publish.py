"""Publish on real adapters trained with PEFT + TRL on a tiny model; the package is checked by a fresh process."""

import json
import subprocess
import sys
import zipfile

import pytest

from tests.tiny_model import build_tiny_model, train_tiny_adapter

PROMPTS = [f"Map field 'adType' with value '{c}' from {r} to RMIS." for c in ("sp", "sd") for r in ("Amazon", "Target")]


@pytest.fixture(scope="module")
def published_world(tmp_path_factory):
    """A registry with two adapters of one tiny base model and an additive federation of both."""
    import torch

    from federation.compose import MemberRequest, compose
    from federation.store import save_federation
    from registry.datasets import write_records
    from registry.layout import open_registry
    from registry.shapes import DatasetKind

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("publish")
    base = build_tiny_model(root / "tiny-llama")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(root / "registry"))
        registry = open_registry()
        for name, answer in (("mapper", "placement_type: sponsored_product"), ("other", "cost: 1.25")):
            rows = [{"instruction": p, "input": "", "output": answer} for p in PROMPTS]
            write_records(f"{name}_sft", rows * 4, DatasetKind.ALPACA, origin="test", registry=registry)
            rank = 4 if name == "mapper" else 8
            jobs = root / "jobs" / name
            train_tiny_adapter(
                name, f"{name}_sft", base, jobs, steps=12, rank=rank, max_seq_length=64, registry=registry
            )
        federation = save_federation(
            compose([MemberRequest(adapter="mapper"), MemberRequest(adapter="other", weight=0.5)], name="both"),
            registry,
        )
        yield {"base": base, "registry": registry, "federation": federation, "root": root}
    torch.set_num_threads(threads)


def _logits_in_fresh_process(folder, ids, base=None, adapter=None):
    """Plain transformers (and PEFT when asked) in a new interpreter: no project module is importable there."""
    script = (
        "import json, sys, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        "folder, ids, base, adapter = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]\n"
        "model = AutoModelForCausalLM.from_pretrained(base or folder, dtype=torch.float32)\n"
        "if adapter:\n"
        "    from peft import PeftModel\n"
        "    model = PeftModel.from_pretrained(model, adapter)\n"
        "with torch.no_grad():\n"
        "    print(json.dumps(model(input_ids=torch.tensor([ids])).logits[0].tolist()))\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('registry', 'training', 'federation', 'services')]\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, str(folder), json.dumps(ids), str(base or ""), str(adapter or "")],
        capture_output=True,
        text=True,
        check=True,
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    return json.loads(done.stdout)


def _peft_logits(base, adapter_paths_weights, ids):
    """Reference: the base with the adapter(s) applied by PEFT, computed here, unmerged."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    (first, _), *rest = adapter_paths_weights
    model = PeftModel.from_pretrained(model, first, adapter_name="a0")
    for index, (path, _) in enumerate(rest, start=1):
        model.load_adapter(path, adapter_name=f"a{index}")
    if rest:
        names = [f"a{i}" for i in range(len(adapter_paths_weights))]
        model.add_weighted_adapter(names, [w for _, w in adapter_paths_weights], "sum", combination_type="cat")
        model.set_adapter("sum")
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def _ids(folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": PROMPTS[0]}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])


def test_merged_package_loads_with_plain_transformers_and_matches_peft(published_world):
    import torch

    from federation.publish import check_manifest, publish
    from training.adapters import get_adapter

    record = publish(
        "mapper", merge=True, licence="apache-2.0", intended_use="Tests.", registry=published_world["registry"]
    )
    files = sorted(p.name for p in record.path.iterdir())
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md", "manifest.json"} <= set(files)
    assert "tokenizer_config.json" in files and "tokenizer.json" in files
    manifest = check_manifest(record.path)
    assert manifest["verification"]["passed"] and manifest["verification"]["project_modules_imported"] == []
    assert record.verification.max_abs_diff <= record.verification.tolerance == 1e-3
    assert record.verification.top1_agreement == 1.0

    # An independent check, in this test: plain from_pretrained in a fresh process against PEFT here.
    ids = _ids(record.path)
    got = torch.tensor(_logits_in_fresh_process(record.path, ids))
    adapter = get_adapter("mapper", registry=published_world["registry"])
    reference = _peft_logits(published_world["base"], [(adapter.path, 1.0)], ids)
    base_only = torch.tensor(_logits_in_fresh_process(published_world["base"], ids))
    assert (got - reference).abs().max() <= 1e-3
    assert (base_only - reference).abs().max() > 1e-2  # the adapter changed the model, so the match means something

    card = (record.path / "README.md").read_text()
    assert 'license: "apache-2.0"' in card and adapter.dataset["content_hash"] in card and "Tests." in card
    with zipfile.ZipFile(record.archive) as archive:
        names = archive.namelist()
    assert f"{record.name}/model.safetensors" in names and f"{record.name}/manifest.json" in names


def test_sharded_federation_package_matches_the_peft_weighted_sum(published_world):
    import torch

    from federation.publish import publish
    from training.adapters import get_adapter

    registry, federation = published_world["registry"], published_world["federation"]
    record = publish(federation.id, merge=True, name="both-merged", max_shard_size="100KB", registry=registry)
    assert record.shards > 1 and (record.path / "model.safetensors.index.json").is_file()
    assert record.verification.passed and record.source["type"] == "federation"
    ids = _ids(record.path)
    got = torch.tensor(_logits_in_fresh_process(record.path, ids))
    paths = [(get_adapter(m.adapter, m.version, registry).path, m.weight) for m in federation.members]
    reference = _peft_logits(published_world["base"], paths, ids)
    assert (got - reference).abs().max() <= 1e-3


def test_unmerged_package_has_the_adapter_and_a_vllm_recipe(published_world):
    import torch

    from federation.publish import publish
    from training.adapters import get_adapter

    registry = published_world["registry"]
    record = publish("other", merge=False, registry=registry)
    assert record.kind == "adapter" and record.verification.passed
    assert record.serve_command.endswith("--enable-lora --lora-modules other-v1-adapter=./adapter --max-lora-rank 8")
    assert (record.path / "serve.sh").read_text().count("vllm serve") == 1
    ids = _ids(record.path)
    got = torch.tensor(
        _logits_in_fresh_process(record.path, ids, base=published_world["base"], adapter=record.path / "adapter")
    )
    reference = _peft_logits(published_world["base"], [(get_adapter("other", registry=registry).path, 1.0)], ids)
    assert (got - reference).abs().max() <= 1e-5


def test_a_corrupted_package_file_fails_the_manifest_check_clearly(published_world):
    from federation.publish import PackageCorrupt, check_manifest, get_package, publish

    registry = published_world["registry"]
    record = publish("mapper", merge=True, name="to-corrupt", registry=registry)
    weights = record.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PackageCorrupt, match=r"model\.safetensors does not match the manifest.*restore it"):
        check_manifest(get_package("to-corrupt", registry).path)
    (record.path / "model.safetensors").write_bytes(bytes(data[:10]))
    with pytest.raises(PackageCorrupt, match="model.safetensors does not match"):
        check_manifest(record.path)
    (record.path / "extra.bin").write_bytes(b"x")
    (record.path / "model.safetensors").unlink()
    with pytest.raises(PackageCorrupt, match="missing"):
        check_manifest(record.path)


def test_gated_federations_and_taken_names_are_refused_and_write_nothing(published_world):
    from federation.compose import MemberRequest, compose
    from federation.publish import PublishError, list_packages, publish
    from federation.store import save_federation

    registry = published_world["registry"]
    before = sorted(p.name for p in registry.packages.iterdir())
    chain = save_federation(
        compose([MemberRequest(adapter="mapper"), MemberRequest(adapter="other")], method="sequential", name="chain"),
        registry,
    )
    with pytest.raises(PublishError, match="sequential federation"):
        publish(chain.id, registry=registry)
    existing = list_packages(registry)[0].name
    with pytest.raises(PublishError, match="already exists"):
        publish("mapper", name=existing, registry=registry)
    assert sorted(p.name for p in registry.packages.iterdir()) == before
    assert not [p for p in registry.tmp.iterdir() if p.name.startswith("package-")]


def test_deleting_a_model_in_use_is_refused_naming_its_users(published_world):
    from services.models import ModelInUse, delete_model, list_models, publish, register_base_model
    from services.runtime import job_manager
    from services.training import submit_training_job

    publish("mapper", name="in-use-check")
    register_base_model("tiny-base", published_world["base"])
    job_id = submit_training_job(
        "retailer", "queued_one", "mapper_sft", base_model="tiny-base", config={"max_steps": 400, "epochs": None}
    )
    try:
        with pytest.raises(ModelInUse) as refused:
            delete_model("tiny-base", "base")
        message = str(refused.value)
        assert f"job {job_id}" in message and "federation 'both'" in message and "package 'in-use-check'" in message
    finally:
        job_manager().cancel(job_id)
        job_manager().wait(job_id, timeout=300)
    with pytest.raises(ModelInUse, match=r"^Adapter mapper is in use by ") as refused:
        delete_model("mapper", "adapter")
    assert "federation 'both'" in str(refused.value) and "package 'in-use-check'" in str(refused.value)
    assert [e.version for e in list_models("adapter", search="mapper")] == [1]
    delete_model("in-use-check", "package")
    assert "in-use-check" not in [e.name for e in list_models("package")]
    with pytest.raises(ModelInUse, match="federation 'both'"):
        delete_model("tiny-base", "base")


def test_an_adapters_evaluations_are_listed_with_its_model(published_world):
    from services.evaluation import run_evaluation, wait_for_evaluation
    from services.models import get_model, model_evaluations

    run_id = run_evaluation("mapper@v1", "mapper_sft", limit=4, max_new_tokens=8)
    assert wait_for_evaluation(run_id, timeout=600).status.value == "completed"
    runs = model_evaluations(get_model("mapper", "adapter"))
    assert [r["run"] for r in runs] == [run_id]
    assert runs[0]["dataset"] == "mapper_sft" and 0.0 <= runs[0]["exact_match"] <= 1.0
    assert model_evaluations(get_model("other", "adapter")) == []

    # Models links the run to Evaluations, which opens it (the link's ?run= selects it on the Results tab).
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).resolve().parents[1] / "app.py")
    models = AppTest.from_file(app, default_timeout=120)
    models.switch_page("views/models.py").run()
    models.selectbox(key="models_selected").select("adapter: mapper v1").run()
    assert not models.exception
    links = [link for link in models.get("page_link") if run_id in link.proto.label]
    assert links and "evaluations" in links[0].proto.page and links[0].proto.query_string == f"run={run_id}"
    evaluations = AppTest.from_file(app, default_timeout=120)
    evaluations.switch_page("views/evaluations.py")
    evaluations.query_params["run"] = run_id
    evaluations.run()
    assert not evaluations.exception and evaluations.selectbox(key=f"eval_selected[{run_id}]").value == run_id


def _stages(manager, job_id):
    return [row.get("stage") for row in manager.metrics(job_id)]


def test_publish_runs_as_a_job_with_progress_log_and_activity(published_world):
    from federation.publish import STAGES
    from services import human_size
    from services.activity import all_jobs, recent_activity
    from services.models import get_package, list_models, submit_publish
    from services.runtime import job_manager
    from services.training import list_jobs

    job_id = submit_publish("other@v1", merge=False, name="as-a-job")
    manager = job_manager()
    job = manager.wait(job_id, timeout=600)
    assert job.status.value == "completed", job.error
    assert job.kind == "publish" and job.result == {"package": "as-a-job"} and job.config is None
    assert _stages(manager, job_id) == list(STAGES)  # every stage reported, in order, as the job's progress
    progress = manager.progress(job_id)
    assert (progress.step, progress.max_steps, progress.fraction) == (len(STAGES), len(STAGES), 1.0)
    log = manager.log_text(job_id)
    assert "step 3 of 5: verifying in a fresh process" in log and "published as-a-job" in log
    assert get_package("as-a-job").verification.passed
    assert job_id in [j.id for j in all_jobs()] and job_id not in [j.id for j in list_jobs()]
    events = {e["kind"]: e for e in recent_activity(None, text=job_id)}
    assert {"job.queued", "job.started", "job.completed", "package.published"} <= set(events)
    # The size as Models shows it is the size the log and the timeline say (one way to write a size).
    (entry,) = [m for m in list_models(kind="package") if m.name == "as-a-job"]
    assert human_size(entry.size_bytes) in events["package.published"]["message"]
    assert f"published as-a-job: {human_size(entry.size_bytes)}," in log


def test_a_bad_publish_is_refused_before_a_job_is_queued(published_world):
    from services.models import PublishError, publish_jobs, submit_publish

    before = [j.id for j in publish_jobs()]
    with pytest.raises(PublishError, match="must be a version like v2"):
        submit_publish("mapper@latest")
    with pytest.raises(Exception, match="No adapter|not found|no adapter"):
        submit_publish("no_such_adapter")
    with pytest.raises(PublishError, match="Shard size 'two gigs'.*like 2GB"):
        submit_publish("mapper", max_shard_size="two gigs")
    assert [j.id for j in publish_jobs()] == before


def test_cancelling_a_running_publish_stops_it_and_keeps_nothing(published_world):
    import time

    from services.models import list_packages, submit_publish
    from services.runtime import job_manager
    from services.training import cancel_job

    registry = published_world["registry"]
    job_id = submit_publish("mapper", merge=True, name="to-cancel")
    manager = job_manager()
    deadline = time.monotonic() + 600
    while "verifying in a fresh process" not in _stages(manager, job_id) and time.monotonic() < deadline:
        assert manager.get(job_id).status.value in ("queued", "running"), manager.get(job_id).error
        time.sleep(0.1)
    cancel_job(job_id)  # the fresh process needs seconds to import torch: the cancel lands while it runs
    job = manager.wait(job_id, timeout=120)
    assert job.status.value == "cancelled", (job.status, job.error)
    assert "to-cancel" not in [p.name for p in list_packages()]
    assert not list(registry.tmp.glob("package-*")), "a cancelled publish left its staging folder"
    assert "cancelled" in manager.log_text(job_id)


# The console process dies (SIGKILL, no clean-up) while its publish job writes the weights. It watches its own job
# and kills itself at that stage: a test process watching from outside could, on a loaded machine, look only after
# the publish had finished.
KILLED_PUBLISHER = """
import os, signal, time
from registry.layout import open_registry
from services.models import submit_publish
from services.runtime import job_manager
job_id = submit_publish("mapper", merge=True, name="after-restart")
print(job_id, flush=True)
deadline = time.monotonic() + 600
tmp = open_registry().tmp
while "writing the weights" not in [r.get("stage") for r in job_manager().metrics(job_id)] or not any(
    tmp.glob("package-*/package")
):
    if time.monotonic() > deadline:
        raise SystemExit("the publish job never reached the weights")
    time.sleep(0.01)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_publish_job_interrupted_by_a_restart_is_on_disk_and_starts_again(published_world):
    import os
    import signal
    from pathlib import Path

    from services.datasets import prune_scratch
    from services.models import get_package
    from services.runtime import PUBLISH, _publish
    from training.jobs import JobManager

    registry = published_world["registry"]
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_PUBLISHER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RMN_LORA_HOME": str(registry.root), "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    job_id = child.stdout.readline().strip()
    assert child.wait(timeout=900) == -signal.SIGKILL, "the child process was to die while writing the weights"
    # Its staging folder (minutes old, not hours) is left behind; the next start-up's prune removes it at once.
    staged = list(registry.tmp.glob("package-*"))
    assert len(staged) == 1 and (staged[0] / "package").is_dir(), staged
    assert prune_scratch() >= 1
    assert not staged[0].exists() and not list(registry.locks.glob(f"*{staged[0].name}*"))

    restarted = JobManager(registry, tasks={PUBLISH: _publish})  # what the next process of the console builds
    job = restarted.get(job_id)
    assert job.status.value == "interrupted" and job.kind == "publish"
    assert "start it again" in restarted.log_text(job_id)
    again = restarted.wait(restarted.restart(job_id).id, timeout=600)
    assert again.status.value == "completed", again.error
    assert again.restarted_from == job_id and again.task == job.task
    assert get_package("after-restart").verification.passed


def test_the_publish_page_follows_a_waiting_publish_job_and_cancels_it(published_world):
    """A publish job waits for a free slot (the limit is shared with training); Publish shows it to any session
    (here a fresh one, as after a reload) with its state, and its Cancel button cancels it."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from services.models import submit_publish
    from services.runtime import job_manager

    manager = job_manager()
    limit = manager.concurrency
    manager.set_concurrency(0)  # no free slot: the job stays queued while the page is looked at
    try:
        job_id = submit_publish("other", merge=True, name="waiting")
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
        at.switch_page("views/publish.py").run()
        assert not at.exception
        assert any("Publishing waiting from other v1" in m.value and job_id in m.value for m in at.markdown)
        assert "waiting for a free job slot" in at.get("progress")[0].proto.text
        at.button(key="publish_cancel").click().run()
        assert manager.get(job_id).status.value == "cancelled"
        at.run()  # the fragment's next tick (AppTest runs no timers) finds it finished and redraws the page
        shown = [e.value for e in at.error] + [m.value for m in at.markdown] + [b.label for b in at.button]
        assert any("Not published (cancelled)" in e.value.replace("\\", "") for e in at.error), shown
    finally:
        manager.set_concurrency(limit)
