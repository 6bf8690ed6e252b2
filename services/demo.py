"""Seed a registry with the demo of seed 000: raw sources, four retailer mappings and the generated datasets.

Idempotent: a second run finds the same content hashes and adds no versions. `python -m services.demo`.
"""

from services.generators import generate_planning_dataset, generate_policy_dataset, generate_retailer_dataset
from services.mappings import install_demo_mappings
from services.raw_sources import generate_raw_sources
from services.registry import Registry, open_registry

DEMO_RETAILERS = ("Amazon", "Walmart")


def seed_demo(registry: Registry | None = None) -> list[str]:
    """Return the names of the datasets the demo provides."""
    registry = registry or open_registry()
    generate_raw_sources(registry)
    install_demo_mappings(registry)
    pairs = [generate_retailer_dataset(retailer, registry) for retailer in DEMO_RETAILERS]
    pairs += [generate_planning_dataset(registry), generate_policy_dataset(registry)]
    return [record.name for pair in pairs for record in (pair.train, pair.evaluation) if record is not None]


if __name__ == "__main__":
    registry = open_registry()
    names = seed_demo(registry)
    print(f"Demo registry ready at {registry.root}: {', '.join(names)}")
