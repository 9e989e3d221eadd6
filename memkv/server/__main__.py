"""`python -m memkv.server [serve flags]`: the same as `memkv serve`."""

import sys

from ..cli.serve import main

sys.exit(main())
