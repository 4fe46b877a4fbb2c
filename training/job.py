"""What a training run needs to know, gathered once at the edge (the entrypoint) and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.hyperparameters import TrainHyperparameters


@dataclass(frozen=True)
class Cluster:
    """The hosts of a job, as SageMaker's ``resourceconfig.json`` lists them (read at the edge by
    ``containers.contract``). ``hosts`` in SageMaker's order; rank 0 is the first of them sorted."""

    hosts: tuple[str, ...]
    current_host: str
    instance_type: str = ""

    @classmethod
    def single(cls, instance_type: str = "") -> Cluster:
        return cls(hosts=("algo-1",), current_host="algo-1", instance_type=instance_type)

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def rank(self) -> int:
        return sorted(self.hosts).index(self.current_host)

    @property
    def master(self) -> str:
        return sorted(self.hosts)[0]


@dataclass(frozen=True)
class TrainJob:
    hp: TrainHyperparameters
    train_path: Path
    validation_path: Path | None
    model_source: str  # folder or Hub id, for from_pretrained
    gguf_file: str | None  # set when the source folder holds a GGUF file instead of safetensors
    model_dir: Path  # where the merged model, adapter and report go
    checkpoint_dir: Path
    run_name: str = "finetune"
    # TRAINING_JOB_NAME: the checkpoint writer lease's identity (a spot restart keeps it); None when
    # the trainer was started by hand.
    job_name: str | None = None
    failure_file: Path | None = None  # where a worker process reports a user error (Neuron launcher reads it)
    cluster: Cluster = field(default_factory=Cluster.single)


@dataclass
class BlockSampler:
    """Which packed blocks make up micro-batch ``m``: always exactly ``batch_size`` of them.

    Blocks are shuffled once per epoch from ``seed + epoch`` and read as one endless stream, so a
    batch may straddle two epochs but never shrinks (the last partial batch would be a new input
    shape, i.e. a recompile on Neuron). The order depends only on (seed, m), so a resumed run reads
    exactly the batches the interrupted one would have.
    """

    num_blocks: int
    batch_size: int
    seed: int

    _orders: dict[int, list[int]] = field(default_factory=dict, repr=False)

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            import numpy as np

            self._orders = {
                epoch: np.random.default_rng(self.seed + epoch).permutation(self.num_blocks).tolist()
            }
        return self._orders[epoch]

    def indices(self, micro_batch: int) -> list[int]:
        out = []
        for flat in range(micro_batch * self.batch_size, (micro_batch + 1) * self.batch_size):
            epoch, offset = divmod(flat, self.num_blocks)
            out.append(self._order(epoch)[offset])
        return out

    def epoch(self, micro_batch: int) -> float:
        return micro_batch * self.batch_size / self.num_blocks
