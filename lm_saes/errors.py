"""Errors a user can act on. The CLI prints their message alone, without a traceback."""


class LmSaesError(Exception):
    """Base of every error caused by input the user controls (configs, files, servers)."""


class ConfigError(LmSaesError):
    """A config file or override is wrong; the message names the field and the fix."""


class CacheError(LmSaesError):
    """An activation cache is missing, incomplete, truncated or corrupt; names the file."""


class DatasetError(LmSaesError):
    """A text dataset cannot be found or read."""


class ModelError(LmSaesError):
    """A model cannot be loaded, or a hook point does not exist."""


class DiskSpaceError(LmSaesError):
    """The disk cannot hold what a stage is about to write."""


class StoreError(LmSaesError):
    """The analysis store (MongoDB) is unreachable or refused a write; names the URI and the fix."""


class NoStoreError(StoreError):
    """A reader (``lm-saes show``, ``lm-saes serve``) found no analysis store where it looked."""


class EndpointError(LmSaesError):
    """A model endpoint is unreachable, refuses the key, does not serve the model, or keeps failing."""
