"""A second lm-saes process for tests/store/test_embedded.py: python store_client.py DATA_DIR MODE.

Opens the store on DATA_DIR, prints {"pid", "server_pid", "port"} as one JSON line,
then by MODE: "write" registers dictionary "from-child" and closes; "hold" closes when a line
arrives on stdin; "crash" exits at once without closing (as a killed process would).
"""

import json
import os
import sys

from lm_saes.config import StoreConfig
from lm_saes.store import open_store, server_state

data_dir, mode = sys.argv[1], sys.argv[2]
store = open_store(StoreConfig(data_dir=data_dir, database="shared", timeout_s=5, start_timeout_s=60))
state = server_state(data_dir)
print(json.dumps({"pid": os.getpid(), "server_pid": state["pid"], "port": state["port"]}), flush=True)
if mode == "crash":
    os._exit(0)
if mode == "write":
    store.upsert_dictionary("from-child", {"pid": os.getpid()})
if mode == "hold":
    sys.stdin.readline()
store.close()
print("closed", flush=True)
