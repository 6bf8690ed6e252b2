"""Reading and writing safetensors files one tensor at a time, so a whole model is never in memory at once.

Reads use plain file reads into each tensor's own buffer rather than a memory map: every page of a map that was
read stays in the process's resident memory until the map is closed, so reading a checkpoint through one costs
its whole size. Writes reserve room for the header, write each tensor as it comes and write the header last,
padded with spaces (which the format allows), so a converter can hand over tensors one by one.
"""

import ctypes
import gc
import json
import struct
import sys
from pathlib import Path
from typing import Any

from training.errors import ModelLoadError

# safetensors dtype codes and torch's names for them.
DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
_CODES = {name: code for code, name in DTYPES.items()}
# Room for one header entry besides its name: dtype, up to 8 dimensions and two offsets of 20 digits each.
_ENTRY_ROOM = 64 + 8 * 21 + 2 * 21
_MAX_HEADER = 100 * 1024 * 1024


def read_header(file: Path) -> tuple[dict[str, Any], int]:
    """The file's JSON header and where its tensor data starts."""
    try:
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _MAX_HEADER:
                raise ValueError("implausible header length")
            return json.loads(handle.read(length)), 8 + length
    except (OSError, ValueError, struct.error) as error:
        raise ModelLoadError(f"{file} is not a readable safetensors file ({error}); copy it again.") from None


def file_tensors(file: Path) -> dict[str, "StoredTensor"]:
    """Every tensor of one safetensors file, described from its header and read only when asked for."""
    header, data_start = read_header(file)
    tensors: dict[str, StoredTensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        if entry["dtype"] not in DTYPES:
            raise ModelLoadError(f"{file.name} stores {name} as {entry['dtype']}, which cannot be loaded here.")
        tensors[name] = StoredTensor(
            file, DTYPES[entry["dtype"]], tuple(entry["shape"]), data_start + start, end - start
        )
    return tensors


class StoredTensor:
    """One tensor of a safetensors file, read with plain file reads when it is indexed (`tensor[...]`).

    transformers indexes each state-dict value just before it quantizes and places it, one at a time; the bytes
    go straight into the tensor's own memory (one copy, no memory map), so once it is dropped nothing of it stays
    resident.
    """

    def __init__(self, file: Path, dtype: str, shape: tuple[int, ...], offset: int, nbytes: int):
        self.file, self.dtype, self.shape, self.offset, self.nbytes = file, dtype, shape, offset, nbytes

    def get_shape(self) -> list[int]:
        return list(self.shape)

    def __getitem__(self, index: Any) -> Any:
        import torch

        malloc_trim()  # the previous tensor's buffers, freed into the heap (e.g. by its quantization)
        data = torch.empty(self.nbytes, dtype=torch.uint8)
        view = memoryview(data.numpy())
        with open(self.file, "rb", buffering=0) as handle:
            handle.seek(self.offset)
            done = 0
            while done < self.nbytes:
                count = handle.readinto(view[done:])
                if not count:
                    raise ModelLoadError(f"{self.file} ends early; the file is truncated. Copy it again.")
                done += count
        return data.view(getattr(torch, self.dtype)).reshape(self.shape)[index]


class SafetensorsWriter:
    """Writes a safetensors file tensor by tensor; `names` bounds the names to come, so the header's room is known.

    Use as a context manager: the header is written on a clean exit. Tensors are stored in the order written.
    """

    def __init__(self, file: Path, names: set[str], metadata: dict[str, str] | None = None):
        self.metadata = {"format": "pt", **(metadata or {})}
        self.entries: dict[str, dict[str, Any]] = {}
        self.room = len(json.dumps({"__metadata__": self.metadata})) + sum(
            len(json.dumps(n)) + _ENTRY_ROOM for n in names
        )
        self.room += -self.room % 8  # tensor data starts 8-byte aligned, as safetensors' own writer does
        self.offset = 0
        self.handle = open(file, "wb")  # noqa: SIM115  # closed in __exit__
        self.handle.seek(8 + self.room)

    def __enter__(self) -> "SafetensorsWriter":
        return self

    def add(self, name: str, tensor: Any) -> None:
        import torch

        if name in self.entries:
            raise ValueError(f"{name} is written twice")
        data = tensor.detach().contiguous().cpu()
        raw = data.reshape(-1).view(torch.uint8).numpy()
        self.handle.write(memoryview(raw))
        self.entries[name] = {
            "dtype": _CODES[str(data.dtype).removeprefix("torch.")],
            "shape": list(data.shape),
            "data_offsets": [self.offset, self.offset + raw.nbytes],
        }
        self.offset += raw.nbytes

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        try:
            if kind is None:
                header = json.dumps({"__metadata__": self.metadata, **self.entries}, separators=(",", ":")).encode()
                if len(header) > self.room:
                    raise ValueError(f"the header needs {len(header)} bytes, {self.room} were reserved")
                self.handle.seek(0)
                self.handle.write(struct.pack("<Q", self.room) + header + b" " * (self.room - len(header)))
        finally:
            self.handle.close()


def release_freed_memory() -> None:
    """Return the heap that loading freed (full-precision buffers) to the system, so resident memory shows the model."""
    gc.collect()
    malloc_trim()


def malloc_trim() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
