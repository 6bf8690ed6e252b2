"""The order in which a job draws its training examples: a function of the job's seed and the epoch only, so a job
that is cancelled and resumed mid-epoch trains on the same batches as one that ran through.

transformers' length-grouped sampler draws each epoch's order from torch's global generator when the epoch's
iterator starts; a resume builds that iterator before it restores the checkpoint's generator state, so the rest of
the resumed epoch came in another order (LoRA B 2-4% away from the uninterrupted job on a tiny model, exact only
when the cancel fell on an epoch's end). Here the order of epoch e is drawn from a generator seeded with seed + e, as
accelerate's seedable random sampler does for random batches, and grouped by the global batch (each data-parallel
rank takes its share of every global batch), so a job split over processes draws the batches one process draws. The
trainer tells a sampler its epoch through
`set_epoch`, except on a data-parallel rank resuming mid-epoch (accelerate's skipping loader does not reach it
there); `EpochSampler` tells it at every epoch's start, for both samplers.

transformers groups by length in megabatches of up to 50 batches, each sorted longest first, and trains them in that
order: where length follows the task, as in a retailer set (a timestamp answer is 73 tokens, a cost 50-56, an event
id 98-110), the quick demo's 30 steps were 2 batches of event ids, 20 of timestamps and 6 of costs, so the loss curve
stepped from one field's level to the next and the adapter learnt the fields one after another. Here the batches
keep their length grouping (the same padding, so the same speed) but come in a shuffled order, as fairseq and
Lhotse's bucketing samplers draw theirs; the batch with the longest example stays first, so a job that runs out of
memory does so at once.
"""

from functools import cache
from typing import Any

from training.stack import import_stack

transformers = import_stack()
LengthGroupedSampler = transformers.trainer_pt_utils.LengthGroupedSampler
get_length_grouped_indices = transformers.trainer_pt_utils.get_length_grouped_indices


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Examples of similar length batched together, in an order drawn from seed + epoch."""

    def __init__(self, *args: Any, seed: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(shuffled_batches(self.lengths, self.batch_size, generator))


def shuffled_batches(lengths: list[int], batch_size: int, generator: Any) -> list[int]:
    """transformers' length-grouped order with its batches shuffled: the first (the longest example's) and a short
    last one stay where they are (the loader cuts the order into batches from the start)."""
    import torch

    order = get_length_grouped_indices(lengths, batch_size, generator=generator)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    whole = len(order) // batch_size
    middle = batches[1:whole]
    middle = [middle[index] for index in torch.randperm(len(middle), generator=generator).tolist()]
    return [index for batch in batches[:1] + middle + batches[max(whole, 1) :] for index in batch]


@cache
def seeded_order(trainer_class: type) -> type:
    """`trainer_class` with its length-grouped training sampler seeded per epoch and grouped by the global batch (other
    samplers unchanged)."""

    class Seeded(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is not LengthGroupedSampler:
                return sampler
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            ranks = max(self.args.world_size, 1)
            return SeededLengthGroupedSampler(sampler.batch_size * ranks, lengths=sampler.lengths, seed=seed)

    Seeded.__name__ = Seeded.__qualname__ = trainer_class.__name__
    return Seeded


def epoch_sampler(loader: Any) -> Any:
    """The sampler behind a (possibly sharded) training loader that orders examples by epoch, or None."""
    node = getattr(loader, "batch_sampler", None)
    while getattr(node, "batch_sampler", None) is not None:  # accelerate's shard (and skip) wrappers
        node = node.batch_sampler
    sampler = getattr(node, "sampler", None)
    return sampler if hasattr(sampler, "set_epoch") else None


class EpochSampler(transformers.TrainerCallback):
    """Tells the training sampler the epoch that starts (the checkpoint's, on a resume), so its order is that
    epoch's on every rank, resumed or not."""

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        sampler = epoch_sampler(train_dataloader)
        if sampler is not None:
            sampler.set_epoch(int(state.epoch or 0))
