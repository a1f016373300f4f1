"""Serve a GGUF model with llama.cpp's OpenAI-compatible HTTP server (from the xllamacpp wheel).

Run by the LLM virtualenv's interpreter as a plain script, so it imports only the standard
library and xllamacpp (never the `shared` package):

    python llm_server.py --model M.gguf --alias NAME --host 127.0.0.1 --port 8080

The server runs in threads inside this process; the main thread waits for SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", required=True, help="path of the GGUF file")
    parser.add_argument("--alias", required=True, help="model name the API answers to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=4, help="request slots")
    parser.add_argument("--context", type=int, default=8192, help="tokens shared by all slots")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    return parser.parse_args(argv)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Block the stop signals before the server threads exist, so that they inherit the mask
    # and only the main thread's sigwait() receives them.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_ctx = args.context
    params.cont_batching = True
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.use_jinja = True
    params.endpoint_metrics = True

    server = xllamacpp.Server(params)
    # The HTTP thread may fail to bind without raising here: check that it listens.
    deadline = time.monotonic() + 30.0
    while not _listening(args.host, args.port):
        if time.monotonic() > deadline:
            print(f"llm_server: nothing listens on {args.host}:{args.port}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"llm_server: serving {args.alias} on http://{args.host}:{args.port}", flush=True)

    received = signal.sigwait(stop_signals)
    print(f"llm_server: stopping on signal {received}", flush=True)
    del server
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without waiting for llama.cpp's threads to wind down.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
