"""node1.cli: the command-line tools (`python -m node1.cli ...`, main.py) and the HTTP client of the
web API (http_client.WebClient). Each subcommand is one module: pose, parse, dataset, tryon."""
