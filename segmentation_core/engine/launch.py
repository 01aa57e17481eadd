"""``launch`` that also works without GPUs (gloo, one process per "GPU" slot on the CPU).

detectron2 v0.6's launcher initialises NCCL and calls ``torch.cuda.set_device``; the install
used by this project patches that, but a user's own detectron2 may not. With CUDA available
this defers to detectron2; without it, it spawns ``num_gpus_per_machine`` CPU workers joined
by a gloo process group and sets up detectron2's local process group for ``comm``.
"""
import logging
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

__all__ = ["launch", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = timedelta(minutes=30)
logger = logging.getLogger(__name__)


def _free_port():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=(), timeout=DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes."""
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1 or torch.cuda.is_available():
        return d2_launch(main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args=args, timeout=timeout)
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url='auto' only works on one machine; pass tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    logger.info(f"Launching {num_gpus_per_machine} CPU worker(s) with gloo at {dist_url}")
    mp.spawn(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout):
    rank = machine_rank * num_per_machine + local_rank
    dist.init_process_group("gloo", init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout)
    num_machines = world_size // num_per_machine
    if hasattr(comm, "create_local_process_group"):  # newer detectron2
        comm.create_local_process_group(num_per_machine)
    else:
        for i in range(num_machines):
            ranks = list(range(i * num_per_machine, (i + 1) * num_per_machine))
            group = dist.new_group(ranks)
            if i == machine_rank:
                comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()
