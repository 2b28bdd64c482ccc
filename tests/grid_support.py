"""AppTest helpers for the one-element thumbnail grid (``inspect_core.ui.tile_grid``): read what it draws from
its payload, and send it the events the browser would (a click on Open, a tick, a shift-click range)."""
from __future__ import annotations

import json

from streamlit.components.v2.bidi_component.main import _make_trigger_id


def grids(at) -> list:
    """The grid elements drawn (AppTest has no class for v2 components: they come as unknown elements)."""
    return [e for e in at.get("bidi_component")]


def grid(at, key: str):
    found = [e for e in grids(at) if e.proto.id.endswith("-" + key)]
    assert found, f"no grid {key!r} drawn; grids: {[e.proto.id for e in grids(at)]}"
    return found[0]


def tiles(at, key: str = "gallery_grid") -> list[dict]:
    """The tiles of the grid ``key``: dicts with id, lines (caption lines), ticked, src (a data URI)."""
    return json.loads(grid(at, key).proto.json)["tiles"]


def tile_ids(at, key: str = "gallery_grid") -> list[str]:
    return [t["id"] for t in tiles(at, key)]


def send(at, key: str, event: str, value):
    """The rerun the browser causes when the grid sends ``event`` with ``value`` (as its JavaScript does with
    ``setTriggerValue``); returns ``at`` after the run."""
    elem = grid(at, key)
    states = at._tree.get_widget_states()      # every other widget keeps its value, as in the browser
    w = states.widgets.add()
    w.id = _make_trigger_id(elem.proto.id, "events")
    w.json_trigger_value = json.dumps([{"event": event, "value": value}])
    return at._run(states)


def open_tile(at, image_id: str, key: str = "gallery_grid"):
    assert image_id in tile_ids(at, key), f"{image_id} is not on the page"
    return send(at, key, "open", image_id)


def tick(at, image_ids, on: bool = True, key: str = "gallery_grid"):
    return send(at, key, "tick", {"ids": list(image_ids), "on": on})
