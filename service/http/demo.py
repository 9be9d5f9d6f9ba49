"""The page-side pieces: ``/static/storefront.js`` (the snippet a store's pages include) and ``/demo``.

``/demo`` is a storefront built from the config in force (a hero and the other slots, every catalog item as
a card, a cart) that uses only the snippet: something a merchandiser can open and click.  It needs a browser
key: ``STOREFRONT_DEMO_KEY`` in the service's environment (``storefront serve`` sets it to the browser key it
made), or ``?key=`` in the demo's URL.  The page's context comes from its URL (``/demo?device=pcvr``), else
each category field's default (or first value).
"""

from __future__ import annotations

import json
from html import escape
from importlib import resources
from typing import Any

from flask import Blueprint, Response, current_app, request

from bandit.config import SlotConfig, StoreConfig
from service.http.runtime import ConfigHolder

bp = Blueprint("page", __name__)

_SNIPPET = resources.files("service.http").joinpath("static", "storefront.js").read_text(encoding="utf-8")


@bp.get("/static/storefront.js")
def snippet() -> Response:
    """The snippet: ranks the page's slots with a browser key and reports clicks (no dependencies)."""
    response = Response(_SNIPPET, mimetype="text/javascript")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _context(config: StoreConfig) -> dict[str, Any]:
    """The demo shopper: the URL's values for category and bool fields, else their defaults (or first value)."""
    out: dict[str, Any] = {}
    for spec in config.context.fields:
        given = request.args.get(spec.name)
        if spec.kind == "category":
            out[spec.name] = given if given in spec.values else spec.default if spec.default else spec.values[0]
        elif spec.kind == "bool":
            out[spec.name] = given == "true" if given in ("true", "false") else bool(spec.default)
        elif spec.required and spec.min is not None:
            out[spec.name] = spec.min
    return out


def _card(config: StoreConfig, item_id: str, hidden: bool) -> str:
    item = config.catalog.item(item_id)
    features = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in item.features.items())
    return (f'<article class="card" data-item="{escape(item.id)}"{" hidden" if hidden else ""}>'
            f'<a href="#{escape(item.id)}"><h3>{escape(item.title or item.id)}</h3></a>'
            f'<p class="publisher">{escape(item.publisher)}</p><p class="features">{escape(features)}</p>'
            f'<button type="button" data-add="{escape(item.id)}">Add to cart</button></article>')  # fmt: skip


def _slot(config: StoreConfig, slot: SlotConfig) -> str:
    default = slot.default[0] if slot.default else config.catalog.ids[0]
    cards = "".join(_card(config, item, item != default) for item in config.catalog.ids)
    kind = "hero" if slot.position == 0 else "row"
    return (f'<section class="slot {kind}" data-storefront-slot="{escape(slot.name)}">'
            f'<h2>{escape(slot.name)}</h2>{cards}</section>')  # fmt: skip


def _controls(config: StoreConfig, context: dict[str, Any]) -> str:
    parts = []
    for spec in config.context.fields:
        if spec.kind != "category":
            continue
        options = "".join(f'<option{" selected" if v == context.get(spec.name) else ""}>{escape(v)}</option>'
                          for v in spec.values)  # fmt: skip
        parts.append(f'<label>{escape(spec.name)} <select name="{escape(spec.name)}">{options}</select></label>')
    key = request.args.get("key")
    hidden_key = f'<input type="hidden" name="key" value="{escape(key)}">' if key else ""
    return (
        f'<form method="get" class="context">{"".join(parts)}{hidden_key}<button>Reload as this shopper</button></form>'
    )


_STYLE = """
[hidden]{display:none!important}
body{font-family:system-ui,sans-serif;margin:0;background:#101418;color:#e8eef4}
header{display:flex;justify-content:space-between;align-items:center;padding:12px 24px;background:#1b232c}
main{padding:16px 24px}.slot{margin:16px 0}.hero .card{font-size:1.6em;padding:32px;background:#2b3a4a}
.card{display:inline-block;vertical-align:top;width:260px;margin:4px;padding:12px;border-radius:8px;background:#1f2a35}
.card a{color:inherit;text-decoration:none}.publisher,.features{color:#9fb0c0;font-size:.8em}
#cart{min-width:220px}.note{color:#9fb0c0;font-size:.85em}
"""

_PAGE_SCRIPT = """
const cart = [];
function drawCart() {
  document.getElementById("cart-items").textContent = cart.length ? cart.join(", ") : "empty";
  document.getElementById("buy").disabled = !cart.length;
}
document.addEventListener("click", (e) => {
  const id = e.target.getAttribute && e.target.getAttribute("data-add");
  if (id) { e.stopPropagation(); cart.push(id); storefront.track("add_to_cart", id); drawCart(); }
}, true);
document.getElementById("buy").addEventListener("click", () => {
  cart.splice(0).forEach((id) => storefront.track("purchase", id));
  drawCart();
});
drawCart();
"""


@bp.get("/demo")
def demo() -> Response:
    """A storefront of the configured catalog that uses only the snippet."""
    holder: ConfigHolder = current_app.extensions["storefront"]
    config = holder.current().config
    context = _context(config)
    key = request.args.get("key") or current_app.config.get("DEMO_KEY") or ""
    slots = "".join(_slot(config, slot) for slot in config.slots)
    warning = "" if key else ('<p class="note">No browser key: open this page as /demo?key=pk_... (a browser key; '
                              '`storefront keys show browser`), so it can rank and report clicks.</p>')  # fmt: skip
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(config.name)} — storefront demo</title>
<style>{_STYLE}</style></head>
<body><header><strong>{escape(config.name)}</strong>{_controls(config, context)}
<div id="cart">Cart: <span id="cart-items"></span> <button id="buy" type="button">Buy</button></div></header>
<main>{warning}{slots}
<p class="note">Each slot shows its default until the service ranks it (150 ms at most); a click on a card is a
reward for its slot, "Add to cart" and "Buy" post add_to_cart and purchase for the slot that showed the item.</p>
</main>
<script src="/static/storefront.js" data-key="{escape(key)}" data-context="{escape(json.dumps(context))}"></script>
<script>{_PAGE_SCRIPT}</script>
</body></html>"""
    return Response(html, mimetype="text/html")
