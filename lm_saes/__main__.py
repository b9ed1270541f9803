import sys

from lm_saes.cli import main

sys.exit(main())
