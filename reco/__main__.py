from __future__ import annotations

from reco.cli import main

raise SystemExit(main())
