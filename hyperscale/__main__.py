import sys

from hyperscale.cli import main

sys.exit(main())
