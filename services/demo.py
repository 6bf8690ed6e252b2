"""Seed a registry with the demo of the product brief: raw sources, four retailer mappings and the generated datasets.

Idempotent: a second run finds the same content hashes and adds no versions. `python -m services.demo`.
"""

from registry.access import Role, requires
from registry.generators import generate_planning_dataset, generate_policy_dataset, generate_retailer_dataset
from registry.layout import Registry, open_registry
from registry.mappings import install_demo_mappings
from registry.raw_sources import generate_raw_sources
from training.config import PRESETS

DEMO_RETAILERS = ("Amazon", "Walmart")
# The two adapters the Federation page composes in the demo: (adapter type, training set, held-out set, config).
# The retailer adapter uses the "retailer mapping (fast)" preset (under 10 minutes of training here), the planning
# adapter the "campaign planning" preset.
DEMO_ADAPTERS: dict[str, tuple[str, str, str, dict]] = {
    "amazon_demo": ("retailer", "retailer_amazon_sft", "retailer_amazon_eval", PRESETS["retailer mapping (fast)"]),
    "planning_demo": ("task", "task_planning_sft", "task_planning_eval", PRESETS["campaign planning"]),
}


@requires(Role.PRACTITIONER, "demo.seed")
def seed_demo(registry: Registry | None = None) -> list[str]:
    """Return the names of the datasets the demo provides."""
    registry = registry or open_registry()
    generate_raw_sources(registry)
    install_demo_mappings(registry)
    pairs = [generate_retailer_dataset(retailer, registry) for retailer in DEMO_RETAILERS]
    pairs += [generate_planning_dataset(registry), generate_policy_dataset(registry)]
    return [record.name for pair in pairs for record in (pair.train, pair.evaluation) if record is not None]


def missing_demo_datasets() -> list[str]:
    """The datasets the demo adapters train and evaluate on that the library does not hold."""
    from registry.datasets import list_datasets

    held = {record.name for record in list_datasets()}
    wanted = [name for _, train, evaluation, _ in DEMO_ADAPTERS.values() for name in (train, evaluation)]
    return [name for name in wanted if name not in held]


@requires(Role.PRACTITIONER, "demo.train_adapters")
def submit_demo_adapters(load_demo_data: bool = False) -> list[str]:
    """Queue training of the demo adapters that are not in the registry yet (on the embedded model); job ids.

    With `load_demo_data`, the demo's raw sources, mappings and datasets are added first where missing (seeding is
    idempotent), so an empty registry is one click from the demo instead of a "no dataset named ..." error.
    """
    from registry.errors import NotFound
    from services.training import submit_training_job
    from training.adapters import get_adapter

    if load_demo_data and missing_demo_datasets():
        seed_demo()

    job_ids = []
    for name, (adapter_type, dataset, evaluation, config) in DEMO_ADAPTERS.items():
        try:
            get_adapter(name)
        except NotFound:
            job_ids.append(
                submit_training_job(
                    adapter_type, name, dataset, config={**config, "save_steps": 50, "eval_dataset": evaluation}
                )
            )
    return job_ids


if __name__ == "__main__":
    registry = open_registry()
    names = seed_demo(registry)
    print(f"Demo registry ready at {registry.root}: {', '.join(names)}")
