"""`python -m tf_asap.cli`: the same as the `tf-asap` command."""

import sys

from tf_asap.cli import main

sys.exit(main())
