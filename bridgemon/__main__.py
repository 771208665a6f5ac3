from bridgemon.cli import main

raise SystemExit(main())
