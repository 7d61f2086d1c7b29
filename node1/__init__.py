"""node1: the HTTPS web app (web), the try-on orchestration (tryon), the models (pose, parsing, tflite),
the command-line tools (cli) and the live mirror (live)."""
