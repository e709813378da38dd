import sys

from fsobj.cli.main import main

sys.exit(main())
