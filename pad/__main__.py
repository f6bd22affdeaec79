"""`python -m pad ...` = the `pad` command."""

import sys

from pad.cli import main

sys.exit(main())
