"""`python -m node1.cli`: see node1.cli.main."""

import sys

from node1.cli.main import main

sys.exit(main())
