"""Optimizers and learning-rate schedules: registries of named builders, as the config's `optimizer` and
`scheduler` choose them.

    OPTIMIZERS[name](config, parameters) -> a torch optimizer
    SCHEDULERS[name](config, optimizer, decay) -> (the schedule over `decay` steps, its final rate / lr)

make_scheduler puts the chosen schedule between an optional linear warm-up and a hold at its final rate.
"""

import math

import torch
from torch.optim import lr_scheduler

from train.registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")


@OPTIMIZERS.register("adam", "Adam (betas, weight_decay added to the gradient)")
def adam(config, parameters):
    return torch.optim.Adam(parameters, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


@OPTIMIZERS.register("adamw", "AdamW: Adam with decoupled weight decay")
def adamw(config, parameters):
    return torch.optim.AdamW(parameters, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


@OPTIMIZERS.register("sgd", "SGD with momentum betas[0]")
def sgd(config, parameters):
    return torch.optim.SGD(parameters, lr=config.lr, momentum=config.betas[0], weight_decay=config.weight_decay)


def make_optimizer(config, parameters):
    return OPTIMIZERS[config.optimizer](config, parameters)


def final_factor(config):
    """min_lr as a fraction of lr: where a cosine ends (lr 0, so min_lr 0 too: nothing moves)."""
    return config.min_lr / config.lr if config.lr else 0.0


@SCHEDULERS.register("constant", "the peak rate throughout (after the warm-up)")
def constant(config, optimizer, decay):
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), 1.0


@SCHEDULERS.register("cosine", "CosineAnnealingLR: one cosine from lr down to min_lr over the schedule")
def cosine(config, optimizer, decay):
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=decay, eta_min=config.min_lr), final_factor(config)


@SCHEDULERS.register("cosine_restarts", "CosineAnnealingWarmRestarts: `cycles` equal cosines from lr down to min_lr")
def cosine_restarts(config, optimizer, decay):
    period = max(1, math.ceil(decay / config.cycles))
    return lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=period, eta_min=config.min_lr), final_factor(config)


def make_scheduler(config, optimizer):
    """The learning rate per optimizer step (stepped once after each one): an optional linear warm-up, the
    schedule over `config.schedule_length` steps, then its final rate held (steps past the planned schedule)."""
    length, warmup = config.schedule_length, config.warmup_steps
    decay = max(1, length - warmup)  # check_choices keeps warmup below the schedule; never a zero-length cosine
    main, final = SCHEDULERS[config.scheduler](config, optimizer, decay)
    # Past the schedule: its final rate, never a restart of the cosine (which would raise the rate again).
    hold = lr_scheduler.ConstantLR(optimizer, factor=final, total_iters=2**62)
    stages, milestones = [main, hold], [length]
    if warmup:
        rise = lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup)
        stages, milestones = [rise, *stages], [warmup, length]
    return lr_scheduler.SequentialLR(optimizer, stages, milestones=milestones)
