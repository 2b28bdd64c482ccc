"""The thumbnail grid as ONE element: a Streamlit v2 component that draws a whole page of tiles (thumbnail,
caption lines, tick box, Open button) from one JSON payload and sends back what the user did.

Why: a page of 48 tiles built from Streamlit elements (image + two captions + tick box + button each) is about
300 elements; Streamlit and the browser redo each of them on every rerun (2-6 s a click at 100,000 images,
BENCHMARKS.md "App (issue 10)"). One element with the thumbnails inline keeps a rerun at one diff.

The payload is computed by ``grid_payload`` (no Streamlit); ``tile_grid`` mounts it and turns the component's
events into session state before the script reruns:
  * ``open``: an image_id -> ``st.session_state[selected_key]`` (the viewer opens it);
  * ``tick``: ``{"ids": [...], "on": bool}`` -> the bulk selection (one tile, or a shift-click range).
Every text reaches the page through ``textContent`` / attributes, never as HTML.
"""
from __future__ import annotations

import base64
import zlib
from collections.abc import Callable

import pandas as pd
import streamlit as st

GRID_NAME = "dataset_inspector.tile_grid"

_HTML = '<div class="di-grid" role="list"></div>'

_CSS = """
.di-grid { display: grid; gap: 6px 6px; font-family: var(--st-font, sans-serif); }
.di-tile { display: flex; flex-direction: column; min-width: 0; }
.di-tile img { width: 100%; aspect-ratio: 1 / 1; object-fit: contain; image-rendering: pixelated;
  background: rgba(128, 128, 128, 0.08); cursor: zoom-in; border-radius: 2px; display: block; }
.di-tile.ticked img { outline: 3px solid var(--st-primary-color, #ff4b4b); outline-offset: -3px; }
.di-cap { font-size: 0.7rem; line-height: 1.2; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
  color: var(--st-text-color, inherit); opacity: 0.75; }
.di-cap.file { opacity: 1; }
.di-row { display: flex; gap: 4px; align-items: center; margin-top: 1px; }
.di-row input { margin: 0; width: 1rem; height: 1rem; cursor: pointer; accent-color: var(--st-primary-color); }
.di-row button { flex: 1; min-height: 1.4rem; padding: 0 0.4rem; font-size: 0.75rem; cursor: pointer;
  border: 1px solid rgba(128, 128, 128, 0.4); border-radius: 0.4rem; background: transparent;
  color: var(--st-text-color, inherit); }
.di-row button:hover { border-color: var(--st-primary-color); color: var(--st-primary-color); }
"""

# Rebuilt from the payload on each render; tiles whose (image_id, thumbnail) did not change are kept, so a tick
# repaints one box and no image is decoded again. Shift-click ticks the range from the last ticked tile of the same
# page.
_JS = """
const memory = new WeakMap();
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const grid = parentElement.querySelector('.di-grid');
  let mem = memory.get(grid);
  if (!mem) { mem = { tiles: new Map(), last: null }; memory.set(grid, mem); }
  grid.style.gridTemplateColumns = `repeat(${data.n_cols}, minmax(0, 1fr))`;
  const ids = data.tiles.map(t => t.id);
  const kept = new Map();
  const nodes = data.tiles.map((t, i) => {
    let el = mem.tiles.get(t.id);
    if (!el || el.dataset.src !== t.key) {
      el = document.createElement('div');
      el.className = 'di-tile'; el.setAttribute('role', 'listitem'); el.dataset.src = t.key;
      const img = document.createElement('img');
      img.src = t.src; img.alt = t.id; img.title = t.id; img.decoding = 'async';
      img.addEventListener('click', () => setTriggerValue('open', el.dataset.id));
      el.appendChild(img);
      const caps = document.createElement('div'); caps.className = 'di-caps'; el.appendChild(caps);
      const row = document.createElement('div'); row.className = 'di-row';
      if (data.selectable) {
        const box = document.createElement('input'); box.type = 'checkbox';
        box.addEventListener('click', (ev) => {
          const here = ids.indexOf(el.dataset.id);
          const last = mem.last === null ? -1 : ids.indexOf(mem.last);   // -1: not on this page (any more)
          const on = box.checked;
          let pick = [el.dataset.id];
          if (ev.shiftKey && last >= 0 && last !== here) {
            const [a, b] = here < last ? [here, last] : [last, here];
            pick = ids.slice(a, b + 1);
            for (const id of pick) {
              const other = mem.tiles.get(id);
              if (other) { other.querySelector('input').checked = on; other.classList.toggle('ticked', on); }
            }
          }
          el.classList.toggle('ticked', on);
          mem.last = el.dataset.id;
          setTriggerValue('tick', { ids: pick, on: on });
        });
        row.appendChild(box);
      }
      const open = document.createElement('button'); open.type = 'button'; open.textContent = 'Open';
      open.addEventListener('click', () => setTriggerValue('open', el.dataset.id));
      row.appendChild(open);
      el.appendChild(row);
    }
    el.dataset.id = t.id;
    const caps = el.querySelector('.di-caps');
    if (caps.dataset.text !== JSON.stringify(t.lines)) {
      caps.dataset.text = JSON.stringify(t.lines);
      caps.replaceChildren(...t.lines.map((line, k) => {
        const d = document.createElement('div'); d.className = k === 0 ? 'di-cap file' : 'di-cap';
        d.textContent = line; d.title = line; return d;
      }));
    }
    const box = el.querySelector('input');
    if (box) { box.checked = !!t.ticked; box.setAttribute('aria-label', 'select ' + t.id); }
    el.classList.toggle('ticked', !!t.ticked);
    el.querySelector('button').title = t.id;
    kept.set(t.id, el);
    return el;
  });
  mem.tiles = kept;
  const same = nodes.length === grid.children.length && nodes.every((n, i) => grid.children[i] === n);
  if (!same) grid.replaceChildren(...nodes);
}
"""

