"""The machine's health: CPU, memory, the registry's disk, this server's memory, and each NVIDIA GPU through NVML.

`sample()` reads everything once (cheap: a few /proc reads and, with a GPU, a few NVML calls per device).
`HealthSampler` keeps about an hour of samples in memory, taken by one daemon thread every `interval` seconds;
`services.runtime` owns the one sampler of the process. Without an NVIDIA driver the GPU part says why
("no NVIDIA GPU: NVML Shared Library Not Found") instead of failing.
"""

import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field


class GpuSample(BaseModel):
    index: int
    name: str
    utilization_percent: float | None = None
    memory_used_bytes: int
    memory_total_bytes: int
    temperature_c: float | None = None
    power_w: float | None = None


class HealthSample(BaseModel):
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    cpu_percent: float
    cpu_count: int
    memory_used_bytes: int
    memory_total_bytes: int
    memory_percent: float
    disk_used_bytes: int
    disk_total_bytes: int
    disk_percent: float
    process_rss_bytes: int
    gpus: list[GpuSample] = Field(default_factory=list)
    gpu_status: str = Field(description="'ok', or why there is no GPU reading (e.g. 'no NVIDIA GPU: ...').")


class HealthTrend(BaseModel):
    """The history as at most a fixed number of points, oldest first: what a trend line needs. An hour of 5 s
    samples is 720 points; averaged down to 120 a browser draws it in a fraction of the time, and a page refreshing
    every 5 s resends it cheaply."""

    cpu_percent: list[float] = Field(default_factory=list)
    memory_percent: list[float] = Field(default_factory=list)
    process_rss_mb: list[float] = Field(default_factory=list)
    gpu_percent: dict[int, list[float | None]] = Field(
        default_factory=dict, description="Per GPU index; None where no sample of the point had a reading."
    )


def trend(samples: list[HealthSample], max_points: int) -> HealthTrend:
    """One point per sample (oldest first) while they are at most `max_points`; beyond, each point is the mean of
    as many consecutive samples as it takes to stay within `max_points`."""
    size = max(1, -(-len(samples) // max_points))
    groups = [samples[start : start + size] for start in range(0, len(samples), size)]
    indexes = sorted({gpu.index for reading in samples for gpu in reading.gpus})
    return HealthTrend(
        cpu_percent=[_mean([s.cpu_percent for s in group]) for group in groups],
        memory_percent=[_mean([s.memory_percent for s in group]) for group in groups],
        process_rss_mb=[_mean([s.process_rss_bytes / 2**20 for s in group]) for group in groups],
        gpu_percent={
            index: [
                _mean([g.utilization_percent for s in group for g in s.gpus if g.index == index]) for group in groups
            ]
            for index in indexes
        },
    )


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


class _Nvml:
    """NVML initialised once per process; every failure becomes a status text, never an exception."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: str | None = None

    def _init(self) -> str:
        with self._lock:
            if self._status is None:
                try:
                    import pynvml

                    pynvml.nvmlInit()
                    count = pynvml.nvmlDeviceGetCount()
                    self._status = "ok" if count else "no NVIDIA GPU: NVML found no device"
                except Exception as error:  # noqa: BLE001 — NVMLError_LibraryNotFound, DriverNotLoaded, ...
                    self._status = f"no NVIDIA GPU: {error}"
            return self._status

    def read(self) -> tuple[list[GpuSample], str]:
        status = self._init()
        if status != "ok":
            return [], status
        import pynvml

        gpus = []
        try:
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                name = pynvml.nvmlDeviceGetName(handle)
                gpus.append(
                    GpuSample(
                        index=index,
                        name=name.decode() if isinstance(name, bytes) else str(name),
                        utilization_percent=_optional(lambda h=handle: pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
                        memory_used_bytes=int(memory.used),
                        memory_total_bytes=int(memory.total),
                        temperature_c=_optional(
                            lambda h=handle: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
                        ),
                        power_w=_optional(lambda h=handle: pynvml.nvmlDeviceGetPowerUsage(h) / 1000),
                    )
                )
        except Exception as error:  # noqa: BLE001 — a GPU that falls off the bus is a status, not a crash
            return gpus, f"GPU reading failed: {error}"
        return gpus, "ok"


def _optional(read) -> float | None:
    """Some boards do not report power or temperature (NVMLError_NotSupported): that reading is None."""
    try:
        return float(read())
    except Exception:  # noqa: BLE001
        return None


_nvml = _Nvml()


def read_gpus() -> tuple[list[GpuSample], str]:
    return _nvml.read()


def sample(disk_path: Path, cpu_interval: float | None = None) -> HealthSample:
    """One reading; CPU % is over the time since the previous reading (or over `cpu_interval` seconds, blocking)."""
    import psutil

    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(disk_path))
    gpus, status = read_gpus()
    return HealthSample(
        cpu_percent=psutil.cpu_percent(interval=cpu_interval),
        cpu_count=psutil.cpu_count() or 1,
        memory_used_bytes=int(memory.total - memory.available),
        memory_total_bytes=int(memory.total),
        memory_percent=float(memory.percent),
        disk_used_bytes=int(disk.used),
        disk_total_bytes=int(disk.total),
        disk_percent=float(disk.percent),
        process_rss_bytes=int(psutil.Process().memory_info().rss),
        gpus=gpus,
        gpu_status=status,
    )


class HealthSampler:
    """One daemon thread sampling every `interval` seconds into a ring of `history` seconds (about an hour)."""

    def __init__(self, disk_path: Path, interval: float = 5.0, history: float = 3600.0):
        self.disk_path, self.interval = disk_path, interval
        self._samples: deque[HealthSample] = deque(maxlen=max(2, int(history / interval)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="health-sampler", daemon=True)
        self._thread.start()

    def history(self) -> list[HealthSample]:
        with self._lock:
            return list(self._samples)

    def latest(self) -> HealthSample:
        """The newest sample, taken now if the thread has not produced one yet."""
        with self._lock:
            if self._samples:
                return self._samples[-1]
        reading = sample(self.disk_path, cpu_interval=0.1)  # no previous reading to measure CPU against
        with self._lock:
            self._samples.append(reading)
        return reading

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        import psutil

        psutil.cpu_percent(interval=None)  # the first reading only starts psutil's CPU clock
        while not self._stop.wait(self.interval):
            try:
                reading = sample(self.disk_path)
            except Exception:  # noqa: BLE001 — a vanished disk path must not end monitoring
                reading = None
            if reading is not None:
                with self._lock:
                    self._samples.append(reading)
