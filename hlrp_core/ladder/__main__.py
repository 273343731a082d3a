"""``python -m hlrp_core.ladder expand|run|report <ladder>`` (same as ``hlrp ladder ...``)."""

import sys

from .cli import main

sys.exit(main())
