"""The on-disk registry: one folder whose layout every service agrees on."""

from dataclasses import dataclass
from pathlib import Path

from registry.settings import SETTINGS_FILE, Settings, get_settings

LAYOUT = (
    "library",
    "mappings",
    "raw",
    "adapters",
    "jobs",
    "federations",
    "playground",
    "evaluations",
    "requests",
    "models",
    "packages",
    "access",
    ".locks",
    ".tmp",
)


@dataclass(frozen=True)
class Registry:
    """Paths of one registry root; `open_registry()` creates the folders before first use."""

    root: Path
    settings: Settings

    @property
    def library(self) -> Path:
        return self.root / "library"

    @property
    def mappings(self) -> Path:
        return self.root / "mappings"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def federations(self) -> Path:
        return self.root / "federations"

    @property
    def playground(self) -> Path:
        return self.root / "playground"

    @property
    def evaluations(self) -> Path:
        return self.root / "evaluations"

    @property
    def requests(self) -> Path:
        """The inference request log (`federation.request_log` owns its files)."""
        return self.root / "requests"

    @property
    def models(self) -> Path:
        """Registered base model folders (one JSON record each) and the description / tags of every model."""
        return self.root / "models"

    @property
    def packages(self) -> Path:
        """Published packages: `packages/<name>/` holds the package folder, its archive and its record."""
        return self.root / "packages"

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def locks(self) -> Path:
        return self.root / ".locks"

    @property
    def tmp(self) -> Path:
        return self.root / ".tmp"

    @property
    def uploads(self) -> Path:
        """Uploads staged for preview, inside the registry (never a shared /tmp folder); removed after import."""
        return self.tmp / "uploads"

    @property
    def access(self) -> Path:
        """Users and sessions (registry.access)."""
        return self.root / "access"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def activity_log(self) -> Path:
        return self.root / "activity.jsonl"


def open_registry(settings: Settings | None = None) -> Registry:
    settings = settings or get_settings()
    registry = Registry(root=settings.home, settings=settings)
    _lay_out(registry.root)
    return registry


# Registry roots whose folders all existed, with the root's identity and modification time then: creating,
# removing or renaming one of its folders changes that time (to a new value once it was read, where the kernel
# has multigrain timestamps as here; else after a timer tick), so while it holds the layout is whole and one stat
# replaces the mkdir of every folder (~0.25 ms per registry open).
_laid_out: dict[Path, tuple[int, int]] = {}


def _lay_out(root: Path) -> None:
    try:
        stat = root.stat()
        before: tuple[int, int] | None = (stat.st_ino, stat.st_mtime_ns)
    except FileNotFoundError:
        before = None
    if before is not None and _laid_out.get(root) == before:
        return
    created = False
    for folder in LAYOUT:
        try:
            (root / folder).mkdir(parents=True)
            created = True
        except FileExistsError:
            if not (root / folder).is_dir():
                raise
    if before is not None and not created:
        _laid_out[root] = before
