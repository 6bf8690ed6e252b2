"""The training order: each epoch's batches follow from the seed and the epoch alone, on every data-parallel rank,
also on a rank that resumes mid-epoch (accelerate's skipping loader does not pass the epoch on there)."""

from types import SimpleNamespace

LENGTHS = [5, 9, 3, 7, 12, 4, 8, 6, 10, 2, 11, 1, 13, 15, 14, 16]


def rank_loader(rank: int, per_rank: int = 2):
    """A training loader as accelerate shards it for `rank` of 2: the global order in batches of 2 x per_rank, this
    rank taking its part of each."""
    from accelerate.data_loader import BatchSamplerShard, DataLoaderShard
    from torch.utils.data import BatchSampler

    from training.sampling import SeededLengthGroupedSampler

    sampler = SeededLengthGroupedSampler(2 * per_rank, lengths=LENGTHS, seed=7)
    shard = BatchSamplerShard(BatchSampler(sampler, per_rank, drop_last=False), num_processes=2, process_index=rank)
    return DataLoaderShard(list(range(len(LENGTHS))), batch_sampler=shard)


def epoch_batches(loader, epoch: int) -> list[list[int]]:
    loader.set_epoch(epoch)
    return [batch.tolist() for batch in loader]


def test_an_epoch_s_order_depends_on_the_seed_and_the_epoch_only():
    import torch

    from training.sampling import SeededLengthGroupedSampler

    def order(seed, epoch, noise):
        torch.manual_seed(noise)  # whatever the global generator holds (a resume restores it after the order is drawn)
        sampler = SeededLengthGroupedSampler(4, lengths=LENGTHS, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(7, 2, noise=1) == order(7, 2, noise=99)
    assert order(7, 2, noise=1) != order(7, 3, noise=1)
    assert order(7, 2, noise=1) != order(8, 2, noise=1)
    assert sorted(order(7, 2, noise=1)) == list(range(len(LENGTHS)))


def test_a_rank_resuming_mid_epoch_draws_the_rest_of_that_epoch():
    """Rank 1 of 2 resumes at step 1 of epoch 2: the trainer skips its first batch and tells the skipping loader
    the epoch, which does not reach the sampler through accelerate's shard; EpochSampler tells it, as the trainer
    calls it at the epoch's start (state.epoch is the checkpoint's, 2.25)."""
    from accelerate.data_loader import skip_first_batches

    from training.sampling import EpochSampler, epoch_sampler

    through = epoch_batches(rank_loader(1), 2)
    resumed = rank_loader(1)  # a fresh process: its sampler starts at epoch 0
    assert epoch_sampler(resumed) is not None
    EpochSampler().on_epoch_begin(None, SimpleNamespace(epoch=2.25), None, train_dataloader=resumed)
    assert epoch_batches(skip_first_batches(resumed, 1), 2) == through[1:]
    # Together the ranks draw each global batch of one process's order.
    ranks = [epoch_batches(rank_loader(rank), 2) for rank in (0, 1)]
    single = epoch_sampler(rank_loader(0))  # the same sampler, grouped by the global batch of 4
    single.set_epoch(2)
    order = list(single)
    assert [a + b for a, b in zip(*ranks, strict=True)] == [order[i : i + 4] for i in range(0, len(order), 4)]


def test_the_quick_demo_s_batches_take_turns_between_the_fields_of_a_retailer_set(tiny_base, registry, tmp_path):
    """The quick demo on the demo Amazon set, as the job's trainer draws it: length-grouped batches (a field's
    answers share a length) that take turns between the fields, not one field's run after another's (was: 2 batches
    of event ids, 20 of timestamps, then costs, so the loss curve stepped between fields and the adapter learnt
    them one after another). An epoch holds transformers' length-grouped batches, in another order: the same padding."""
    import re

    import torch

    from services.demo import seed_demo
    from training.config import build_config
    from training.sampling import get_length_grouped_indices
    from training.worker import build_trainer, preflight

    seed_demo(registry)
    config = build_config(
        "quick demo", adapter_name="demo", train_dataset="retailer_amazon_sft", base_model=str(tiny_base)
    )
    trainer, _ = build_trainer(preflight(config), tmp_path / "job")
    data = trainer.train_dataset
    fields = [re.search(r"Map field .(\w+).", str(prompt)).group(1) for prompt in data["prompt"]]
    size = config.batch_size

    def batches(order):
        return [order[start : start + size] for start in range(0, len(order), size)]

    order = list(trainer._get_train_sampler())
    main_fields = [max(set(names), key=names.count) for names in ([fields[i] for i in b] for b in batches(order))]
    runs = [1]
    for previous, field in zip(main_fields[: config.max_steps], main_fields[1 : config.max_steps]):
        runs.append(runs[-1] + 1 if field == previous else 1)
    assert max(runs) <= 4, main_fields[: config.max_steps]
    lengths = [len(ids) for ids in data["input_ids"]]
    grouped = get_length_grouped_indices(lengths, size, generator=torch.Generator().manual_seed(config.seed))
    assert batches(order)[0] == batches(grouped)[0], "the longest example's batch stays first"
    assert sorted(batches(order)) == sorted(batches(grouped))
