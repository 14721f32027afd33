"""Local receivers the webhook tests start on 127.0.0.1: an HTTP server answering from a script of statuses, and
a minimal SMTP server. Each records what it got and stops with its test."""

import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP server on 127.0.0.1: answers POSTs with `statuses` in turn (the last one repeats)."""

    def __init__(self, statuses: list[int], body: bytes = b"ok") -> None:
        self.statuses, self.answer_body = list(statuses), body
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append({"headers": dict(self.headers), "body": self.rfile.read(length)})
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", str(len(outer.answer_body)))
                self.end_headers()
                try:
                    self.wfile.write(outer.answer_body)
                except OSError:
                    pass  # the sender stopped reading (it reads a few KB only)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """Just enough SMTP (RFC 5321's happy path) on 127.0.0.1 to take Django's mails; `messages` holds each DATA."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 test ESMTP\r\n")
                message = {"rcpt": [], "data": b""}
                while line := self.rfile.readline(65536):
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        self.wfile.write(b"250 test\r\n")
                    elif verb == b"RCPT":
                        message["rcpt"].append(line.decode().split(":", 1)[1].strip(" <>\r\n"))
                        self.wfile.write(b"250 ok\r\n")
                    elif verb == b"DATA":
                        self.wfile.write(b"354 go on\r\n")
                        while (chunk := self.rfile.readline(65536)) not in (b".\r\n", b""):
                            message["data"] += chunk
                        outer.messages.append(message)
                        message = {"rcpt": [], "data": b""}
                        self.wfile.write(b"250 queued\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:  # MAIL, RSET, NOOP
                        self.wfile.write(b"250 ok\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "SmtpReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
