"""The one error every configuration problem raises, apart from the loader so that its checks can share it."""


class ConfigError(ValueError):
    """A configuration problem; the message says which file and field, and what to do."""
