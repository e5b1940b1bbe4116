"""The fixed global batch the 1-vs-N-process scripts train on: clips of different lengths, split evenly
across the processes, each padded only to its own longest clip."""
import torch


def my_share(accelerator, size: int, shortest: int, longest: int, num_classes: int):
    """(waves, lengths, labels) of this process's share of one seeded global batch of ``size`` clips."""
    generator = torch.Generator().manual_seed(1)
    lengths = torch.randint(shortest, longest, (size,), generator=generator)
    waves = torch.randn(size, int(lengths.max()), generator=generator) * 0.1
    waves[torch.arange(waves.shape[1])[None, :] >= lengths[:, None]] = 0.0
    labels = torch.arange(size) % num_classes
    per_rank = size // accelerator.num_processes
    mine = slice(accelerator.process_index * per_rank, (accelerator.process_index + 1) * per_rank)
    return waves[mine, : int(lengths[mine].max())], lengths[mine], labels[mine]
