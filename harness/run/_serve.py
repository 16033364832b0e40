"""Entry point of the Prefect test server process (run by path, not as a module).

It is uvicorn serving Prefect's API app, plus one thread that ends the server
when the harness process that started it is gone, so that a killed test run
leaves no server behind.
"""

import os
import sys
import threading
import time


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main() -> None:
    port, parent = int(sys.argv[1]), int(sys.argv[2])
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
