"""``python -m LuDoseResponseLib`` is the ``ludoseresponse`` command line."""

import sys

from LuDoseResponseLib.cli import main

sys.exit(main())
