"""``python -m telematics.sim``: run the fleet simulator."""

import sys

from telematics.sim.cli import main

sys.exit(main())
