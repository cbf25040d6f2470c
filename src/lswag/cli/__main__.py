import sys

from lswag.cli import main

sys.exit(main())
