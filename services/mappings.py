"""Mappings API: retailer -> RMIS schema mappings, the raw sources they run on, and the demo data."""

from registry import generators as _generators
from registry import mappings as _mappings
from registry import raw_sources as _raw_sources
from registry.access import Role, requires
from registry.generators import EVAL_SHARE, GeneratedPair
from registry.layout import open_registry
from registry.mappings import (
    FieldStatus,
    HarmonizeResult,
    Mapping,
    MappingSummary,
    coverage,
    editor_rows,
    field_status,
    get_mapping,
    get_mapping_yaml,
    harmonize,
    list_mappings,
    mapping_from_editor,
    mapping_history,
    sample_rows,
)
from registry.raw_sources import (
    FilterChoices,
    SourceInfo,
    export_frame,
    filter_choices,
    filter_source,
    list_sources,
    load_source,
)
from registry.rmis import FIELDS as RMIS_FIELDS
from registry.rmis import FIELDS_BY_NAME as RMIS_FIELDS_BY_NAME
from registry.transforms import TRANSFORMS

__all__ = [
    "EVAL_SHARE",
    "RMIS_FIELDS",
    "RMIS_FIELDS_BY_NAME",
    "TRANSFORMS",
    "FieldStatus",
    "FilterChoices",
    "GeneratedPair",
    "HarmonizeResult",
    "Mapping",
    "MappingSummary",
    "SourceInfo",
    "coverage",
    "editor_rows",
    "export_frame",
    "field_status",
    "filter_choices",
    "filter_source",
    "generate_raw_sources",
    "generate_retailer_dataset",
    "generate_sample_sources",
    "generate_training_data",
    "get_mapping",
    "get_mapping_yaml",
    "harmonize",
    "install_demo_data",
    "install_demo_mappings",
    "list_mappings",
    "list_sources",
    "load_source",
    "mapping_from_editor",
    "mapping_history",
    "sample_rows",
    "save_mapping",
]


save_mapping = requires(Role.PRACTITIONER, "mappings.save")(_mappings.save_mapping)
install_demo_mappings = requires(Role.PRACTITIONER, "mappings.install_demo")(_mappings.install_demo_mappings)
generate_raw_sources = requires(Role.PRACTITIONER, "raw_sources.generate")(_raw_sources.generate_raw_sources)
generate_retailer_dataset = requires(Role.PRACTITIONER, "datasets.generate")(_generators.generate_retailer_dataset)


@requires(Role.PRACTITIONER, "datasets.generate")
def generate_training_data(
    retailer: str, source_id: str | None = None, eval_share: float = EVAL_SHARE
) -> GeneratedPair:
    """An SFT dataset and its held-out evaluation split in the library, from a mapping run on a raw source."""
    return _generators.generate_retailer_dataset(retailer, source_id=source_id, eval_share=eval_share)


@requires(Role.PRACTITIONER, "mappings.install_demo_data")
def install_demo_data() -> None:
    """The sample raw sources and the four demo retailer mappings (idempotent)."""
    registry = open_registry()
    _raw_sources.generate_raw_sources(registry)
    _mappings.install_demo_mappings(registry)


@requires(Role.PRACTITIONER, "raw_sources.generate")
def generate_sample_sources() -> list[SourceInfo]:
    """The sample raw retailer sources of the Data Browser (same seed, same files)."""
    return _raw_sources.generate_raw_sources(open_registry())
