import sys

from telematics.cli import main

sys.exit(main())
