import sys

from ftassets.cli import main

sys.exit(main())
