from fmkit.cli import main

raise SystemExit(main())
