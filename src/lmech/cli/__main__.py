import sys

from lmech.cli import main

sys.exit(main())
