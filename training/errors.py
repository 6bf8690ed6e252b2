"""Errors of training: a config, base model, job action or machine that cannot do what was asked."""

from registry.errors import ConsoleError


class InvalidConfig(ConsoleError):
    """A job configuration that cannot run; the message lists every field to fix."""


class BaseModelError(ConsoleError):
    """A base model that cannot be used: missing offline, unsafe weights, or not a causal language model."""


class JobError(ConsoleError):
    """An action that does not fit the job's state (cancel a finished job, resume without a checkpoint)."""


class TrainingRefused(ConsoleError):
    """A job that cannot run on this machine or with this model/data combination."""


class ModelLoadError(ConsoleError):
    """A base model folder whose weights cannot be read (a missing shard, a damaged safetensors header)."""
