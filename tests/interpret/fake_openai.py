"""A fake OpenAI-compatible chat-completions server, run as its own process by the tests.

    python fake_openai.py [--key K] [--models a,b] [--delay S] [--fail-every N] [--hang-every M
                          --hang S] [--garbage STAGE:FEATURE ...]

It prints ``port <n>`` once listening. POST /v1/chat/completions answers like a small, perfectly
literal model reading lm-saes's prompts (``lm_saes.interpret.prompts``): the explanation names
the token with the most activation in the passages (``the token "x"``); the simulator predicts 10
on that token and 0 elsewhere; detection says 1 where the token occurs; fuzzing says 1 when every
marked token is it. Injected trouble, counted over all requests n = 1, 2, ...: every N-th
answers 429 (Retry-After: 0) or 503 in turn, every M-th is held for S seconds (past the client's
timeout; logged with status "held"), and STAGE:FEATURE gets a reply that is no JSON at all. A wrong key gets 401 (echoing the
key, which the client must hide), an unknown model 404. GET /stats lists every request as
{stage, feature, status}.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lm_saes.interpret import prompts

STAGES = {prompts.EXPLAIN_SYSTEM: "explain", prompts.SIMULATE_SYSTEM: "simulate", prompts.DETECT_SYSTEM: "detect",
          prompts.FUZZ_SYSTEM: "fuzz"}
GARBAGE = "I am sorry, but I cannot help with that."


def norm(token: str) -> str:
    return token.replace("\\n", "\n").replace("\\t", "\t").strip().lower()


def blocks(text: str) -> list[list[str]]:
    """The lines between each <start> and <end>."""
    return [b.strip("\n").split("\n") for b in re.findall(r"<start>\n(.*?)\n?<end>", text, flags=re.S)]


def explained_token(text: str) -> str:
    match = re.search(r'Explanation: the token "(.*)"', text)
    return match.group(1) if match else ""


def reply(stage: str, user: str) -> str:
    if stage == "explain":
        mass: Counter = Counter()
        for block in blocks(user):
            for line in block:
                token, _, level = line.rpartition("\t")
                if norm(token):
                    mass[norm(token)] += int(level)
        best = min(mass, key=lambda t: (-mass[t], t)) if mass else "nothing"
        return f'the token "{best}"'
    target = explained_token(user)
    if stage == "simulate":
        return json.dumps([[10 if norm(t) == target else 0 for t in block] for block in blocks(user)])
    passages = re.findall(r"^\d+: (.*)$", user.split("Passages:\n", 1)[1], flags=re.M)
    if stage == "detect":
        return json.dumps([int(any(norm(w) == target for w in re.split(r"(?=\s)", p))) for p in passages])
    marked = [re.findall(r"<<(.*?)>>", p) for p in passages]
    return json.dumps([int(bool(m) and all(norm(t) == target for t in m)) for m in marked])


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.n = 0
        self.log: list[dict] = []
        self.garbage = {tuple(g.split(":")) for g in args.garbage}


def handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with state.lock:
                self.send_json(200, {"requests": list(state.log)})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
            stage = STAGES.get(system, "unknown")
            feature = int(re.match(r"Feature (\d+)", user).group(1))
            with state.lock:
                state.n += 1
                n = state.n
            args = state.args
            status, answer, headers = 200, None, {}
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if args.key is not None and key != args.key:
                status, answer = 401, {"error": {"message": f"Incorrect API key provided: {key}",
                                                 "type": "invalid_request_error", "code": "invalid_api_key"}}
            elif body["model"] not in args.models.split(","):
                status, answer = 404, {"error": {"message": f"The model `{body['model']}` does not exist",
                                                 "code": "model_not_found"}}
            elif args.fail_every and n % args.fail_every == 0:
                status = 429 if (n // args.fail_every) % 2 else 503
                answer, headers = {"error": {"message": "slow down"}}, {"Retry-After": "0"}
            held = bool(args.hang_every and n % args.hang_every == 0)
            with state.lock:  # a held request is logged as such: the client gives up on it
                state.log.append({"stage": stage, "feature": feature, "status": "held" if held else status, "n": n})
            if held:
                time.sleep(args.hang)
            time.sleep(args.delay)
            if answer is not None:
                self.send_json(status, answer, headers)
                return
            content = GARBAGE if (stage, str(feature)) in state.garbage else reply(stage, user)
            self.send_json(200, {"id": f"fake-{n}", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                              "finish_reason": "stop"}]})

    return Handler


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a held reply finds the client gone
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key")
    parser.add_argument("--models", default="fake-1")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--hang-every", type=int, default=0)
    parser.add_argument("--hang", type=float, default=0.0)
    parser.add_argument("--garbage", action="append", default=[])
    state = State(parser.parse_args())
    server = QuietServer(("127.0.0.1", state.args.port), handler(state))
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
