import sys

from otel_margin.cli import main

sys.exit(main())
