"""Seed a registry with the demo of seed 000: raw sources, four retailer mappings and the generated datasets.

Idempotent: a second run finds the same content hashes and adds no versions. `python -m services.demo`.
"""

from services.generators import generate_planning_dataset, generate_policy_dataset, generate_retailer_dataset
from services.mappings import install_demo_mappings
from services.raw_sources import generate_raw_sources
from services.registry import Registry, open_registry

DEMO_RETAILERS = ("Amazon", "Walmart")
# The two adapters the Federation page composes in the demo: (adapter type, training set, held-out set, epochs).
# The planning set is small (79 plans), so it takes more passes to learn the plans' arithmetic.
DEMO_ADAPTERS = {
    "amazon_demo": ("retailer", "retailer_amazon_sft", "retailer_amazon_eval", 2.0),
    "planning_demo": ("task", "task_planning_sft", "task_planning_eval", 6.0),
}
DEMO_TRAINING = {"batch_size": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32, "max_seq_length": 256,
                 "scheduler": "cosine", "save_steps": 50}


def seed_demo(registry: Registry | None = None) -> list[str]:
    """Return the names of the datasets the demo provides."""
    registry = registry or open_registry()
    generate_raw_sources(registry)
    install_demo_mappings(registry)
    pairs = [generate_retailer_dataset(retailer, registry) for retailer in DEMO_RETAILERS]
    pairs += [generate_planning_dataset(registry), generate_policy_dataset(registry)]
    return [record.name for pair in pairs for record in (pair.train, pair.evaluation) if record is not None]


def submit_demo_adapters() -> list[str]:
    """Queue training of the demo adapters that are not in the registry yet (on the embedded model); job ids."""
    from services.errors import NotFound
    from services.training import submit_training_job
    from training.adapters import get_adapter

    job_ids = []
    for name, (adapter_type, dataset, evaluation, epochs) in DEMO_ADAPTERS.items():
        try:
            get_adapter(name)
        except NotFound:
            job_ids.append(submit_training_job(adapter_type, name, dataset,
                                               config={**DEMO_TRAINING, "epochs": epochs, "eval_dataset": evaluation}))
    return job_ids


if __name__ == "__main__":
    registry = open_registry()
    names = seed_demo(registry)
    print(f"Demo registry ready at {registry.root}: {', '.join(names)}")
