"""Switch off JupyterLab's "Would you like to get notified about official Jupyter news?" pop-up.

    python scripts/jupyterlab_quiet.py        # for the JupyterLab of the Python that runs it

The pop-up comes from the plugin "@jupyterlab/apputils-extension:announcements",
which also fetches news from the internet. A learner on bad Wi-Fi, or offline,
should meet the lesson first. This writes the plugin into the disabled extensions
of JupyterLab's page config in this Python's prefix (the lesson's .venv/, or the
Binder image), keeping whatever else the file holds. Safe to run again.
"""

import json
import sys
from pathlib import Path

PLUGIN = "@jupyterlab/apputils-extension:announcements"


def page_config(prefix=sys.prefix):
    return Path(prefix) / "etc" / "jupyter" / "labconfig" / "page_config.json"


def quieten(path):
    """Disable the news plugin in the page config at ``path``; return True if the file changed."""
    config = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    disabled = config.setdefault("disabledExtensions", {})
    if disabled.get(PLUGIN) is True:
        return False
    disabled[PLUGIN] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return True


if __name__ == "__main__":
    path = page_config()
    print(f"JupyterLab's news pop-up {'switched off' if quieten(path) else 'is already off'} ({path}).")
