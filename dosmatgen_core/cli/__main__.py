import sys

from dosmatgen_core.cli import main

sys.exit(main())
