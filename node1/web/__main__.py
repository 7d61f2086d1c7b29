"""`python -m node1.web`: node 1's HTTPS server (node1.web.server)."""

from node1.web.server import main

raise SystemExit(main())
