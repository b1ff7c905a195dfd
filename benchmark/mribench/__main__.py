from mribench.cli.main import main

raise SystemExit(main())
