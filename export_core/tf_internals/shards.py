"""Checkpoint data files of bounded size, each tensor whole in one of them.

TensorFlow writes a checkpoint as one data file per device: an all-modes export of
a model with 3 GB of weights is one 9 GB object (weights and two Adam moments),
one long upload that an interruption restarts from nothing and that S3 emulators
and proxies buffer whole. ``WholeTensorShards`` groups the tensors, in checkpoint
order, into data files of at most ``SHARD_BYTES``; a tensor bigger than that gets
a file of its own. Tensors are never sliced: TensorFlow's ``MaxShardSizePolicy``
slices them, which copies them: on 3 GB of weights in all modes, writing took 45 s
with 8.6 GB of memory at its peak, against 27 s and 35 MB as whole tensors. Every
loader reads shards through the index (``variables.index``), TF1's ``RestoreV2`` and
TensorFlow Serving included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf

from export_core import constants as c


class WholeTensorShards(tf.train.experimental.ShardingCallback):
    """Data files of at most ``limit`` bytes, except for a tensor bigger than that."""

    def __init__(self, limit: int):
        self.limit = limit

    @property
    def description(self) -> str:
        return f"whole tensors in data files of at most {self.limit} bytes"

    def __call__(self, shardable_tensors: Sequence) -> list[dict]:
        """Big tensors a file each; the others filled into files in checkpoint order."""
        big: list[dict] = []
        small: list[dict] = [{}]
        size = 0
        for shardable in shardable_tensors:
            nbytes = _nbytes(shardable.shape, shardable.dtype)
            if nbytes >= self.limit:
                shard = {}
                big.append(shard)
            else:
                if size + nbytes > self.limit:
                    small.append({})
                    size = 0
                shard = small[-1]
                size += nbytes
            shard.setdefault(shardable.checkpoint_key, {})[shardable.slice_spec] = shardable.tensor
        return [shard for shard in small + big if shard]


def options(groups: Mapping[str, Sequence[tf.Variable]]) -> tf.train.CheckpointOptions:
    """Checkpoint options for ``groups``: one data file below ``SHARD_BYTES``, which is
    written without a callback, bounded whole-tensor files above."""
    size = sum(_nbytes(v.shape, v.dtype) for variables in groups.values() for v in variables)
    if size <= c.SHARD_BYTES:
        return tf.train.CheckpointOptions()
    return tf.train.CheckpointOptions(
        experimental_sharding_callback=WholeTensorShards(c.SHARD_BYTES)
    )


def _nbytes(shape: tf.TensorShape, dtype: tf.DType) -> int:
    """Bytes of a tensor; strings and unknown shapes count as nothing (they are small
    next to the weights that make a checkpoint big)."""
    if dtype == tf.string or not shape.is_fully_defined():
        return 0
    return shape.num_elements() * dtype.size
