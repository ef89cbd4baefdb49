import sys

from tillpoint.cli import main

sys.exit(main())