_component = None


def _grid_component():
    """The registered component (registered once per process, on first use)."""
    global _component
    if _component is None:
        # In the page's DOM (no shadow root): the tests and the bench find the tiles as any element; every
        # class name is prefixed "di-" so no Streamlit style applies to them, nor theirs to Streamlit.
        _component = st.components.v2.component(GRID_NAME, html=_HTML, css=_CSS, js=_JS, isolate_styles=False)
    return _component


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def grid_payload(rows: pd.DataFrame, thumbs, lines: list[list[str]], n_cols: int, ticked: set,
                 selectable: bool) -> dict:
    """The component's data: one tile per row (image_id, thumbnail as a data URI, caption lines, ticked).
    ``key`` names the thumbnail so the browser keeps a tile whose picture did not change."""
    tiles = []
    for iid, th, cap in zip(rows["image_id"].astype(str), thumbs, lines):
        cap = list(cap)
        if not th.ok:
            cap[-1:] = [f"{cap[-1]} | [{th.reason}]" if cap else f"[{th.reason}]"]
        tiles.append({"id": iid, "src": data_uri(th.data), "key": f"{len(th.data)}:{zlib.crc32(th.data):x}",
                      "lines": [str(x) for x in cap], "ticked": iid in ticked})
    return {"n_cols": int(n_cols), "selectable": bool(selectable), "tiles": tiles}


def grid_tiles(payload: dict) -> list[str]:
    """The image_ids of a payload, in the order drawn."""
    return [t["id"] for t in payload["tiles"]]


def _on_open(key: str, selected_key: str) -> None:
    """Before the rerun: an Open click (or a click on a thumbnail) selects the image for the viewer."""
    opened = (st.session_state.get(key) or {}).get("open")
    if opened:
        st.session_state[selected_key] = str(opened)


def _on_tick(key: str, selection: Callable[[], set], viewer_closed: Callable[[], None]) -> None:
    """Before the rerun: a tick, an untick or a shift-click range changes the bulk selection.

    A tick also says the viewer is closed: the viewer is a modal dialog, so the grid can be clicked only once
    it is gone. The server may not know yet: Esc pressed while the dialog's own run (after an arrow key) is in
    flight closes it in the browser, but its dismiss does not always reach the server (seen in chromium:
    open, next, tick, and no dismiss). Without this the tick's run drew the viewer again."""
    tick = (st.session_state.get(key) or {}).get("tick")
    viewer_closed()
    if isinstance(tick, dict) and isinstance(tick.get("ids"), list):
        sel = selection()
        ids = [str(i) for i in tick["ids"]]
        if tick.get("on"):
            sel.update(ids)
        else:
            sel.difference_update(ids)


def mount(payload: dict, key: str, selected_key: str, selection: Callable[[], set],
          viewer_closed: Callable[[], None] | None = None) -> None:
    """Draw the payload as one element; its events update the session before the next script run (each
    event its own callback, so a tick never replays an earlier Open). ``viewer_closed()`` runs on a tick
    (default: forget ``selected_key``, the image open in the viewer)."""
    closed = viewer_closed or (lambda: st.session_state.pop(selected_key, None))
    _grid_component()(key=key, data=payload, default={},
                      on_open_change=lambda: _on_open(key, selected_key),
                      on_tick_change=lambda: _on_tick(key, selection, closed))
