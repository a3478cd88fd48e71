import sys

from electra_cli import main

sys.exit(main())
