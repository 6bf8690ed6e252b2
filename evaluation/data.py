"""What an evaluation reads from a dataset: a conversation to answer, and a reference or a preference pair.

Any dataset the training page accepts is accepted here by the same rules (`training.formatting`): an evaluation
set (prompt, reference), an SFT set (alpaca or chat: the last assistant turn is the reference) or a DPO set
(prompt, chosen, rejected). A record with nothing to judge (an empty reference, chosen == rejected) is counted as
skipped, never dropped silently; a malformed record is refused with its number.
"""

from typing import Any

from pydantic import BaseModel

from registry.datasets import spread
from registry.errors import ConsoleError, InvalidFile
from registry.shapes import DatasetKind, ShapeError
from training.formatting import (
    DatasetSource,
    NothingToLearn,
    as_plain_text,
    dpo_example,
    iter_canonical,
    resolve_dataset,
    sft_example,
)

Message = dict[str, str]


class Example(BaseModel):
    """One judged item: `index` is the record's position in the dataset (1-based)."""

    index: int
    conversation: list[Message]
    reference: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    task: str | None = None

    @property
    def prompt(self) -> str:
        """The conversation as one readable text (the last user turn when there is only one)."""
        if len(self.conversation) == 1:
            return self.conversation[0]["content"]
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.conversation)


class EvalSet(BaseModel):
    """The examples of one dataset, where they came from, and which records had nothing to judge."""

    source: dict[str, Any]
    kind: DatasetKind
    examples: list[Example]
    skipped: list[int]

    @property
    def preference(self) -> bool:
        return self.kind == DatasetKind.DPO


def load_examples(dataset: str, limit: int | None = None) -> EvalSet:
    """With `limit`, that many examples spread evenly over the dataset (`registry.datasets.spread`)."""
    source: DatasetSource = resolve_dataset(dataset)
    examples: list[Example] = []
    skipped: list[int] = []
    records = iter_canonical(source)
    for number, record in enumerate(records, 1):
        try:
            examples.append(_example(number, record, source.kind))
        except NothingToLearn:
            skipped.append(number)
        except ShapeError as error:
            raise InvalidFile(f"{error} Fix this record or choose another dataset.", line=number) from None
    if not examples:
        raise ConsoleError(
            f"The dataset {source.name!r} has no example to evaluate"
            + (f" ({len(skipped)} records have an empty answer)." if skipped else " (it is empty).")
            + " Choose a dataset with prompts and reference answers."
        )
    return EvalSet(source=source.lineage(), kind=source.kind, examples=spread(examples, limit), skipped=skipped)


def _example(number: int, record: dict[str, Any], kind: DatasetKind) -> Example:
    task = record.get("task") if isinstance(record.get("task"), str) else None
    # Tool calls, results and specifications are judged in the plain-text rendering training documents.
    if kind == DatasetKind.DPO:
        pair = as_plain_text(dpo_example(record))
        return Example(
            index=number,
            conversation=pair["prompt"],
            chosen=pair["chosen"][0]["content"],
            rejected=pair["rejected"][0]["content"],
            task=task,
        )
    example = as_plain_text(sft_example(record, kind))
    return Example(
        index=number, conversation=example["prompt"], reference=example["completion"][0]["content"].strip(), task=task
    )
