"""node1: the HTTPS web app, preprocessing (pose, parsing), the request pipeline, the CLI."""
