"""The `tf-asap` command line."""

from tf_asap.cli.commands import main  # noqa: F401
