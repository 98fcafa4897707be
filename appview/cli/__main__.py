from appview.cli import main

raise SystemExit(main())
