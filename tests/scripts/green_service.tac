# A .tac file for `twistd -ny green_service.tac`: a green line server as a GreenService.
# It writes its port to the file named by $TXGREEN_PORT_FILE; its cleanup prints on stdout.
import os
import sys

from twisted.application.service import Application

import txgreen


def shout(stream: txgreen.Stream) -> None:
    for line in stream:
        stream.write(line.upper())


def server() -> None:
    def on_listen(listener: object) -> None:
        with open(os.environ["TXGREEN_PORT_FILE"], "w") as f:
            f.write(str(listener.port))  # type: ignore[attr-defined]

    try:
        txgreen.serve("tcp:0:interface=127.0.0.1", shout, on_listen=on_listen)
    finally:
        txgreen.sleep(0.05)  # cleanup may block: stopService waits for it
        print("server: cleaned up", flush=True)
        sys.stdout.flush()


application = Application("green-service-test")
txgreen.GreenService(server).setServiceParent(application)
