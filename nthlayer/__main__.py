from nthlayer.cli import main

raise SystemExit(main())
