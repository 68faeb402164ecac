"""Exceptions that circtune raises for problems a user can fix.

    CirctuneError
    ├── ConfigError        an experiment file, flag or setting is invalid
    ├── DataError          a dataset file or its contents are invalid
    └── ServiceError       a tracking server, Ray cluster or tool is unreachable

Command-line entry points print the message of any of these as one line and
exit with status 2. Every message names the offending value and how to fix it.
"""


class CirctuneError(Exception):
    """Base class for errors caused by user input or the environment."""


class ConfigError(CirctuneError):
    """An experiment file, command-line flag or setting is invalid."""


class DataError(CirctuneError):
    """A dataset file or its contents are invalid."""


class ServiceError(CirctuneError):
    """A required service or external tool is missing or unreachable."""
