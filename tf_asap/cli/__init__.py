"""The `tf-asap` command line (`tf_asap.cli:main`, or `python -m tf_asap.cli`).

One module per command, each owning its sub-parser: `train`, `prune`,
`export`, `profile`, `report`, `demo`; shared flags in `flags`, the files
commands share in `directories`, their data in `datasets`, what is printed in
`output`, the program and its exit codes in `app`. This package sits on top of
the library and is never imported by it.
"""

from tf_asap.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
